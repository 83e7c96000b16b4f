//! `tern explain`, `tern placement` and `tern sim`: what the scheduler thinks, and how fast it
//! thinks it.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::{ExplainReply, NetworkReply, PlacementState};
use tern_scheduler::{Score, Verdict};

use crate::fleet::{table, Api, ClusterContext};

pub fn explain(ctx: &ClusterContext, workload: &str, json: bool) -> Result<ExitCode> {
    let r: ExplainReply = Api::new(ctx)?.get(&format!("/v1/workloads/{workload}/explain"))?;
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

pub fn network(ctx: &ClusterContext, json: bool) -> Result<ExitCode> {
    let r: NetworkReply = Api::new(ctx)?.get("/v1/network")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
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

pub fn placement(ctx: &ClusterContext, action: &str) -> Result<ExitCode> {
    let api = Api::new(ctx)?;
    let st: PlacementState = match action {
        "pause" => api.post("/v1/placement/pause", &())?,
        "resume" => api.post("/v1/placement/resume", &())?,
        _ => api.get("/v1/placement")?,
    };
    println!(
        "automatic placement: {}",
        if st.paused { "paused" } else { "on" }
    );
    println!(
        "rebalance every {} ms; a move needs {} passes in a row",
        st.rebalance_every_ms, st.confirm_passes
    );
    if let Some(at) = st.last_pass_unix_ms {
        let ago = tern_api::unix_ms().saturating_sub(at);
        println!(
            "last pass {:.1} s ago: {:.2} ms, {} candidates, {} moves started",
            ago as f64 / 1e3,
            st.last_pass_ms,
            st.candidates,
            st.started
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sim(
    nodes: usize,
    workloads: usize,
    rebalance: bool,
    seed: u64,
    json: bool,
) -> Result<ExitCode> {
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
