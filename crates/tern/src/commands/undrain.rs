//! `tern undrain`: let workloads be placed on a drained node again.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Node;

use crate::args::ClusterArgs;

#[derive(clap::Args)]
pub struct Args {
    node: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let node = a.node;
    let _: Node = a
        .cluster
        .api()?
        .post(&format!("/v1/nodes/{node}/undrain"), &())?;
    println!("{node}: schedulable again");
    Ok(ExitCode::SUCCESS)
}
