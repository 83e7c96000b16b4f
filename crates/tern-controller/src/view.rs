//! The scheduler's view of the cluster, built from the store and the gateways' traffic: the
//! one place that turns the API's records into `tern_scheduler` types (which know nothing of
//! HTTP or redb), so that the live controller and `tern sim` run the same scheduler.

use std::collections::{BTreeMap, HashMap};

use tern_api::{Migration, MigrationKind, Node, NodeStatus, Workload, WorkloadStatus};
use tern_scheduler as sched;

/// Every input of one scheduling pass.
pub(crate) struct Inputs<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) workloads: &'a [Workload],
    pub(crate) migrations: &'a [Migration],
    /// Requests per second by client region, per workload (recent gateway reports).
    pub(crate) demand: &'a HashMap<String, BTreeMap<String, f64>>,
    pub(crate) now: u64,
    /// Each metric is multiplied by a random factor within ±noise (testing knob; 0 = off).
    pub(crate) noise: f64,
    /// Keep workloads off the nodes where a move of theirs made latency worse. Only for
    /// rebalancing: a workload that must be placed (its node died) may go anywhere.
    pub(crate) avoid: bool,
}

/// A probe older than this says nothing about the link now (the prober refreshes every 2 s).
const LINK_STALE_MS: u64 = 30_000;

/// A small deterministic generator for the noise (no need for a crate).
struct Noise {
    state: u64,
    amount: f64,
}

impl Noise {
    fn apply(&mut self, x: f64) -> f64 {
        if self.amount <= 0.0 {
            return x;
        }
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        x * (1.0 + self.amount * (2.0 * unit - 1.0))
    }
}

/// Memory and CPU promised on each node to the workloads placed there.
pub(crate) fn committed_by_node(workloads: &[Workload]) -> HashMap<String, (u64, f64)> {
    let mut out: HashMap<String, (u64, f64)> = HashMap::new();
    for w in workloads {
        if let (Some(n), WorkloadStatus::Starting | WorkloadStatus::Running) = (&w.node, w.status) {
            let e = out.entry(n.clone()).or_default();
            e.0 =
                e.0.saturating_add(w.spec.profile.limits.memory.unwrap_or(0));
            e.1 += w.spec.profile.limits.cpu.unwrap_or(0.0);
        }
    }
    out
}

/// One node as the scheduler sees it.
pub(crate) fn node_view(n: &Node, committed: (u64, f64)) -> sched::Node {
    // Agents from before `cpu_busy` reported only the busy fraction.
    let cpu_busy = if n.usage.cpu_busy > 0.0 {
        n.usage.cpu_busy
    } else {
        n.usage.cpu_load * n.capacity.cpus
    };
    sched::Node {
        name: n.name.clone(),
        labels: n.labels.clone(),
        cpus: n.capacity.cpus,
        memory: n.capacity.memory,
        committed_memory: committed.0,
        committed_cpu: committed.1,
        cpu_busy,
        up: n.status == NodeStatus::Up,
        schedulable: n.schedulable,
        cpu_limit: n.capabilities.cpu_limit,
    }
}

/// The scheduler's policy for a workload: its profile's weights over the defaults.
pub(crate) fn policy(p: &tern_profile::Profile) -> sched::Policy {
    let d = sched::Weights::default();
    let w = &p.migration.weights;
    sched::Policy {
        weights: sched::Weights {
            performance: w.performance.unwrap_or(d.performance),
            proximity: w.proximity.unwrap_or(d.proximity),
            resources: w.resources.unwrap_or(d.resources),
            affinity: w.affinity.unwrap_or(d.affinity),
            cost: w.cost.unwrap_or(d.cost),
            move_cost: w.move_cost.unwrap_or(d.move_cost),
        },
        threshold: p.migration.threshold.unwrap_or(sched::DEFAULT_THRESHOLD),
        cooldown_ms: p
            .migration
            .cooldown
            .map(|c| c.as_millis() as u64)
            .unwrap_or(sched::DEFAULT_COOLDOWN_MS),
    }
}

/// A workload that is not placed yet, or whose placement is being chosen afresh.
pub(crate) fn unplaced(w: &Workload) -> sched::Workload {
    let p = &w.spec.profile;
    sched::Workload {
        name: w.name.clone(),
        memory: p.limits.memory.unwrap_or(0),
        cpu: p.limits.cpu.unwrap_or(0.0),
        cpu_used: 0.0,
        state_bytes: 0,
        require: p.placement.require.clone(),
        exclude_nodes: p.placement.exclude_nodes.clone(),
        prefer: p.placement.prefer.clone(),
        policy: policy(p),
        demand: BTreeMap::new(),
        talks_to: p.placement.talks_to.clone(),
        node: None,
        movable: false,
        last_moved_ms: None,
        avoid: Vec::new(),
    }
}

/// The region-to-region latency and bandwidth matrix: the median over the node pairs of each
/// region pair of what their probes measured.
pub(crate) fn network(
    nodes: &[Node],
    now: u64,
    noise: &mut impl FnMut(f64) -> f64,
) -> sched::Network {
    let region: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.labels.get("region").map_or("", |r| r.as_str()),
            )
        })
        .collect();
    let mut samples: BTreeMap<(String, String), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.status == NodeStatus::Up) {
        let a = region.get(n.name.as_str()).copied().unwrap_or("");
        for l in &n.links {
            let Some(b) = region.get(l.peer.as_str()).copied() else {
                continue;
            };
            if now.saturating_sub(l.measured_unix_ms) > LINK_STALE_MS {
                continue;
            }
            let key = if a <= b {
                (a.to_string(), b.to_string())
            } else {
                (b.to_string(), a.to_string())
            };
            let e = samples.entry(key).or_default();
            if l.rtt_ms.is_finite() && l.rtt_ms >= 0.0 {
                e.0.push(noise(l.rtt_ms));
            }
            if l.bandwidth.is_finite() && l.bandwidth > 0.0 {
                e.1.push(noise(l.bandwidth));
            }
        }
    }
    let median = |v: &mut Vec<f64>| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    };
    let mut links = BTreeMap::new();
    for ((a, b), (mut rtt, mut bw)) in samples {
        let Some(rtt_ms) = median(&mut rtt) else {
            continue;
        };
        links.insert(
            (a, b),
            sched::Link {
                rtt_ms,
                // Not measured yet: what a datacenter link would do.
                bandwidth: median(&mut bw).unwrap_or(100.0 * 1024.0 * 1024.0),
            },
        );
    }
    sched::Network { links }
}

/// The whole cluster for one pass.
pub(crate) fn cluster(inp: &Inputs<'_>) -> sched::Cluster {
    let mut noise = Noise {
        state: inp.now,
        amount: inp.noise,
    };
    // What each instance measured, by instance id.
    let reports: HashMap<&str, (f64, u64)> = inp
        .nodes
        .iter()
        .flat_map(|n| n.instances.iter())
        // Resident memory overstates the state (it counts the runtime's code), so the
        // anonymous part, where it is known.
        .map(|i| {
            let state = if i.state_bytes > 0 {
                i.state_bytes
            } else {
                i.memory
            };
            (i.id.as_str(), (i.cpu_cores, state))
        })
        .collect();
    let mut committed = committed_by_node(inp.workloads);
    let by_name: HashMap<&str, &Workload> =
        inp.workloads.iter().map(|w| (w.name.as_str(), w)).collect();
    // A migration under way holds its destination's room already (and will load its CPU):
    // two moves must not both count on the same free room.
    let mut arriving: HashMap<&str, f64> = HashMap::new();
    let active: Vec<&Migration> = inp
        .migrations
        .iter()
        .filter(|m| m.outcome.is_none())
        .collect();
    for m in &active {
        let Some(w) = by_name.get(m.workload.as_str()) else {
            continue;
        };
        let e = committed.entry(m.to.clone()).or_default();
        e.0 =
            e.0.saturating_add(w.spec.profile.limits.memory.unwrap_or(0));
        e.1 += w.spec.profile.limits.cpu.unwrap_or(0.0);
        let cores = w
            .instance
            .as_deref()
            .and_then(|i| reports.get(i))
            .map_or(0.0, |r| r.0);
        *arriving.entry(m.to.as_str()).or_default() += cores;
    }
    let nodes: Vec<sched::Node> = inp
        .nodes
        .iter()
        .map(|n| {
            let mut v = node_view(n, committed.get(&n.name).copied().unwrap_or_default());
            v.cpu_busy += arriving.get(n.name.as_str()).copied().unwrap_or(0.0);
            v.cpu_busy = noise.apply(v.cpu_busy).clamp(0.0, v.cpus.max(0.0));
            v
        })
        .collect();
    let node_regions: std::collections::HashSet<&str> = inp
        .nodes
        .iter()
        .filter_map(|n| n.labels.get("region").map(|r| r.as_str()))
        .collect();
    // Any finished move (also a failed one) starts the cooldown: a destination that keeps
    // failing is not tried again every other pass.
    let mut last_moved: HashMap<&str, u64> = HashMap::new();
    for m in inp.migrations {
        if let (Some(t), MigrationKind::Move) = (m.finished_unix_ms, m.kind) {
            let e = last_moved.entry(m.workload.as_str()).or_default();
            *e = (*e).max(t);
        }
    }
    let migrating: std::collections::HashSet<&str> = active
        .iter()
        .flat_map(|m| [m.workload.as_str(), m.target_workload.as_str()])
        .collect();
    let mut workloads = Vec::new();
    for w in inp.workloads {
        let placed = matches!(w.status, WorkloadStatus::Running | WorkloadStatus::Starting);
        if !placed && w.status != WorkloadStatus::Pending {
            continue;
        }
        let mut v = unplaced(w);
        if inp.avoid {
            v.avoid = w
                .avoid
                .iter()
                .filter(|a| a.until_unix_ms > inp.now)
                .map(|a| a.node.clone())
                .collect();
        }
        if placed {
            v.node = w.node.clone();
            let (cores, memory) = w
                .instance
                .as_deref()
                .and_then(|i| reports.get(i).copied())
                .unwrap_or_default();
            v.cpu_used = noise.apply(cores).max(0.0);
            v.state_bytes = noise.apply(memory as f64).max(0.0) as u64;
            v.movable = w.status == WorkloadStatus::Running
                && w.spec.profile.migration.live
                && !migrating.contains(w.name.as_str());
            v.last_moved_ms = last_moved.get(w.name.as_str()).copied();
        }
        if let Some(d) = inp.demand.get(&w.name) {
            // Only regions that have nodes: the latency from any other is unmeasured and so
            // the same for every node (it would not change the ranking), and a client may
            // name any region it likes (a trusted header) where the matrix is regions².
            v.demand = d
                .iter()
                .filter(|(r, _)| node_regions.contains(r.as_str()))
                .map(|(r, rate)| (r.clone(), noise.apply(*rate).max(0.0)))
                .collect();
        }
        workloads.push(v);
    }
    let network = network(inp.nodes, inp.now, &mut |x| noise.apply(x));
    sched::Cluster {
        nodes,
        workloads,
        network,
        now_ms: inp.now,
    }
}

/// The cluster as the store has it, without demand or noise: for placing pending workloads
/// and choosing where a drained node's workloads go.
pub(crate) fn at_rest(
    nodes: &[Node],
    workloads: &[Workload],
    migrations: &[Migration],
    now: u64,
) -> sched::Cluster {
    cluster(&Inputs {
        nodes,
        workloads,
        migrations,
        demand: &HashMap::new(),
        now,
        noise: 0.0,
        avoid: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_api::{Capabilities, Capacity, LinkReport, Usage};

    fn node(name: &str, region: &str, links: &[(&str, f64, f64)]) -> Node {
        Node {
            name: name.into(),
            labels: [("region".to_string(), region.to_string())].into(),
            capacity: Capacity {
                cpus: 2.0,
                memory: 1 << 30,
            },
            capabilities: Capabilities { cpu_limit: true },
            address: String::new(),
            probe: None,
            links: links
                .iter()
                .map(|(peer, rtt_ms, bandwidth)| LinkReport {
                    peer: peer.to_string(),
                    rtt_ms: *rtt_ms,
                    bandwidth: *bandwidth,
                    measured_unix_ms: 0,
                })
                .collect(),
            status: NodeStatus::Up,
            usage: Usage::default(),
            registered_unix_ms: 0,
            last_heartbeat_unix_ms: 0,
            session: String::new(),
            instances: Vec::new(),
            schedulable: true,
            draining: false,
            down_after_ms: 0,
        }
    }

    #[test]
    fn the_region_matrix_is_the_median_of_the_node_pairs_and_ignores_nonsense() {
        let nodes = [
            node("a", "eu", &[("b", 10.0, 1e9), ("c", 100.0, 0.0)]),
            node("b", "eu", &[("a", 12.0, 1e9), ("c", 120.0, 5e7)]),
            node(
                "c",
                "ap",
                &[
                    ("a", 110.0, 4e7),
                    ("b", f64::NAN, -1.0),
                    ("ghost", 1.0, 1.0),
                ],
            ),
        ];
        let net = network(&nodes, 0, &mut |x| x);
        let eu = net.links[&("eu".to_string(), "eu".to_string())];
        assert_eq!(eu.rtt_ms, 12.0, "median of 10 and 12 (upper)");
        let ap_eu = net.links[&("ap".to_string(), "eu".to_string())];
        // 100, 110 and 120 measured (NaN dropped): 110.
        assert_eq!(ap_eu.rtt_ms, 110.0);
        // Bandwidths 4e7 and 5e7 (0 and -1 are "not measured"): the upper median.
        assert_eq!(ap_eu.bandwidth, 5e7);
        assert_eq!(net.links.len(), 2, "a peer nobody knows is left out");
    }

    #[test]
    fn noise_stays_within_its_bounds_and_zero_is_off() {
        let mut n = Noise {
            state: 7,
            amount: 0.1,
        };
        for _ in 0..1000 {
            let x = n.apply(100.0);
            assert!((90.0..=110.0).contains(&x), "{x}");
        }
        let mut off = Noise {
            state: 7,
            amount: 0.0,
        };
        assert_eq!(off.apply(100.0), 100.0);
    }
}
