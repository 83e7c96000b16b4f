//! A simulation that runs the production code on a generated cluster and measures it: placing
//! every workload one by one, then optionally perturbing the world and running one rebalancing
//! pass. Pure but for [`Instant`], which only measures; the same seed gives the same cluster and
//! the same decisions.

mod world;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::rebalance::Hysteresis;
use crate::scheduler::PassStats;
use crate::scheduler::Scheduler;
use crate::view::Limits;

pub use world::{generate, perturb, Rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub nodes: usize,
    pub workloads: usize,
    pub seed: u64,
    /// After placing: perturb the world and time one rebalancing pass.
    pub rebalance: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 5_000,
            workloads: 150_000,
            seed: 1,
            rebalance: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub nodes: usize,
    pub workloads: usize,
    pub placed: usize,
    pub unplaced: usize,
    /// Workloads (placed or not) per second of the placement loop.
    pub placements_per_sec: f64,
    /// Of single `place` calls.
    pub p50_decision_ms: f64,
    pub p99_decision_ms: f64,
    pub max_decision_ms: f64,
    /// Wall time of the placement loop.
    pub place_total_ms: f64,
    /// Time to build the scheduler (interning, classes) before placing.
    pub build_ms: f64,
    /// The one rebalancing pass (not counting building its scheduler).
    pub rebalance_ms: Option<f64>,
    pub rebalance_build_ms: Option<f64>,
    pub moves: Option<usize>,
    pub candidates: Option<usize>,
    /// Everything the pass counted.
    pub pass: Option<PassStats>,
    /// Equivalence classes of the nodes.
    pub classes: usize,
}

pub fn run(cfg: &SimConfig) -> SimReport {
    let mut rng = Rng::new(cfg.seed);
    let cluster = generate(cfg.nodes, cfg.workloads, &mut rng);
    let started = Instant::now();
    let mut sched = Scheduler::new(cluster);
    let build_ms = ms(started);
    let classes = sched.classes();
    let mut durations = Vec::with_capacity(cfg.workloads);
    let mut placed = 0;
    let started = Instant::now();
    for i in 0..cfg.workloads {
        let t = Instant::now();
        let ok = sched.place(i).is_ok();
        durations.push(t.elapsed().as_secs_f64() * 1e3);
        placed += usize::from(ok);
    }
    let place_total_ms = ms(started);
    durations.sort_by(f64::total_cmp);
    let mut report = SimReport {
        nodes: cfg.nodes,
        workloads: cfg.workloads,
        placed,
        unplaced: cfg.workloads - placed,
        placements_per_sec: cfg.workloads as f64 / (place_total_ms / 1e3).max(1e-9),
        p50_decision_ms: quantile(&durations, 0.50),
        p99_decision_ms: quantile(&durations, 0.99),
        max_decision_ms: durations.last().copied().unwrap_or(0.0),
        place_total_ms,
        build_ms,
        rebalance_ms: None,
        rebalance_build_ms: None,
        moves: None,
        candidates: None,
        pass: None,
        classes,
    };
    if cfg.rebalance {
        let mut world = sched.into_cluster();
        perturb(&mut world, &mut rng);
        let started = Instant::now();
        let mut sched = Scheduler::new(world);
        report.rebalance_build_ms = Some(ms(started));
        let started = Instant::now();
        let decisions = sched.rebalance(&Limits::unlimited(), &mut Hysteresis::new(1));
        report.rebalance_ms = Some(ms(started));
        report.moves = Some(decisions.len());
        report.candidates = Some(sched.last_pass().candidates);
        report.pass = Some(sched.last_pass());
    }
    report
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
