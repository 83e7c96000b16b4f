//! `tern sim`: the scheduler's production code on a generated cluster (no network), timed.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Output;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 150_000)]
    workloads: usize,
    /// Then run one full rebalance pass after a shift of demand and load.
    #[arg(long)]
    rebalance: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    out: Output,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let Args {
        nodes,
        workloads,
        rebalance,
        seed,
        out,
    } = a;
    let json = out.json();
    if nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let report = tern_scheduler::sim::run(&tern_scheduler::sim::SimConfig {
        nodes,
        workloads,
        seed,
        rebalance,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "placed {} of {} workloads on {} nodes ({} classes of nodes)",
        report.placed, report.workloads, report.nodes, report.classes
    );
    println!(
        "placements/s {:.0}; decision p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        report.placements_per_sec,
        report.p50_decision_ms,
        report.p99_decision_ms,
        report.max_decision_ms
    );
    println!(
        "building the index: {:.1} ms; placing all: {:.1} ms",
        report.build_ms, report.place_total_ms
    );
    if let (Some(ms), Some(moves)) = (report.rebalance_ms, report.moves) {
        println!(
            "rebalance pass over {} workloads: {ms:.1} ms (+ {:.1} ms building its index), {moves} moves chosen ({} candidates)",
            report.placed,
            report.rebalance_build_ms.unwrap_or(0.0),
            report.candidates.unwrap_or(moves)
        );
    }
    Ok(ExitCode::SUCCESS)
}
