//! Explanations: the terms, the alternatives, the infeasible nodes and the verdicts.

use tern_scheduler::{Cluster, Scheduler, Verdict};

use crate::common::{demand_shift, node, workload, GIB};

#[test]
fn a_move_is_explained_by_the_terms_that_changed() {
    let s = Scheduler::new(demand_shift());
    let e = s.explain(0, 5);
    assert_eq!(e.workload, "svc");
    let here = e.current.as_ref().expect("it runs on eu");
    assert_eq!(here.node, "eu");
    assert_eq!(here.latency_ms, Some(120.0));
    assert_eq!(here.move_seconds, 0.0);
    assert!((here.terms.proximity - 1.0 / (1.0 + 120.0 / 50.0)).abs() < 1e-12);
    assert_eq!(e.alternatives.len(), 1);
    let ap = &e.alternatives[0];
    assert_eq!(ap.node, "ap");
    assert_eq!(ap.latency_ms, Some(0.5));
    // 256 MiB at 200 MiB/s plus four round trips of 120 ms.
    assert!(
        (ap.move_seconds - (1.28 + 0.48)).abs() < 1e-9,
        "{}",
        ap.move_seconds
    );
    assert!((ap.terms.move_cost - 0.176).abs() < 1e-9);
    let Verdict::Move { to, gain, reason } = &e.verdict else {
        panic!("{:?}", e.verdict);
    };
    assert_eq!(to, "ap");
    assert!((gain - (ap.total - here.total)).abs() < 1e-12);
    assert!(
        reason.starts_with("proximity +0.70 (latency 120 ms -> 0.5 ms from demand in ap-south); "),
        "{reason}"
    );
    assert!(
        reason.contains("move_cost -0.18 (1.8 s to move)"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("total {gain:+.2} > threshold 0.15")),
        "{reason}"
    );
    // The scores are those of `score`.
    assert_eq!(s.score(0, 1).as_ref(), Ok(ap));
    assert_eq!(s.score(0, 0).as_ref(), Ok(here));
}

#[test]
fn staying_is_explained_too() {
    let mut c = demand_shift();
    c.workloads[0].demand = [("eu-west".to_string(), 100.0)].into();
    let e = Scheduler::new(c.clone()).explain(0, 5);
    let Verdict::Stay { reason } = &e.verdict else {
        panic!("{:?}", e.verdict);
    };
    assert!(
        reason.starts_with("no node scores more than the threshold 0.15 above eu (best: ap, -"),
        "{reason}"
    );
    c.workloads[0].movable = false;
    let e = Scheduler::new(c.clone()).explain(0, 5);
    assert_eq!(
        e.verdict,
        Verdict::Stay {
            reason:
                "not movable (live migration is off, it is migrating now, or it is not running)"
                    .into()
        }
    );
    c.nodes.truncate(1);
    c.workloads[0].movable = true;
    let e = Scheduler::new(c).explain(0, 5);
    assert!(e.alternatives.is_empty());
    assert_eq!(
        e.verdict,
        Verdict::Stay {
            reason: "no other node can take it".into()
        }
    );
}

#[test]
fn pending_workloads_say_where_they_would_go_or_why_nowhere() {
    let mut far = workload("far", GIB);
    far.require.insert("region".into(), vec!["mars".into()]);
    let mut big = workload("big", 64 * GIB);
    big.require.insert("region".into(), vec!["eu-west".into()]);
    let c = Cluster {
        nodes: vec![
            node("a", "eu-west", 4.0, 8 * GIB),
            node("b", "us-east", 4.0, 8 * GIB),
        ],
        workloads: vec![workload("fine", GIB), far, big],
        ..Cluster::default()
    };
    let s = Scheduler::new(c);
    let e = s.explain(0, 5);
    assert!(e.current.is_none());
    assert_eq!(e.alternatives.len(), 2);
    let Verdict::Pending { reason } = &e.verdict else {
        panic!("{:?}", e.verdict);
    };
    assert!(reason.starts_with("would be placed on "), "{reason}");
    assert_eq!(
        s.explain(1, 5).verdict,
        Verdict::Pending {
            reason: "no node is up with region=mars".into()
        }
    );
    let e = s.explain(2, 5);
    assert_eq!(
        e.verdict,
        Verdict::Pending {
            reason: "no node with region=eu-west has 64 GiB free".into()
        }
    );
    // Both nodes are listed as infeasible, each with its own reason.
    assert_eq!(e.infeasible.len(), 2);
    assert!(e
        .infeasible
        .contains(&("b".into(), "no node is up with region=eu-west".into())));
    // Out of range: said, not panicked.
    assert_eq!(
        s.explain(9, 5).verdict,
        Verdict::Pending {
            reason: "no workload #9 (the cluster has 3)".into()
        }
    );
    assert_eq!(s.score(0, 9), Err("no node #9 (the cluster has 2)".into()));
}

#[test]
fn affinity_is_the_fraction_of_preferred_labels_the_node_has() {
    let mut arm = node("arm", "eu-west", 4.0, 8 * GIB);
    arm.labels.insert("arch".into(), "arm64".into());
    let bare = node("bare", "eu-west", 4.0, 8 * GIB);
    let mut w = workload("w", GIB);
    w.prefer = [
        ("region".to_string(), "eu-west".to_string()),
        ("arch".to_string(), "riscv64".to_string()),
    ]
    .into();
    let mut arm64 = workload("w2", GIB);
    arm64.prefer = [("arch".to_string(), "arm64".to_string())].into();
    let c = Cluster {
        nodes: vec![arm, bare],
        workloads: vec![w, arm64, workload("w3", GIB)],
        ..Cluster::default()
    };
    let s = Scheduler::new(c);
    let affinity = |w, n| s.score(w, n).map(|s| s.terms.affinity);
    // Neither has riscv64, whether it has another arch or none.
    assert_eq!((affinity(0, 0), affinity(0, 1)), (Ok(0.5), Ok(0.5)));
    assert_eq!((affinity(1, 0), affinity(1, 1)), (Ok(1.0), Ok(0.0)));
    assert_eq!((affinity(2, 0), affinity(2, 1)), (Ok(1.0), Ok(1.0)));
}
