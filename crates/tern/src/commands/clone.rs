//! `tern clone`: fork a running workload; the copy continues from the same state on another
//! node as a new workload while the original keeps running. It is a migration that keeps
//! its source, so it is followed and reported as `tern migrate` does.

use std::process::ExitCode;

use anyhow::Result;

use super::migrate::{request, request_and_follow};
use crate::args::{parse_size, ClusterArgs, Output};

#[derive(clap::Args)]
pub struct Args {
    workload: String,
    #[arg(long)]
    to: String,
    /// The new workload's name.
    #[arg(long)]
    name: String,
    #[arg(long, value_parser = parse_size)]
    bandwidth: Option<u64>,
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let api = a.cluster.api()?;
    let req = request(a.to, a.bandwidth, Some(a.name));
    request_and_follow(&api, &a.workload, &req, a.no_wait, a.out.json())
}
