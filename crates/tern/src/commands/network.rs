//! `tern network`: the round trips and bandwidths the nodes' probes measured, by region pair
//! and node to node.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::NetworkReply;

use crate::args::Listing;
use crate::table::table;

pub type Args = Listing;

pub fn execute(a: Args) -> Result<ExitCode> {
    let Some(r) = a.fetch::<NetworkReply>("/v1/network")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mib = |b: f64| {
        if b > 0.0 {
            format!("{:.0} MiB/s", b / (1u64 << 20) as f64)
        } else {
            "-".into()
        }
    };
    table(
        &["REGION", "REGION", "RTT", "BANDWIDTH"],
        r.regions
            .links
            .iter()
            .map(|((a, b), l)| {
                vec![
                    a.clone(),
                    b.clone(),
                    format!("{:.1}ms", l.rtt_ms),
                    mib(l.bandwidth),
                ]
            })
            .collect(),
    );
    println!();
    table(
        &["NODE", "PEER", "RTT", "BANDWIDTH", "AGE"],
        r.nodes
            .iter()
            .flat_map(|n| {
                n.links.iter().map(|l| {
                    vec![
                        n.node.clone(),
                        l.peer.clone(),
                        format!("{:.1}ms", l.rtt_ms),
                        mib(l.bandwidth),
                        format!(
                            "{:.0}s",
                            tern_api::unix_ms().saturating_sub(l.measured_unix_ms) as f64 / 1e3
                        ),
                    ]
                })
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}
