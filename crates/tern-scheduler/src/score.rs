//! The score of a node for a workload: terms in `[0, 1]`, higher is better, summed with the
//! workload's weights. Each term is a plain function of numbers so that the index (which computes
//! the terms that depend only on a node's class once per class) and the per-node path compute
//! bit-for-bit the same totals.

use serde::{Deserialize, Serialize};

use crate::network::Link;
use crate::view::Weights;

/// The terms of a score, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Terms {
    /// Expected CPU availability for the workload: `1 − min(1, busy_after / cpus)`.
    pub performance: f64,
    /// `1 / (1 + latency_ms / 50)`; 1 when nothing tells where its traffic comes from.
    pub proximity: f64,
    /// Free fraction of memory and CPU after placing it (half each).
    pub resources: f64,
    /// Fraction of its preferred labels the node has (1 when it prefers nothing).
    pub affinity: f64,
    /// `1 − cost / max_cost` over the cluster's nodes (1 for all when nothing costs anything).
    pub cost: f64,
    /// The penalty: `min(1, move_seconds / 10)` for a move, 0 where it runs or when pending.
    pub move_cost: f64,
}

/// A node's score for a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub node: String,
    pub terms: Terms,
    /// The latency the proximity term was computed from, if any.
    pub latency_ms: Option<f64>,
    /// Expected duration of a move there (0 where it runs or when pending).
    pub move_seconds: f64,
    /// `Σ weight · term − move_cost weight · move_cost term`.
    pub total: f64,
}

/// The total. The order of the operations is fixed so that a bound computed from larger term
/// values is never below the total (rounding to nearest is monotonic).
pub(crate) fn total(w: &Weights, t: &Terms) -> f64 {
    w.performance * t.performance
        + w.proximity * t.proximity
        + w.resources * t.resources
        + w.affinity * t.affinity
        + w.cost * t.cost
        - w.move_cost * t.move_cost
}

/// `busy` excludes the workload's own measured use if it runs there already; `load` is what it
/// is expected to use, `max(cpu, cpu_used)`: its limit if it has one, else what it uses now.
pub(crate) fn performance(busy: f64, load: f64, cpus: f64) -> f64 {
    if cpus <= 0.0 {
        return 0.0;
    }
    clamp01(1.0 - ((busy + load) / cpus).min(1.0))
}

/// Free fraction after the reservation: `memory_after` and `cpu_after` include it.
pub(crate) fn resources(memory_after: u64, memory: u64, cpu_after: f64, cpus: f64) -> f64 {
    let memory_free = if memory == 0 {
        0.0
    } else {
        clamp01(1.0 - memory_after as f64 / memory as f64)
    };
    let cpu_free = if cpus <= 0.0 {
        0.0
    } else {
        clamp01(1.0 - cpu_after / cpus)
    };
    0.5 * memory_free + 0.5 * cpu_free
}

/// Blends where the requests come from (a demand-weighted mean rtt) with where its peers run (a
/// mean rtt), half each when both are known.
pub(crate) fn latency(clients: Option<f64>, peers: Option<f64>) -> Option<f64> {
    match (clients, peers) {
        (Some(c), Some(p)) => Some(0.5 * c + 0.5 * p),
        (one, other) => one.or(other),
    }
}

/// 50 ms of latency halves the term: the difference between a region and the next continent.
pub(crate) fn proximity(latency_ms: Option<f64>) -> f64 {
    match latency_ms {
        Some(ms) => clamp01(1.0 / (1.0 + ms.max(0.0) / 50.0)),
        None => 1.0,
    }
}

pub(crate) fn affinity(matched: usize, preferred: usize) -> f64 {
    if preferred == 0 {
        1.0
    } else {
        matched as f64 / preferred as f64
    }
}

pub(crate) fn cost(cost: f64, max_cost: f64) -> f64 {
    if max_cost <= 0.0 {
        1.0
    } else {
        clamp01(1.0 - cost / max_cost)
    }
}

/// Expected duration of a live migration: the state over the link's bandwidth, plus four round
/// trips of the protocol (prepare, address, sync, commit).
pub(crate) fn move_seconds(state_bytes: u64, link: Link) -> f64 {
    state_bytes as f64 / link.bandwidth + link.rtt_ms / 1000.0 * 4.0
}

/// A move of 10 s or more costs the whole term: the pause and the risk grow with the transfer.
pub(crate) fn move_cost(seconds: f64) -> f64 {
    clamp01(seconds / 10.0)
}

/// Into `[0, 1]`, NaN becoming 0 (where `f64::clamp` would keep it).
pub(crate) fn clamp01(x: f64) -> f64 {
    if x > 0.0 {
        x.min(1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_stay_in_range_on_degenerate_nodes() {
        assert_eq!(performance(1.0, 0.5, 0.0), 0.0);
        assert_eq!(performance(-3.0, 0.0, 2.0), 1.0);
        assert_eq!(performance(1.0, 1.0, 4.0), 0.5);
        assert_eq!(resources(10, 0, 1.0, 0.0), 0.0);
        assert_eq!(resources(0, 100, 0.0, 2.0), 1.0);
        assert_eq!(resources(200, 100, 0.0, 2.0), 0.5);
        assert_eq!(proximity(Some(50.0)), 0.5);
        assert_eq!(proximity(None), 1.0);
        assert_eq!(cost(3.0, 0.0), 1.0);
        assert_eq!(move_cost(f64::NAN), 0.0);
    }
}
