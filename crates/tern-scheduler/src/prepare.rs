//! A workload's side of a decision: its inputs interned once when the scheduler is built
//! ([`Prepared`]), and the terms that depend on a node only through its region, computed once
//! per decision for every region that has nodes ([`RegionTerms`]).

use crate::index::{Index, Interner, NONE};
use crate::score::{latency, move_cost, move_seconds, proximity};
use crate::view::{amount, Weights, Workload};

/// A workload's inputs to the search, interned once when the scheduler is built.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub weights: Weights,
    pub threshold: f64,
    pub memory: u64,
    pub cpu: f64,
    pub used: f64,
    /// What it is expected to use: its CPU limit if it has one, else what it uses now.
    pub load: f64,
    pub state_bytes: u64,
    /// `(key, allowed values)`; a key or value no node has is `NONE` or left out.
    pub require: Vec<(u32, Vec<u32>)>,
    pub prefer: Vec<(u32, u32)>,
    /// Interned names of the nodes in `exclude_nodes` or `avoid`.
    pub banned: Vec<u32>,
    /// `(region, share of its requests)`, shares summing to 1.
    pub demand: Vec<(u32, f64)>,
    /// Indices of the workloads it talks to.
    pub peers: Vec<u32>,
}

impl Prepared {
    pub fn new(w: &Workload, index: &Index, peer: impl Fn(&str) -> Option<u32>) -> Prepared {
        let id = |i: &Interner, s: &str| i.get(s).unwrap_or(NONE);
        let require = w
            .require
            .iter()
            .map(|(k, vs)| {
                let vs = vs.iter().filter_map(|v| index.values.get(v)).collect();
                (id(&index.keys, k), vs)
            })
            .collect();
        let prefer = w
            .prefer
            .iter()
            .map(|(k, v)| (id(&index.keys, k), id(&index.values, v)))
            .collect();
        let banned = w
            .exclude_nodes
            .iter()
            .chain(&w.avoid)
            .filter_map(|n| index.names.get(n))
            .collect();
        let rates: Vec<(u32, f64)> = w
            .demand
            .iter()
            .filter_map(|(r, &rate)| Some((index.regions.get(r)?, amount(rate))))
            .filter(|&(_, rate)| rate > 0.0)
            .collect();
        let sum: f64 = rates.iter().map(|&(_, rate)| rate).sum();
        let demand = if sum.is_finite() && sum > 0.0 {
            rates.into_iter().map(|(r, rate)| (r, rate / sum)).collect()
        } else {
            Vec::new()
        };
        let peers = w.talks_to.iter().filter_map(|p| peer(p)).collect();
        Prepared {
            weights: w.policy.weights.sanitized(),
            threshold: w.policy.threshold(),
            memory: w.memory,
            cpu: amount(w.cpu),
            used: amount(w.cpu_used),
            load: amount(w.cpu).max(amount(w.cpu_used)),
            state_bytes: w.state_bytes,
            require,
            prefer,
            banned,
            demand,
            peers,
        }
    }
}

/// The terms that depend on a node only through its region.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RegionTerms {
    pub proximity: f64,
    pub latency: Option<f64>,
    pub move_cost: f64,
    pub move_seconds: f64,
}

/// Fills `out` (by region id) for a workload running in `from` (`None`: pending), whose peers
/// run in `peer_regions`.
pub(crate) fn region_terms(
    index: &Index,
    p: &Prepared,
    from: Option<u32>,
    peer_regions: &[u32],
    out: &mut Vec<RegionTerms>,
) {
    out.clear();
    out.resize(index.regions.len(), RegionTerms::default());
    for &r in &index.node_regions {
        let clients = (!p.demand.is_empty())
            .then(|| p.demand.iter().map(|&(c, s)| s * index.rtt(c, r)).sum());
        let peers = (!peer_regions.is_empty()).then(|| {
            peer_regions.iter().map(|&q| index.rtt(r, q)).sum::<f64>() / peer_regions.len() as f64
        });
        let latency = latency(clients, peers);
        let move_seconds = from.map_or(0.0, |f| move_seconds(p.state_bytes, index.link(f, r)));
        out[r as usize] = RegionTerms {
            proximity: proximity(latency),
            latency,
            move_cost: move_cost(move_seconds),
            move_seconds,
        };
    }
}
