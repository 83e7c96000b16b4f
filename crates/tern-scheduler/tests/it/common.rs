//! Builders for small hand-made clusters.

use tern_scheduler::{
    Cluster, Decision, Hysteresis, Limits, Link, Network, Node, PassStats, Scheduler, Workload,
};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// An idle, schedulable node that can enforce CPU limits.
pub fn node(name: &str, region: &str, cpus: f64, memory: u64) -> Node {
    Node {
        name: name.into(),
        labels: [("region".to_string(), region.to_string())].into(),
        cpus,
        memory,
        ..Node::default()
    }
}

/// A movable workload reserving `memory` and nothing else, whose state is its memory.
pub fn workload(name: &str, memory: u64) -> Workload {
    Workload {
        name: name.into(),
        memory,
        state_bytes: memory,
        movable: true,
        ..Workload::default()
    }
}

pub fn on(mut w: Workload, node: &str) -> Workload {
    w.node = Some(node.into());
    w
}

pub fn link(net: &mut Network, a: &str, b: &str, rtt_ms: f64, bandwidth: f64) {
    net.insert(a, b, Link { rtt_ms, bandwidth });
}

/// A cluster whose nodes' committed resources and busy cores are what its placed workloads
/// reserve and use, plus each node's `cpu_busy` as given (its other processes).
pub fn cluster(mut nodes: Vec<Node>, workloads: Vec<Workload>, network: Network) -> Cluster {
    for n in &mut nodes {
        for w in workloads
            .iter()
            .filter(|w| w.node.as_deref() == Some(&n.name))
        {
            n.committed_memory += w.memory;
            n.committed_cpu += w.cpu;
            n.cpu_busy += w.cpu_used;
        }
    }
    Cluster {
        nodes,
        workloads,
        network,
        now_ms: 1_000_000_000,
    }
}

/// One rebalancing pass: the decisions, its counts, and the cluster with the moves recorded.
pub fn pass(
    c: &Cluster,
    limits: &Limits,
    h: &mut Hysteresis,
) -> (Vec<Decision>, PassStats, Cluster) {
    let mut s = Scheduler::new(c.clone());
    let d = s.rebalance(limits, h);
    let stats = s.last_pass();
    (d, stats, s.into_cluster())
}

/// Two regions 120 ms apart with a node each, and a service in eu-west whose requests now all
/// come from ap-south.
pub fn demand_shift() -> Cluster {
    let mut net = Network::default();
    link(&mut net, "eu-west", "ap-south", 120.0, 200.0 * MIB as f64);
    let mut svc = on(workload("svc", 256 * MIB), "eu");
    svc.cpu_used = 0.2;
    svc.demand = [("ap-south".to_string(), 100.0)].into();
    cluster(
        vec![
            node("eu", "eu-west", 8.0, 16 * GIB),
            node("ap", "ap-south", 8.0, 16 * GIB),
        ],
        vec![svc],
        net,
    )
}
