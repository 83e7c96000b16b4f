//! `tern migrations`: every migration with its figures and why it happened.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Migration;
use tern_profile::format_size;

use crate::args::Listing;
use crate::table::table;

pub type Args = Listing;

pub fn execute(a: Args) -> Result<ExitCode> {
    let Some(ms) = a.fetch::<Vec<Migration>>("/v1/migrations")? else {
        return Ok(ExitCode::SUCCESS);
    };
    table(
        &[
            "ID", "WORKLOAD", "FROM", "TO", "OUTCOME", "PAUSE", "TOTAL", "BYTES", "WHY",
        ],
        ms.iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.workload.clone(),
                    m.from.clone(),
                    m.to.clone(),
                    m.state().to_string(),
                    format!("{:.1}ms", m.pause_ms),
                    format!("{:.0}ms", m.total_ms),
                    format_size(m.bytes),
                    match (&m.failed_step, &m.reason) {
                        (Some(s), Some(r)) => format!("{s}: {r}"),
                        _ => m.why.clone(),
                    },
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
