//! `tern ps`: the workloads, with why a pending one waits.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Workload;

use crate::args::Listing;
use crate::table::{table, word};

pub type Args = Listing;

pub fn execute(a: Args) -> Result<ExitCode> {
    let Some(ws) = a.fetch::<Vec<Workload>>("/v1/workloads")? else {
        return Ok(ExitCode::SUCCESS);
    };
    table(
        &["NAME", "STATUS", "NODE", "RESTARTS", "REASON"],
        ws.iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    word(w.status),
                    w.node.clone().unwrap_or_else(|| "-".into()),
                    w.restarts.to_string(),
                    w.reason.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
