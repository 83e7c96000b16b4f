//! The hard filter and its reasons, worded as the controller's first placement worded them.

use tern_scheduler::{feasible, feasible_nodes, Cluster, Node, Scheduler, Workload};

use crate::common::{node, on, workload, MIB};

fn eu(name: &str, memory_mib: u64, load: f64) -> Node {
    let mut n = node(name, "eu-west", 2.0, memory_mib * MIB);
    n.cpu_busy = load * n.cpus;
    n
}

fn committed(mut n: Node, mib: u64) -> Node {
    n.committed_memory = mib * MIB;
    n
}

fn region(w: &mut Workload, r: &str) {
    w.require.insert("region".into(), vec![r.into()]);
}

/// Places `w` as the only workload of a cluster of `nodes`, checking that the scheduler and
/// the plain filter agree.
fn place(w: &Workload, nodes: &[Node]) -> Result<String, String> {
    let c = Cluster {
        nodes: nodes.to_vec(),
        workloads: vec![w.clone()],
        ..Cluster::default()
    };
    let got = Scheduler::new(c).place(0);
    let filtered = feasible_nodes(w, nodes);
    match (&got, &filtered) {
        (Ok(name), Ok(ok)) => assert!(ok.iter().any(|&i| nodes[i].name == *name)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("scheduler {got:?} but filter {filtered:?}"),
    }
    got
}

#[test]
fn least_loaded_node_that_fits_wins() {
    let (a, b, c) = (eu("a", 1024, 0.9), eu("b", 1024, 0.1), {
        let mut c = node("c", "us-east", 2.0, 4096 * MIB);
        c.cpu_busy = 0.0;
        c
    });
    let mut w = workload("w", 256 * MIB);
    w.cpu = 0.5;
    region(&mut w, "eu-west");
    assert_eq!(
        place(&w, &[a.clone(), b.clone(), c.clone()]),
        Ok("b".into())
    );
    // b is full: a is the only one left.
    assert_eq!(place(&w, &[a, committed(b, 900), c]), Ok("a".into()));
}

#[test]
fn reasons_name_the_constraint_and_the_shortfall() {
    let a = eu("a", 1024, 0.0);
    let mut w = workload("w", 512 * MIB);
    w.cpu = 0.1;
    region(&mut w, "eu-west");
    assert_eq!(
        place(&w, &[committed(a.clone(), 768)]),
        Err("no node with region=eu-west has 512 MiB and 0.1 CPU free".into())
    );
    let mut mars = workload("w", 0);
    region(&mut mars, "ap-south");
    let mut weak = node("w", "eu-west", 2.0, 1024 * MIB);
    weak.cpu_limit = false;
    let mut limited = workload("w", 0);
    limited.cpu = 0.5;
    assert_eq!(
        place(&limited, std::slice::from_ref(&weak)),
        Err("no node can enforce a CPU limit (it needs a writable cgroup cpu controller)".into())
    );
    assert_eq!(place(&limited, &[weak, a.clone()]), Ok("a".into()));
    assert_eq!(
        place(&mars, std::slice::from_ref(&a)),
        Err("no node is up with region=ap-south".into())
    );
    let mut down = a.clone();
    down.up = false;
    assert_eq!(
        place(&workload("w", 0), &[down]),
        Err("no node is up".into())
    );
    assert_eq!(
        place(&workload("w", 0), &[]),
        Err("no node has registered".into())
    );
}

#[test]
fn drained_excluded_avoided_and_unenforceable_nodes_are_named() {
    let (mut a, mut b) = (eu("a", 1024, 0.0), eu("b", 1024, 0.0));
    a.schedulable = false;
    b.schedulable = false;
    let mut w = workload("w", 0);
    region(&mut w, "eu-west");
    assert_eq!(
        place(&w, &[a.clone(), b.clone()]),
        Err("every node up with region=eu-west is drained (a, b)".into())
    );
    b.schedulable = true;
    b.cpu_limit = false;
    w.cpu = 0.5;
    assert_eq!(
        place(&w, &[a, b.clone()]),
        Err("no node with region=eu-west can enforce a CPU limit \
             (it needs a writable cgroup cpu controller)"
            .into())
    );
    let mut w = workload("w", 0);
    w.exclude_nodes = vec!["b".into()];
    assert_eq!(
        place(&w, std::slice::from_ref(&b)),
        Err("no node is up with node not in [b]".into())
    );
    let mut w = workload("w", 0);
    w.avoid = vec!["b".into()];
    assert_eq!(
        place(&w, std::slice::from_ref(&b)),
        Err("no node is up with node not in [b] (a move there made latency worse)".into())
    );
    let c = eu("c", 1024, 0.0);
    assert_eq!(place(&w, &[b, c]), Ok("c".into()));
}

#[test]
fn one_node_check_gives_the_one_node_reason_and_ignores_the_own_reservation() {
    let a = committed(eu("a", 1024, 0.0), 768);
    let mut w = workload("w", 512 * MIB);
    region(&mut w, "eu-west");
    // Vetting a destination: the workload runs elsewhere, so all of `a`'s promises count.
    let w = on(w, "elsewhere");
    assert_eq!(
        feasible(&w, &a),
        Err("no node with region=eu-west has 512 MiB free".into())
    );
    // Where it runs, 512 of the 768 MiB promised are its own.
    let here = on(w.clone(), "a");
    assert_eq!(feasible(&here, &a), Ok(()));
    let other = node("x", "us-east", 2.0, 1024 * MIB);
    assert_eq!(
        feasible(&w, &other),
        Err("no node is up with region=eu-west".into())
    );
}

#[test]
fn placing_records_the_reservation_and_refuses_a_placed_workload() {
    let mut w = workload("w", 512 * MIB);
    w.cpu = 0.5;
    w.cpu_used = 0.25;
    let c = Cluster {
        nodes: vec![eu("a", 1024, 0.0)],
        workloads: vec![w.clone(), w],
        ..Cluster::default()
    };
    let mut s = Scheduler::new(c);
    assert_eq!(s.place(0), Ok("a".into()));
    let a = &s.cluster().nodes[0];
    assert_eq!(
        (a.committed_memory, a.committed_cpu, a.cpu_busy),
        (512 * MIB, 0.5, 0.25)
    );
    assert_eq!(s.cluster().workloads[0].node.as_deref(), Some("a"));
    assert_eq!(s.place(0), Err("w is already placed on a".into()));
    assert_eq!(s.place(1), Ok("a".into()));
    assert_eq!(s.place(7), Err("no workload #7 (the cluster has 2)".into()));
}
