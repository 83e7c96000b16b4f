//! `tern explain`: why a workload runs where it does: its score on its node and on the best
//! alternatives, term by term, the nodes it may not go to and why, and whether it will move.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::ExplainReply;
use tern_scheduler::{Score, Verdict};

use crate::args::{ClusterArgs, Output};
use crate::table::table;

#[derive(clap::Args)]
pub struct Args {
    workload: String,
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let (workload, json) = (a.workload, a.out.json());
    let r: ExplainReply = a
        .cluster
        .api()?
        .get(&format!("/v1/workloads/{workload}/explain"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e = &r.explanation;
    println!(
        "{} on {}{}",
        r.workload,
        r.node.as_deref().unwrap_or("(no node)"),
        if r.paused {
            " (automatic placement is paused)"
        } else {
            ""
        }
    );
    let row = |s: &Score, mark: &str| {
        vec![
            format!("{}{mark}", s.node),
            format!("{:+.3}", s.total),
            format!("{:.2}", s.terms.performance),
            format!("{:.2}", s.terms.proximity),
            format!("{:.2}", s.terms.resources),
            format!("{:.2}", s.terms.affinity),
            format!("{:.2}", s.terms.cost),
            format!("{:.2}", s.terms.move_cost),
            s.latency_ms
                .map(|l| format!("{l:.1}ms"))
                .unwrap_or_else(|| "-".into()),
        ]
    };
    let mut rows = Vec::new();
    if let Some(c) = &e.current {
        rows.push(row(c, " *"));
    }
    rows.extend(e.alternatives.iter().map(|s| row(s, "")));
    if !rows.is_empty() {
        table(
            &[
                "NODE",
                "TOTAL",
                "PERF",
                "PROXIMITY",
                "FREE",
                "AFFINITY",
                "COST",
                "MOVE",
                "LATENCY",
            ],
            rows,
        );
    }
    for (node, reason) in &e.infeasible {
        println!("{node}: not eligible: {reason}");
    }
    for a in &r.avoid {
        println!("{}: avoided: {}", a.node, a.reason);
    }
    match &e.verdict {
        Verdict::Stay { reason } => println!("stays: {reason}"),
        Verdict::Move { to, gain, reason } => println!("moves to {to} (+{gain:.3}): {reason}"),
        Verdict::Pending { reason } => println!("pending: {reason}"),
    }
    Ok(ExitCode::SUCCESS)
}
