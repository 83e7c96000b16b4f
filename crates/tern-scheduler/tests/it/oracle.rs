//! The scores against the formulas of the specification, recomputed from the public view with
//! strings and `Network::between`, sharing no code with the scheduler: the index and `score`
//! share their term code, so comparing them with each other cannot catch a wrong term.

use tern_scheduler::{Cluster, Node, Scheduler};

use crate::random::random_cluster;

/// The score of node `n` for workload `w`, computed from the view as the formulas say, with
/// strings and [`Network::between`], sharing no code with the scheduler.
fn reference_total(c: &Cluster, w: usize, n: usize) -> f64 {
    let ok = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let unit = |x: f64| if x > 0.0 { x.min(1.0) } else { 0.0 };
    let (wl, node) = (&c.workloads[w], &c.nodes[n]);
    let node_of = |name: &str| c.nodes.iter().find(|m| m.name == name);
    let region = |m: &Node| m.labels.get("region").cloned().unwrap_or_default();
    let here = wl.node.as_deref() == Some(node.name.as_str());
    let cpus = ok(node.cpus);
    let busy = ok(node.cpu_busy) - if here { ok(wl.cpu_used) } else { 0.0 }
        + ok(wl.cpu).max(ok(wl.cpu_used));
    let performance = if cpus > 0.0 {
        unit(1.0 - (busy / cpus).min(1.0))
    } else {
        0.0
    };
    let (own_memory, own_cpu) = if here {
        (wl.memory, ok(wl.cpu))
    } else {
        (0, 0.0)
    };
    let memory_after = node.committed_memory.saturating_sub(own_memory) + wl.memory;
    let cpu_after = ok(ok(node.committed_cpu) - own_cpu) + ok(wl.cpu);
    let memory_free = if node.memory > 0 {
        unit(1.0 - memory_after as f64 / node.memory as f64)
    } else {
        0.0
    };
    let cpu_free = if cpus > 0.0 {
        unit(1.0 - cpu_after / cpus)
    } else {
        0.0
    };
    let resources = 0.5 * memory_free + 0.5 * cpu_free;
    let rtt = |a: &str, b: &str| c.network.between(a, b).rtt_ms;
    let r = region(node);
    let rates: Vec<(&String, f64)> = wl
        .demand
        .iter()
        .map(|(k, &v)| (k, ok(v)))
        .filter(|x| x.1 > 0.0)
        .collect();
    let sum: f64 = rates.iter().map(|x| x.1).sum();
    let clients = (sum > 0.0).then(|| rates.iter().map(|(k, v)| v / sum * rtt(k, &r)).sum::<f64>());
    let peer_regions: Vec<String> = wl
        .talks_to
        .iter()
        .filter_map(|p| c.workloads.iter().position(|x| x.name == *p))
        .filter(|&p| p != w)
        .filter_map(|p| c.workloads[p].node.as_deref().and_then(node_of))
        .map(region)
        .collect();
    let peers = (!peer_regions.is_empty())
        .then(|| peer_regions.iter().map(|p| rtt(&r, p)).sum::<f64>() / peer_regions.len() as f64);
    let latency = match (clients, peers) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    let proximity = latency.map_or(1.0, |l| 1.0 / (1.0 + l / 50.0));
    let matched = wl
        .prefer
        .iter()
        .filter(|(k, v)| node.labels.get(*k) == Some(*v))
        .count();
    let affinity = if wl.prefer.is_empty() {
        1.0
    } else {
        matched as f64 / wl.prefer.len() as f64
    };
    let cost_of = |m: &Node| {
        m.labels
            .get("cost")
            .and_then(|x| x.parse::<f64>().ok())
            .map_or(0.0, ok)
    };
    let max_cost = c.nodes.iter().map(cost_of).fold(0.0, f64::max);
    let cost = if max_cost > 0.0 {
        1.0 - cost_of(node) / max_cost
    } else {
        1.0
    };
    let move_cost = match wl.node.as_deref().and_then(node_of) {
        Some(from) if !here => {
            let link = c.network.between(&region(from), &r);
            let seconds = wl.state_bytes as f64 / link.bandwidth + link.rtt_ms / 1000.0 * 4.0;
            (seconds / 10.0).min(1.0)
        }
        _ => 0.0,
    };
    let k = wl.policy.weights;
    ok(k.performance) * performance
        + ok(k.proximity) * proximity
        + ok(k.resources) * resources
        + ok(k.affinity) * affinity
        + ok(k.cost) * cost
        - ok(k.move_cost) * move_cost
}

#[test]
fn scores_are_the_formulas_of_the_view() {
    for seed in 0..40 {
        let mut s = Scheduler::new(random_cluster(
            seed,
            30,
            50,
            [15, 5, 3][seed as usize % 3],
            false,
        ));
        // Half placed, so that peers, move costs and own reservations all show.
        for w in 0..25 {
            let _ = s.place(w);
        }
        let c = s.cluster();
        for w in 0..50 {
            for n in 0..30 {
                if let Ok(score) = s.score(w, n) {
                    let want = reference_total(c, w, n);
                    assert!(
                        (score.total - want).abs() < 1e-9,
                        "seed {seed} w{w} n{n}: {score:?} vs {want}"
                    );
                }
            }
        }
    }
}
