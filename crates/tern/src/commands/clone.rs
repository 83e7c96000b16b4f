//! `tern clone`: fork a running workload; the copy continues from the same state on another
//! node as a new workload while the original keeps running. It is a migration that keeps
//! its source, so it is followed and reported as `tern migrate` does.

use std::process::ExitCode;

use anyhow::Result;

use super::migrate::Moving;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    moving: Moving,
    /// The new workload's name.
    #[arg(long)]
    name: String,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    a.moving.execute(Some(a.name))
}
