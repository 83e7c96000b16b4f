//! `tern stop`: stop a workload; it stays listed, and deploying it again starts it.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Workload;

use crate::args::ClusterArgs;
use crate::table::word;

#[derive(clap::Args)]
pub struct Args {
    workload: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let w: Workload = a
        .cluster
        .api()?
        .post(&format!("/v1/workloads/{}/stop", a.workload), &())?;
    println!("{}: {}", w.name, word(w.status));
    Ok(ExitCode::SUCCESS)
}
