//! `tern gateways`: the gateways following the controller.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::GatewayInfo;

use crate::args::Listing;
use crate::table::table;

pub type Args = Listing;

pub fn execute(a: Args) -> Result<ExitCode> {
    let Some(gs) = a.fetch::<Vec<GatewayInfo>>("/v1/gateways")? else {
        return Ok(ExitCode::SUCCESS);
    };
    table(
        &["REGION", "ADDRESS", "ID"],
        gs.iter()
            .map(|g| vec![g.region.clone(), g.address.clone(), g.id.clone()])
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
