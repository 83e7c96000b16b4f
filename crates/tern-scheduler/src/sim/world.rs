//! A generated world: regions on a made-up map, a heterogeneous fleet, and a mix of workloads
//! that exercises every term and constraint. The proportions aim at a busy but not full cluster
//! (about half its memory promised once everything is placed), so almost every workload fits.

use std::collections::BTreeMap;

use crate::network::{Link, Network};
use crate::view::{Cluster, Node, Policy, Weights, Workload};
use crate::DEFAULT_COOLDOWN_MS;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// splitmix64: tiny, fast, and good enough to make test worlds (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Log-uniform in `[lo, hi)`: as many small values as large ones per factor of two.
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }
}

/// Name and (latitude, longitude) of made-up data centres.
const REGIONS: [(&str, f64, f64); 8] = [
    ("eu-west", 53.3, -6.3),
    ("eu-central", 50.1, 8.7),
    ("us-east", 38.9, -77.0),
    ("us-west", 37.4, -122.1),
    ("sa-east", -23.5, -46.6),
    ("ap-south", 19.1, 72.9),
    ("ap-northeast", 35.7, 139.7),
    ("ap-southeast", 1.4, 103.8),
];

/// (type, cpus, memory GiB, cost per hour, arch, share of the fleet)
const TYPES: [(&str, f64, u64, f64, &str, f64); 6] = [
    ("small", 2.0, 4, 1.0, "amd64", 0.30),
    ("medium", 8.0, 32, 3.5, "amd64", 0.30),
    ("large", 32.0, 128, 12.0, "amd64", 0.12),
    ("arm-small", 2.0, 4, 0.8, "arm64", 0.12),
    ("arm-medium", 8.0, 32, 2.8, "arm64", 0.10),
    ("arm-large", 32.0, 128, 9.6, "arm64", 0.06),
];

fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// rtt ≈ distance / 100 km + 1 ms; bandwidth falls with distance from 1 GiB/s.
fn network() -> Network {
    let mut net = Network::default();
    for (i, &(a, la, lo)) in REGIONS.iter().enumerate() {
        for &(b, lb, lob) in &REGIONS[i..] {
            let d = km((la, lo), (lb, lob));
            let link = if a == b {
                Link {
                    rtt_ms: 0.5,
                    bandwidth: GIB as f64,
                }
            } else {
                Link {
                    rtt_ms: d / 100.0 + 1.0,
                    bandwidth: GIB as f64 / (1.0 + d / 1000.0),
                }
            };
            net.insert(a, b, link);
        }
    }
    net
}

fn node(i: usize, rng: &mut Rng) -> Node {
    let region = REGIONS[rng.below(REGIONS.len())].0;
    let mut pick = rng.unit();
    let mut t = TYPES[0];
    for ty in TYPES {
        t = ty;
        if pick < ty.5 {
            break;
        }
        pick -= ty.5;
    }
    let (kind, cpus, memory, cost, arch, _) = t;
    // Capacity may differ inside a class: some machines of a type have more memory.
    let memory = if rng.chance(0.3) {
        memory * 3 / 2
    } else {
        memory
    } * GIB;
    let labels = [
        ("region", region.to_string()),
        ("type", kind.to_string()),
        ("arch", arch.to_string()),
        ("cost", cost.to_string()),
    ];
    Node {
        name: format!("n{i}"),
        labels: labels.map(|(k, v)| (k.to_string(), v)).into(),
        cpus,
        memory,
        committed_memory: 0,
        committed_cpu: 0.0,
        cpu_busy: cpus * rng.range(0.0, 0.4),
        up: !rng.chance(0.005),
        schedulable: !rng.chance(0.02),
        cpu_limit: !rng.chance(0.1),
    }
}

fn demand(rng: &mut Rng) -> BTreeMap<String, f64> {
    (0..1 + rng.below(3))
        .map(|_| {
            let r = REGIONS[rng.below(REGIONS.len())].0.to_string();
            (r, rng.log_range(1.0, 1000.0).round())
        })
        .collect()
}

fn workload(i: usize, count: usize, nodes: usize, now_ms: u64, rng: &mut Rng) -> Workload {
    let memory = rng.log_range(64.0, 2048.0).round() as u64 * MIB;
    let mut w = Workload {
        name: format!("w{i}"),
        memory,
        cpu: if rng.chance(0.4) {
            (rng.range(0.1, 1.0) * 20.0).round() / 20.0
        } else {
            0.0
        },
        cpu_used: rng.log_range(0.005, 0.2),
        state_bytes: (memory as f64 * rng.range(0.3, 1.0)) as u64
            + if rng.chance(0.3) {
                rng.below(GIB as usize) as u64
            } else {
                0
            },
        movable: rng.chance(0.9),
        policy: Policy::default(),
        ..Workload::default()
    };
    if rng.chance(0.3) {
        let r = REGIONS[rng.below(REGIONS.len())].0;
        w.require.insert("region".into(), vec![r.into()]);
    }
    if rng.chance(0.05) {
        w.require.insert("arch".into(), vec!["amd64".into()]);
    }
    if rng.chance(0.2) {
        if rng.chance(0.5) {
            w.prefer.insert("arch".into(), "arm64".into());
        } else {
            let r = REGIONS[rng.below(REGIONS.len())].0;
            w.prefer.insert("region".into(), r.into());
        }
    }
    if rng.chance(0.5) {
        w.demand = demand(rng);
    }
    if rng.chance(0.2) {
        w.talks_to = (0..1 + rng.below(3))
            .map(|_| format!("w{}", rng.below(count)))
            .collect();
    }
    if rng.chance(0.15) {
        w.policy.weights = Weights {
            cost: 1.0,
            ..Weights::default()
        };
    }
    if rng.chance(0.01) {
        w.exclude_nodes.push(format!("n{}", rng.below(nodes)));
    }
    if rng.chance(0.05) {
        w.last_moved_ms = Some(now_ms - rng.below(DEFAULT_COOLDOWN_MS as usize) as u64);
    }
    w
}

/// A cluster of `nodes` nodes (nothing placed) and `workloads` pending workloads.
pub fn generate(nodes: usize, workloads: usize, rng: &mut Rng) -> Cluster {
    let now_ms = 1_700_000_000_000;
    Cluster {
        nodes: (0..nodes).map(|i| node(i, rng)).collect(),
        workloads: (0..workloads)
            .map(|i| workload(i, workloads, nodes, now_ms, rng))
            .collect(),
        network: network(),
        now_ms,
    }
}

/// What changes between two passes in a bad minute: the demand of about 10% of the workloads
/// comes from other regions now, and about 5% of the nodes are overloaded.
pub fn perturb(cluster: &mut Cluster, rng: &mut Rng) {
    for w in &mut cluster.workloads {
        if rng.chance(0.1) {
            w.demand = demand(rng);
        }
    }
    for n in &mut cluster.nodes {
        if rng.chance(0.05) {
            n.cpu_busy = n.cpus;
        }
    }
    cluster.now_ms += 10_000;
}
