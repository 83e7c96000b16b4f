//! What a drain does to a node's workloads (pure): each running workload on a draining node
//! that is not migrating already either moves live (its profile allows it) or restarts
//! elsewhere (it does not). Where a mover goes is the scheduler's choice, made by the caller
//! with one scheduler for all of them so that each choice sees the ones before.

use tern_api::{Migration, Node, Workload, WorkloadStatus};

/// One workload's way off a draining node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Move it live to wherever it would be placed afresh.
    Move { workload: String, node: String },
    /// Its profile forbids live migration: back to pending, to start elsewhere.
    Restart { workload: String, node: String },
}

/// The steps one drain pass takes, in the order of the workloads.
pub(crate) fn steps(nodes: &[Node], workloads: &[Workload], migrations: &[Migration]) -> Vec<Step> {
    let draining: Vec<&str> = nodes
        .iter()
        .filter(|n| n.draining)
        .map(|n| n.name.as_str())
        .collect();
    let mut out = Vec::new();
    for w in workloads {
        let Some(node) = w.node.clone() else { continue };
        if !draining.contains(&node.as_str()) || w.status != WorkloadStatus::Running {
            continue;
        }
        let migrating = migrations
            .iter()
            .any(|m| m.outcome.is_none() && m.workload == w.name);
        if migrating {
            continue;
        }
        let workload = w.name.clone();
        out.push(if w.spec.profile.migration.live {
            Step::Move { workload, node }
        } else {
            Step::Restart { workload, node }
        });
    }
    out
}

/// A workload restarted off a drained node: pending, its endpoints gone, the reason said.
pub(crate) fn restart_off(w: &mut Workload, node: &str, now: u64) {
    w.status = WorkloadStatus::Pending;
    w.node = None;
    w.endpoints.clear();
    w.reason = Some(format!("node {node} is drained; starting elsewhere"));
    w.updated_unix_ms = now;
    crate::history::event(w, now, format!("restarted off drained node {node}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, draining: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "name": name, "labels": {}, "capacity": {"cpus": 2.0, "memory": 1 << 30},
            "address": "127.0.0.1:1", "status": "up",
            "usage": {"cpu_load": 0.0, "memory_used": 0, "memory_free": 0},
            "registered_unix_ms": 0, "last_heartbeat_unix_ms": 0, "session": "s",
            "schedulable": !draining, "draining": draining,
        }))
        .expect("a node")
    }

    fn workload(name: &str, node: &str, live: bool, status: &str) -> Workload {
        let text = format!("name = \"{name}\"\nmodule = \"m.wasm\"\n[migration]\nlive = {live}\n");
        let profile = tern_profile::parse("tern.toml", &text).expect("a profile");
        serde_json::from_value(serde_json::json!({
            "name": name, "status": status, "node": node, "reason": null,
            "instance": format!("{name}-1"), "generation": 1, "restarts": 0, "exit_code": null,
            "spec": {"profile": profile, "module": "sha256:00"}, "spec_digest": "",
            "created_unix_ms": 0, "updated_unix_ms": 0, "start_after_unix_ms": 0,
            "history": [],
        }))
        .expect("a workload")
    }

    #[test]
    fn a_drain_moves_live_workloads_restarts_the_others_and_skips_the_rest() {
        let nodes = [node("a", true), node("b", false)];
        let workloads = [
            workload("live", "a", true, "running"),
            workload("pinned", "a", false, "running"),
            workload("elsewhere", "b", true, "running"),
            workload("starting", "a", true, "starting"),
            workload("moving", "a", true, "running"),
        ];
        let mut m: Migration = serde_json::from_value(serde_json::json!({
            "id": "m1", "kind": "move", "workload": "moving", "target_workload": "moving",
            "from": "a", "to": "b", "from_instance": "moving-1", "to_instance": "moving-2",
            "phase": "pre-copy", "outcome": null, "failed_step": null, "reason": null,
            "why": "", "to_address": null, "options": {}, "round": 0, "bytes": 0,
            "bytes_raw": 0, "rounds": [], "pause_ms": 0.0, "total_ms": 0.0,
            "bandwidth_mib_s": 0.0, "tracker": "", "requested_unix_ms": 0,
            "finished_unix_ms": null
        }))
        .expect("a migration");
        let steps_now = steps(&nodes, &workloads, std::slice::from_ref(&m));
        let (a, live, pinned) = ("a".to_string(), "live".to_string(), "pinned".to_string());
        assert_eq!(
            steps_now,
            [
                Step::Move {
                    workload: live.clone(),
                    node: a.clone()
                },
                Step::Restart {
                    workload: pinned,
                    node: a.clone()
                },
            ]
        );
        // Once its migration has ended, the workload still on the drained node moves too.
        m.outcome = Some(tern_api::MigrationOutcome::Failed);
        let after = steps(&nodes, &workloads, &[m]);
        assert!(after.contains(&Step::Move {
            workload: "moving".into(),
            node: a
        }));
        assert!(steps(&[node("a", false)], &workloads, &[]).is_empty());
    }

    #[test]
    fn a_restarted_workload_is_pending_with_its_reason() {
        let mut w = workload("pinned", "a", false, "running");
        w.endpoints = vec![tern_api::Endpoint {
            port: 80,
            address: "x:1".into(),
        }];
        restart_off(&mut w, "a", 7);
        assert_eq!(
            (w.status, w.node.as_deref()),
            (WorkloadStatus::Pending, None)
        );
        assert!(w.endpoints.is_empty());
        assert_eq!(
            w.reason.as_deref(),
            Some("node a is drained; starting elsewhere")
        );
        assert_eq!(w.history.last().map(|e| e.unix_ms), Some(7));
    }
}
