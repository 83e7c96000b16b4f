//! `tern gateways`: the gateways following the controller.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::GatewayInfo;

use crate::args::{ClusterArgs, Output};
use crate::table::table;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let gs: Vec<GatewayInfo> = a.cluster.api()?.get("/v1/gateways")?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&gs)?);
        return Ok(ExitCode::SUCCESS);
    }
    table(
        &["REGION", "ADDRESS", "ID"],
        gs.iter()
            .map(|g| vec![g.region.clone(), g.address.clone(), g.id.clone()])
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
