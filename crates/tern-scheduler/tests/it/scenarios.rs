//! The behaviours rebalancing exists for, on small hand-made clusters.

use tern_scheduler::sim::Rng;
use tern_scheduler::{Cluster, Hysteresis, Limits, Network, Scheduler, Verdict, Weights};

use crate::common::{cluster, demand_shift, link, node, on, pass, workload, GIB, MIB};

fn at_once() -> Hysteresis {
    Hysteresis::new(1)
}

#[test]
fn a_service_follows_its_demand_to_another_region() {
    let c = demand_shift();
    let (d, stats, after) = pass(&c, &Limits::unlimited(), &mut at_once());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].workload.as_str(), d[0].from.as_str(), d[0].to.as_str()),
        ("svc", "eu", "ap")
    );
    assert!(d[0].gain > 0.15, "{d:?}");
    assert!(
        d[0].reason.contains("from demand in ap-south"),
        "{}",
        d[0].reason
    );
    assert_eq!(stats.decided, 1);
    // The move is recorded: the reservation went along.
    let svc = &after.workloads[0];
    assert_eq!(svc.node.as_deref(), Some("ap"));
    assert_eq!(svc.last_moved_ms, Some(c.now_ms));
    assert_eq!(after.nodes[0].committed_memory, 0);
    assert_eq!(after.nodes[1].committed_memory, 256 * MIB);
    // Demand from where it already runs: it stays.
    let mut home = c.clone();
    home.workloads[0].demand = [("eu-west".to_string(), 100.0)].into();
    assert!(pass(&home, &Limits::unlimited(), &mut at_once())
        .0
        .is_empty());
}

/// A node whose CPUs are all busy, two idle ones, and four movable workloads on the busy one.
fn overloaded() -> Cluster {
    let mut hot = node("hot", "eu-west", 4.0, 16 * GIB);
    hot.cpu_busy = 0.4;
    let workloads = (0..4)
        .map(|i| {
            let mut w = on(workload(&format!("w{i}"), 512 * MIB), "hot");
            w.cpu_used = 0.9;
            w
        })
        .collect();
    let idle = |name: &str| {
        let mut n = node(name, "eu-west", 4.0, 16 * GIB);
        n.cpu_busy = 0.2;
        n
    };
    cluster(
        vec![hot, idle("idle1"), idle("idle2")],
        workloads,
        Network::default(),
    )
}

fn limits(per_node: usize, total: usize, active: &[(&str, &str)]) -> Limits {
    Limits {
        per_node,
        total,
        active: active.iter().map(|&(a, b)| (a.into(), b.into())).collect(),
        settling: Vec::new(),
    }
}

#[test]
fn an_overloaded_node_sheds_workloads_to_idle_ones_within_limits() {
    let c = overloaded();
    assert_eq!(c.nodes[0].cpu_busy, c.nodes[0].cpus);
    let (d, stats, after) = pass(&c, &limits(2, 10, &[]), &mut at_once());
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|d| d.from == "hot"));
    assert!(d[0].reason.starts_with("performance +"), "{}", d[0].reason);
    // The second move saw the first: it went to the other idle node. And after two, the node
    // is no longer overloaded: the other two were candidates but are not worth moving now.
    let mut to: Vec<&str> = d.iter().map(|d| d.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["idle1", "idle2"]);
    assert_eq!((stats.candidates, stats.superseded), (4, 2), "{stats:?}");
    assert!((after.nodes[0].cpu_busy - 2.2).abs() < 1e-9);
    // One migration per node: the rest wait for the limit.
    let (d, stats, _) = pass(&c, &limits(1, 10, &[]), &mut at_once());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(stats.held_by_limits, 3, "{stats:?}");
    // Migrations under way count.
    let (d, stats, _) = pass(&c, &limits(1, 10, &[("hot", "idle1")]), &mut at_once());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(stats.held_by_limits, 4, "{stats:?}");
    let (d, _, _) = pass(&c, &limits(2, 10, &[("x", "idle1")]), &mut at_once());
    assert_eq!(d.len(), 2);
    assert!(
        d.iter().any(|d| d.to == "idle1"),
        "idle1 has room for one more: {d:?}"
    );
    // And so does the total.
    assert_eq!(pass(&c, &limits(10, 1, &[]), &mut at_once()).0.len(), 1);
    assert!(pass(&c, &limits(10, 1, &[("x", "y")]), &mut at_once())
        .0
        .is_empty());
    // A node that a move has just reached looks idler than it is: nothing goes there (or
    // leaves a node that a move has just left) until its measurements show the move.
    let mut settling = limits(10, 10, &[]);
    settling.settling = vec!["idle1".into()];
    let (d, _, _) = pass(&c, &settling, &mut at_once());
    assert!(!d.is_empty() && d.iter().all(|d| d.to == "idle2"), "{d:?}");
    settling.settling = vec!["hot".into()];
    let (d, stats, _) = pass(&c, &settling, &mut at_once());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(stats.held_by_limits, 4, "{stats:?}");
}

#[test]
fn a_cost_minded_workload_moves_to_a_cheap_node_once_it_has_room() {
    let mut cheap = node("cheap", "eu-west", 4.0, 4 * GIB);
    cheap.labels.insert("cost".into(), "1".into());
    let mut pricey = node("pricey", "eu-west", 4.0, 8 * GIB);
    pricey.labels.insert("cost".into(), "10".into());
    let mut w = on(workload("thrifty", GIB), "pricey");
    w.policy.weights = Weights {
        cost: 1.0,
        ..Weights::default()
    };
    let mut full = cluster(vec![cheap, pricey], vec![w], Network::default());
    full.nodes[0].committed_memory = 4 * GIB;
    let (d, stats, _) = pass(&full, &Limits::unlimited(), &mut at_once());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(stats.candidates, 0);
    let why = Scheduler::new(full.clone()).explain(0, 3);
    assert!(
        why.infeasible
            .iter()
            .any(|(n, r)| n == "cheap" && r.contains("has 1 GiB free")),
        "{why:?}"
    );
    let mut room = full.clone();
    room.nodes[0].committed_memory = 0;
    let (d, _, _) = pass(&room, &Limits::unlimited(), &mut at_once());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].to, "cheap");
    assert!(d[0].reason.starts_with("cost +0.90"), "{}", d[0].reason);
}

/// Three nodes in each of two regions, each running four small workloads whose requests come
/// half from each region: nothing is better anywhere, except by noise.
fn balanced() -> Cluster {
    let mut net = Network::default();
    link(&mut net, "eu-west", "us-east", 80.0, 100.0 * MIB as f64);
    let mut nodes = Vec::new();
    let mut workloads = Vec::new();
    for (r, region) in ["eu-west", "us-east"].into_iter().enumerate() {
        for i in 0..3 {
            let name = format!("n{r}{i}");
            let mut n = node(&name, region, 8.0, 32 * GIB);
            n.cpu_busy = 2.3;
            nodes.push(n);
            for j in 0..4 {
                let mut w = on(workload(&format!("w{r}{i}{j}"), 64 * MIB), &name);
                w.cpu_used = 0.05;
                w.demand = [("eu-west".to_string(), 50.0), ("us-east".to_string(), 50.0)].into();
                workloads.push(w);
            }
        }
    }
    cluster(nodes, workloads, net)
}

/// Every measurement of `c` times a factor in `[0.9, 1.1]`.
fn noisy(c: &Cluster, rng: &mut Rng) -> Cluster {
    let mut c = c.clone();
    let mut f = || rng.range(0.9, 1.1);
    for n in &mut c.nodes {
        n.cpu_busy *= f();
    }
    for w in &mut c.workloads {
        w.cpu_used *= f();
        w.state_bytes = (w.state_bytes as f64 * f()) as u64;
        for rate in w.demand.values_mut() {
            *rate *= f();
        }
    }
    for l in c.network.links.values_mut() {
        l.rtt_ms *= f();
        l.bandwidth *= f();
    }
    c
}

fn decisions_under_noise(base: &Cluster, mut h: Hysteresis) -> usize {
    let mut rng = Rng::new(7);
    let mut moved = 0;
    let mut world = base.clone();
    for _ in 0..50 {
        world.now_ms += 61_000;
        let seen = noisy(&world, &mut rng);
        let (d, _, after) = pass(&seen, &Limits::unlimited(), &mut h);
        moved += d.len();
        // Keep the placement decided on, with the base's measurements.
        for (w, a) in world.workloads.iter_mut().zip(&after.workloads) {
            w.node.clone_from(&a.node);
            w.last_moved_ms = a.last_moved_ms;
        }
    }
    moved
}

#[test]
fn noise_alone_moves_nothing_in_a_balanced_cluster() {
    let base = balanced();
    assert_eq!(decisions_under_noise(&base, Hysteresis::default()), 0);
    // The noise is real: without a threshold or move cost it would move workloads around.
    let mut eager = base.clone();
    for w in &mut eager.workloads {
        w.policy.threshold = 0.0;
        w.policy.weights.move_cost = 0.0;
    }
    assert!(decisions_under_noise(&eager, Hysteresis::new(1)) > 0);
}

#[test]
fn a_candidate_needs_its_confirming_passes_and_is_forgotten_when_it_stops() {
    let c = demand_shift();
    let mut h = Hysteresis::default();
    let (d, stats, _) = pass(&c, &Limits::unlimited(), &mut h);
    assert!(d.is_empty());
    assert_eq!(stats.held_by_hysteresis, 1);
    assert_eq!(h.sighting("svc"), Some(("ap", 1)));
    // Its demand goes home for a pass: no longer a candidate, forgotten.
    let mut home = c.clone();
    home.workloads[0].demand = [("eu-west".to_string(), 100.0)].into();
    pass(&home, &Limits::unlimited(), &mut h);
    assert_eq!(h.sighting("svc"), None);
    // So it needs two passes again.
    assert!(pass(&c, &Limits::unlimited(), &mut h).0.is_empty());
    let (d, _, _) = pass(&c, &Limits::unlimited(), &mut h);
    assert_eq!(d.len(), 1);
    assert_eq!(h.waiting(), 0);
}

#[test]
fn a_moved_workload_waits_out_its_cooldown() {
    let c = demand_shift();
    let (d, _, mut after) = pass(&c, &Limits::unlimited(), &mut at_once());
    assert_eq!(d.len(), 1);
    // Its demand goes back at once; ten seconds later it must not bounce back.
    after.workloads[0].demand = [("eu-west".to_string(), 100.0)].into();
    after.now_ms += 10_000;
    let (d, stats, _) = pass(&after, &Limits::unlimited(), &mut at_once());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(stats.considered, 0);
    let why = Scheduler::new(after.clone()).explain(0, 1);
    assert_eq!(
        why.verdict,
        Verdict::Stay {
            reason: "in cooldown for another 50 s".into()
        }
    );
    after.now_ms += 51_000;
    let (d, _, _) = pass(&after, &Limits::unlimited(), &mut at_once());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].to, "eu");
}

#[test]
fn an_avoided_node_is_never_chosen() {
    let mut c = demand_shift();
    c.workloads[0].avoid = vec!["ap".into()];
    assert!(pass(&c, &Limits::unlimited(), &mut at_once()).0.is_empty());
    // Another node in the same region is fine.
    c.nodes.push(node("ap2", "ap-south", 8.0, 16 * GIB));
    let (d, _, _) = pass(&c, &Limits::unlimited(), &mut at_once());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].to, "ap2");
}
