//! The JSON shapes the controller and the CLI rely on.

use serde_json::json;
use tern_scheduler::{Cluster, Hysteresis, Scheduler, Verdict, Weights, Workload};

use crate::common::demand_shift;

#[test]
fn the_network_is_a_list_and_a_cluster_round_trips() {
    let c = demand_shift();
    let v = serde_json::to_value(&c).expect("serializes");
    assert_eq!(
        v["network"]["links"],
        json!([{"a": "eu-west", "b": "ap-south", "rtt_ms": 120.0, "bandwidth": 209715200.0}])
    );
    let back: Cluster = serde_json::from_value(v).expect("deserializes");
    assert_eq!(back, c);
}

#[test]
fn missing_fields_take_the_documented_defaults() {
    let w: Workload =
        serde_json::from_value(json!({"name": "w", "policy": {"weights": {"cost": 1.0}}}))
            .expect("deserializes");
    assert_eq!(w.policy.threshold, 0.15);
    assert_eq!(w.policy.cooldown_ms, 60_000);
    assert_eq!(
        w.policy.weights,
        Weights {
            cost: 1.0,
            ..Weights::default()
        }
    );
    assert_eq!(
        (
            Weights::default().performance,
            Weights::default().resources,
            Weights::default().move_cost
        ),
        (1.0, 0.5, 1.0)
    );
    assert_eq!(Hysteresis::default().confirm_passes, 2);
}

#[test]
fn verdicts_are_tagged_by_kind() {
    let e = Scheduler::new(demand_shift()).explain(0, 2);
    let v = serde_json::to_value(&e).expect("serializes");
    assert_eq!(v["verdict"]["kind"], "move");
    assert_eq!(v["verdict"]["to"], "ap");
    assert!(v["current"]["terms"]["proximity"].is_number());
    assert!(v["alternatives"][0]["move_seconds"].is_number());
    let stay = Verdict::Stay { reason: "r".into() };
    assert_eq!(
        serde_json::to_value(&stay).expect("serializes"),
        json!({"kind": "stay", "reason": "r"})
    );
}
