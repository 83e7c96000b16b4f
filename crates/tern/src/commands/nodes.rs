//! `tern nodes`: the nodes, with their region, load and free memory.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::Node;
use tern_profile::format_size;

use crate::args::Listing;
use crate::table::{table, word};

pub type Args = Listing;

pub fn execute(a: Args) -> Result<ExitCode> {
    let Some(ns) = a.fetch::<Vec<Node>>("/v1/nodes")? else {
        return Ok(ExitCode::SUCCESS);
    };
    table(
        &[
            "NAME",
            "STATUS",
            "REGION",
            "CPU",
            "MEMORY FREE",
            "INSTANCES",
        ],
        ns.iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    {
                        let status = word(n.status);
                        if n.draining {
                            format!("{status},drained")
                        } else {
                            status
                        }
                    },
                    n.labels
                        .get("region")
                        .cloned()
                        .unwrap_or_else(|| "-".into()),
                    format!("{:.0}%", n.usage.cpu_load * 100.0),
                    format_size(n.usage.memory_free),
                    n.instances.len().to_string(),
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
