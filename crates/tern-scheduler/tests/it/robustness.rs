//! Garbage in: a clear result out, never a panic, never a NaN.

use tern_scheduler::{Cluster, Hysteresis, Limits, Link, Scheduler, Verdict, Weights};

use crate::common::{demand_shift, node, on, workload, GIB};

fn assert_finite(s: &Scheduler, w: usize) {
    for n in 0..s.cluster().nodes.len() {
        if let Ok(score) = s.score(w, n) {
            let t = score.terms;
            for v in [
                t.performance,
                t.proximity,
                t.resources,
                t.affinity,
                t.cost,
                t.move_cost,
            ] {
                assert!((0.0..=1.0).contains(&v), "{score:?}");
            }
            assert!(score.total.is_finite(), "{score:?}");
        }
    }
}

#[test]
fn nan_and_negative_weights_count_as_zero() {
    let mut c = demand_shift();
    c.workloads[0].policy.weights = Weights {
        performance: f64::NAN,
        proximity: -1.0,
        resources: f64::INFINITY,
        affinity: f64::NEG_INFINITY,
        cost: f64::NAN,
        move_cost: -5.0,
    };
    c.workloads[0].policy.threshold = f64::NAN;
    let mut s = Scheduler::new(c.clone());
    assert_finite(&s, 0);
    // Every weight is 0, so every total is 0 and nothing is worth a move.
    assert_eq!(s.score(0, 1).map(|s| s.total), Ok(0.0));
    assert!(s
        .rebalance(&Limits::unlimited(), &mut Hysteresis::new(1))
        .is_empty());
    assert!(matches!(s.explain(0, 3).verdict, Verdict::Stay { .. }));
}

#[test]
fn nan_measurements_do_not_poison_decisions() {
    let mut c = demand_shift();
    c.nodes[0].cpu_busy = f64::NAN;
    c.nodes[1].cpus = f64::NAN;
    c.nodes[1].committed_cpu = -3.0;
    c.workloads[0].cpu_used = f64::INFINITY;
    c.workloads[0].demand.insert("nowhere".into(), f64::NAN);
    c.network.insert(
        "eu-west",
        "ap-south",
        Link {
            rtt_ms: f64::NAN,
            bandwidth: -1.0,
        },
    );
    let mut pending = workload("p", GIB);
    pending.cpu = f64::NAN;
    c.workloads.push(pending);
    let mut s = Scheduler::new(c);
    assert_finite(&s, 0);
    assert_finite(&s, 1);
    assert!(s.place(1).is_ok());
    let d = s.rebalance(&Limits::unlimited(), &mut Hysteresis::new(1));
    assert!(d.iter().all(|d| d.gain.is_finite()));
}

#[test]
fn nodes_without_cpus_take_only_workloads_without_a_cpu_limit() {
    let zero = node("zero", "eu-west", 0.0, 4 * GIB);
    let mut limited = workload("limited", GIB);
    limited.cpu = 0.5;
    let c = Cluster {
        nodes: vec![zero],
        workloads: vec![limited, workload("plain", GIB)],
        ..Cluster::default()
    };
    let mut s = Scheduler::new(c);
    assert_eq!(s.place(0), Err("no node has 1 GiB and 0.5 CPU free".into()));
    assert_eq!(s.place(1), Ok("zero".into()));
    assert_eq!(s.score(1, 0).map(|s| s.terms.performance), Ok(0.0));
}

#[test]
fn empty_clusters_and_unknown_names_give_answers() {
    let mut s = Scheduler::new(Cluster::default());
    assert_eq!(s.place(0), Err("no workload #0 (the cluster has 0)".into()));
    assert_eq!(s.workload_index("x"), None);
    assert_eq!(s.node_index("x"), None);
    assert!(s
        .rebalance(&Limits::unlimited(), &mut Hysteresis::default())
        .is_empty());
    let c = Cluster {
        workloads: vec![workload("w", GIB)],
        ..Cluster::default()
    };
    let mut s = Scheduler::new(c);
    assert_eq!(s.place(0), Err("no node has registered".into()));
    assert_eq!(s.workload_index("w"), Some(0));
    // A workload on a node the view does not have, and peers nobody knows.
    let mut lost = on(workload("lost", GIB), "ghost");
    lost.talks_to = vec!["nobody".into(), "lost".into()];
    lost.exclude_nodes = vec!["ghost2".into()];
    let c = Cluster {
        nodes: vec![node("a", "eu-west", 2.0, 4 * GIB)],
        workloads: vec![lost],
        ..Cluster::default()
    };
    let mut s = Scheduler::new(c);
    assert_eq!(
        s.explain(0, 3).verdict,
        Verdict::Stay {
            reason: "runs on ghost, which is not in the cluster view".into()
        }
    );
    assert!(s
        .rebalance(&Limits::unlimited(), &mut Hysteresis::new(1))
        .is_empty());
    assert_eq!(s.place(0), Err("lost is already placed on ghost".into()));
}

#[test]
fn zero_limits_move_nothing() {
    let c = demand_shift();
    for limits in [
        Limits {
            per_node: 0,
            total: 10,
            active: Vec::new(),
            settling: Vec::new(),
        },
        Limits {
            per_node: 10,
            total: 0,
            active: Vec::new(),
            settling: Vec::new(),
        },
    ] {
        let mut s = Scheduler::new(c.clone());
        assert!(s.rebalance(&limits, &mut Hysteresis::new(1)).is_empty());
        assert_eq!(s.last_pass().held_by_limits, 1);
    }
}
