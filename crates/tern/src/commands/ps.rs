//! `tern ps`: the workloads, with why a pending one waits.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Workload;

use crate::args::{ClusterArgs, Output};
use crate::table::{table, word};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let ws: Vec<Workload> = a.cluster.api()?.get("/v1/workloads")?;
    if a.out.json() {
        println!("{}", serde_json::to_string_pretty(&ws)?);
        return Ok(ExitCode::SUCCESS);
    }
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
