//! `tern rm`: remove a workload and its logs.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::ClusterArgs;

#[derive(clap::Args)]
pub struct Args {
    workload: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let workload = a.workload;
    a.cluster
        .api()?
        .delete(&format!("/v1/workloads/{workload}"))?;
    println!("{workload}: removed");
    Ok(ExitCode::SUCCESS)
}
