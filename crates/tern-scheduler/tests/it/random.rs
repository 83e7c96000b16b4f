//! Random clusters for checking the index against brute force and the formulas.

use tern_scheduler::sim::Rng;
use tern_scheduler::{Cluster, Link, Network, Node, Weights, Workload};

use crate::common::{GIB, MIB};

const REGIONS: [&str; 5] = ["r0", "r1", "r2", "r3", "r4"];
const TYPES: [(&str, &str, &str); 3] = [
    ("t0", "1", "amd64"),
    ("t1", "2.5", "arm64"),
    ("t2", "7", "amd64"),
];

fn weight(rng: &mut Rng) -> f64 {
    match rng.below(10) {
        0 => f64::NAN,
        1 => -1.0,
        2 => 0.0,
        _ => rng.range(0.0, 2.0),
    }
}

/// `classes`: how many label combinations the nodes share (at most 15). `typed`: the capacity of
/// a node follows its type (as in a real fleet) rather than being random.
pub fn random_cluster(
    seed: u64,
    nodes: usize,
    workloads: usize,
    classes: usize,
    typed: bool,
) -> Cluster {
    let mut rng = Rng::new(seed);
    let mut network = Network::default();
    for (i, a) in REGIONS.iter().enumerate() {
        for b in &REGIONS[i..] {
            if rng.chance(0.7) {
                let link = Link {
                    rtt_ms: rng.range(0.3, 150.0),
                    bandwidth: rng.range(10.0, 1024.0) * MIB as f64,
                };
                network.insert(a, b, link);
            }
        }
    }
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| {
            let combo = i % classes;
            let (kind, cost, arch) = TYPES[combo / REGIONS.len() % TYPES.len()];
            // Some kinds of node lack a label others have.
            let arch = if combo.is_multiple_of(4) {
                None
            } else {
                Some(("arch", arch))
            };
            let labels = [
                ("region", REGIONS[combo % REGIONS.len()]),
                ("type", kind),
                ("cost", cost),
            ];
            let (cpus, memory) = if typed {
                // Machines of one type, reporting slightly different memory.
                let (cpus, gib) =
                    [(2.0, 8.0), (8.0, 32.0), (32.0, 128.0)][combo / REGIONS.len() % 3];
                (cpus, (gib * rng.range(0.95, 1.0) * GIB as f64) as u64)
            } else {
                (
                    [1.0, 2.0, 4.0, 8.0, 16.0][rng.below(5)],
                    (1 + rng.below(32)) as u64 * GIB,
                )
            };
            Node {
                name: format!("n{i}"),
                labels: labels
                    .into_iter()
                    .chain(arch)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                cpus,
                memory,
                committed_memory: (memory as f64 * rng.range(0.0, 0.7)) as u64,
                committed_cpu: cpus * rng.range(0.0, 0.7),
                cpu_busy: cpus * rng.range(0.0, 1.1),
                up: rng.chance(0.9),
                schedulable: rng.chance(0.9),
                cpu_limit: rng.chance(0.8),
            }
        })
        .collect();
    let workloads = (0..workloads)
        .map(|i| {
            let mut w = Workload {
                name: format!("w{i}"),
                memory: rng.below(4096) as u64 * MIB,
                cpu: if rng.chance(0.4) {
                    rng.range(0.1, 2.0)
                } else {
                    0.0
                },
                cpu_used: rng.range(0.0, 1.0),
                state_bytes: rng.below(4096) as u64 * MIB,
                movable: true,
                ..Workload::default()
            };
            if rng.chance(0.3) {
                let rs = (0..1 + rng.below(2)).map(|_| REGIONS[rng.below(5)].to_string());
                w.require.insert("region".into(), rs.collect());
            }
            if rng.chance(0.1) {
                w.require.insert("arch".into(), vec!["arm64".into()]);
            }
            if rng.chance(0.03) {
                w.require.insert("gpu".into(), vec!["yes".into()]);
            }
            if rng.chance(0.3) {
                w.prefer.insert("type".into(), TYPES[rng.below(3)].0.into());
                if rng.chance(0.3) {
                    w.prefer.insert("zone".into(), "z1".into());
                }
                if rng.chance(0.3) {
                    // A label some nodes lack, with a value no node has.
                    w.prefer.insert("arch".into(), "riscv64".into());
                }
            }
            if rng.chance(0.5) {
                for _ in 0..1 + rng.below(3) {
                    let r = if rng.chance(0.1) {
                        "r9"
                    } else {
                        REGIONS[rng.below(5)]
                    };
                    w.demand.insert(r.into(), rng.range(0.0, 100.0));
                }
            }
            if rng.chance(0.3) {
                w.talks_to = (0..1 + rng.below(3))
                    .map(|_| format!("w{}", rng.below(workloads)))
                    .collect();
            }
            if rng.chance(0.1) {
                w.exclude_nodes.push(format!("n{}", rng.below(nodes.len())));
            }
            if rng.chance(0.1) {
                w.avoid.push(format!("n{}", rng.below(nodes.len())));
            }
            if rng.chance(0.5) {
                w.policy.weights = Weights {
                    performance: weight(&mut rng),
                    proximity: weight(&mut rng),
                    resources: weight(&mut rng),
                    affinity: weight(&mut rng),
                    cost: weight(&mut rng),
                    move_cost: weight(&mut rng),
                };
            }
            w.policy.threshold = rng.range(0.0, 0.3);
            w
        })
        .collect();
    Cluster {
        nodes,
        workloads,
        network,
        now_ms: 1_000_000,
    }
}
