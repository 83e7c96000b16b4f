//! Every transition of the migration state machine, and every failure before and after the
//! commit point.

use super::*;
use tern_api::{MigrationFailure, MigrationRound, TransferOptions, WorkloadSpec};

const NOW: u64 = 1_000_000;

fn migration(kind: MigrationKind) -> Migration {
    Migration {
        id: "m1".into(),
        kind,
        workload: "w".into(),
        target_workload: if kind == MigrationKind::Clone {
            "c"
        } else {
            "w"
        }
        .into(),
        from: "a".into(),
        to: "b".into(),
        from_instance: "w-1".into(),
        to_instance: "w-2".into(),
        phase: MigrationPhase::Prepare,
        outcome: None,
        failed_step: None,
        reason: None,
        why: "requested".into(),
        to_address: None,
        options: TransferOptions::default(),
        round: 0,
        bytes: 0,
        bytes_raw: 0,
        rounds: Vec::new(),
        pause_ms: 0.0,
        total_ms: 0.0,
        bandwidth_mib_s: 0.0,
        tracker: String::new(),
        files_bytes: 0,
        quiesce: false,
        to_endpoints: vec![tern_api::Endpoint {
            port: 8080,
            address: "10.0.0.2:4000".into(),
        }],
        requested_unix_ms: NOW - 10,
        finished_unix_ms: None,
        auto: false,
        baseline_p50_ms: None,
        regression: None,
    }
}

fn workload() -> Workload {
    let profile =
        tern_profile::parse("tern.toml", "name = \"w\"\nmodule = \"w.wasm\"\n").expect("a profile");
    Workload {
        name: "w".into(),
        status: WorkloadStatus::Running,
        node: Some("a".into()),
        reason: None,
        instance: Some("w-1".into()),
        generation: 1,
        restarts: 2,
        exit_code: None,
        spec: WorkloadSpec {
            profile,
            module: "sha256:00".into(),
            files: Vec::new(),
        },
        endpoints: Vec::new(),
        spec_digest: String::new(),
        created_unix_ms: 0,
        updated_unix_ms: 0,
        start_after_unix_ms: 0,
        history: Vec::new(),
        avoid: Vec::new(),
    }
}

fn news(m: &mut Migration, node: &str, update: MigrationUpdate) -> bool {
    apply(
        m,
        Event::News {
            node,
            update: &update,
        },
        NOW,
    )
}

fn listening() -> MigrationUpdate {
    MigrationUpdate {
        listening: Some("10.0.0.2:5000".into()),
        ..MigrationUpdate::default()
    }
}

fn progress(phase: MigrationPhase, round: u32) -> MigrationUpdate {
    MigrationUpdate {
        phase: Some(phase),
        round,
        bytes: 100 * u64::from(round),
        ..MigrationUpdate::default()
    }
}

fn failed(step: MigrationStep) -> MigrationUpdate {
    MigrationUpdate {
        failed: Some(MigrationFailure {
            step,
            reason: "connection reset".into(),
        }),
        ..MigrationUpdate::default()
    }
}

fn report(outcome: MigrationOutcome) -> MigrationUpdate {
    MigrationUpdate {
        report: Some(TransferReport {
            outcome,
            failed_step: (outcome != MigrationOutcome::Committed).then_some(MigrationStep::Resume),
            reason: (outcome != MigrationOutcome::Committed).then(|| "it broke".to_string()),
            rounds: vec![MigrationRound::default(); 3],
            pause_ms: 4.5,
            bytes_wire: 12345,
            tracker: "userfaultfd-wp".into(),
            ..TransferReport::default()
        }),
        ..MigrationUpdate::default()
    }
}

/// A migration at the commit question, the destination listening.
fn at_commit() -> Migration {
    let mut m = migration(MigrationKind::Move);
    news(&mut m, "b", listening());
    news(&mut m, "a", progress(MigrationPhase::Commit, 3));
    m
}

#[test]
fn the_destination_listening_starts_pre_copy_and_tells_the_source() {
    let mut m = migration(MigrationKind::Move);
    assert!(
        news(&mut m, "b", listening()),
        "the source must hear the address"
    );
    assert_eq!(m.to_address.as_deref(), Some("10.0.0.2:5000"));
    assert_eq!(m.phase, MigrationPhase::PreCopy);
    assert!(
        !news(&mut m, "b", listening()),
        "nothing new the second time"
    );
    // Only the destination says where it listens.
    let mut m = migration(MigrationKind::Move);
    assert!(!news(&mut m, "a", listening()));
    assert_eq!(m.to_address, None);
}

#[test]
fn the_source_reports_progress_and_phases_only_go_forward() {
    let mut m = migration(MigrationKind::Move);
    news(&mut m, "b", listening());
    assert!(!news(&mut m, "a", progress(MigrationPhase::PreCopy, 2)));
    assert_eq!(
        (m.phase, m.round, m.bytes),
        (MigrationPhase::PreCopy, 2, 200)
    );
    news(&mut m, "a", progress(MigrationPhase::StopAndCopy, 3));
    assert_eq!(m.phase, MigrationPhase::StopAndCopy);
    // A heartbeat held back and delivered late cannot take the phase back.
    news(&mut m, "a", progress(MigrationPhase::PreCopy, 1));
    assert_eq!(m.phase, MigrationPhase::StopAndCopy);
    // Nor can a node claim the migration is done: only an outcome does that.
    news(&mut m, "a", progress(MigrationPhase::Done, 4));
    assert_eq!((m.phase, m.outcome), (MigrationPhase::StopAndCopy, None));
    // The destination's figures are not the source's.
    news(&mut m, "b", progress(MigrationPhase::Commit, 9));
    assert_eq!((m.phase, m.round), (MigrationPhase::StopAndCopy, 4));
}

#[test]
fn a_failure_before_the_commit_ends_it_at_its_step_naming_the_side() {
    for (node, side) in [("a", "source"), ("b", "destination")] {
        for step in [
            MigrationStep::Connect,
            MigrationStep::Prepare,
            MigrationStep::Volumes,
            MigrationStep::PreCopy,
            MigrationStep::StopAndCopy,
            MigrationStep::Resume,
            MigrationStep::Commit,
        ] {
            let mut m = at_commit();
            assert!(news(&mut m, node, failed(step)), "the other side must hear");
            assert_eq!(m.outcome, Some(MigrationOutcome::Failed));
            assert_eq!(m.phase, MigrationPhase::Done);
            assert_eq!(m.failed_step, Some(step));
            let reason = m.reason.clone().unwrap_or_default();
            assert_eq!(reason, format!("{side} {node}: connection reset"));
            assert_eq!(m.finished_unix_ms, Some(NOW));
            // Ended once: a second failure or a late commit answer changes nothing.
            let before = m.clone();
            assert!(!news(&mut m, node, failed(MigrationStep::Connect)));
            assert_eq!(m, before);
            assert_eq!(
                decide_commit(&mut m, Some(&workload()), NOW),
                CommitDecision::Refuse("the migration has failed".into())
            );
        }
    }
}

#[test]
fn a_node_that_takes_no_part_is_not_heard() {
    let mut m = at_commit();
    let before = m.clone();
    assert!(!news(&mut m, "intruder", failed(MigrationStep::PreCopy)));
    assert!(!news(&mut m, "intruder", report(MigrationOutcome::Failed)));
    assert!(!news(&mut m, "intruder", listening()));
    assert_eq!(m, before);
}

#[test]
fn the_sources_report_ends_it_but_never_as_committed() {
    let mut m = at_commit();
    assert!(news(&mut m, "a", report(MigrationOutcome::RolledBack)));
    assert_eq!(m.outcome, Some(MigrationOutcome::RolledBack));
    assert_eq!(m.failed_step, Some(MigrationStep::Resume));
    assert_eq!((m.bytes, m.round, m.pause_ms), (12345, 3, 4.5));
    // A source claiming a commit the controller did not make is wrong: failed.
    let mut m = at_commit();
    news(&mut m, "a", report(MigrationOutcome::Committed));
    assert_eq!(m.outcome, Some(MigrationOutcome::Failed));
    assert!(m.reason.is_some_and(|r| r.contains("never made")));
    // Only the source reports.
    let mut m = at_commit();
    news(&mut m, "b", report(MigrationOutcome::Failed));
    assert_eq!(m.outcome, None);
}

#[test]
fn the_commit_hands_the_workload_to_the_destination_once() {
    let mut m = at_commit();
    let w = workload();
    assert_eq!(decide_commit(&mut m, Some(&w), NOW), CommitDecision::Commit);
    let moved = commit(&mut m, &w, 4.5, NOW);
    assert_eq!(m.outcome, Some(MigrationOutcome::Committed));
    assert_eq!((m.phase, m.pause_ms), (MigrationPhase::Done, 4.5));
    assert_eq!(moved.name, "w");
    assert_eq!(moved.node.as_deref(), Some("b"));
    assert_eq!(moved.instance.as_deref(), Some("w-2"));
    assert_eq!(moved.generation, 2);
    assert_eq!(
        moved.endpoints, m.to_endpoints,
        "routed to the destination at once"
    );
    assert!(moved.history[0].what.contains("moved live from a to b"));
    // Asked again (the answer was lost): yes, and nothing more happens.
    assert_eq!(
        decide_commit(&mut m, Some(&moved), NOW),
        CommitDecision::AlreadyCommitted
    );
}

#[test]
fn after_the_commit_nothing_a_node_says_undoes_it() {
    let mut m = at_commit();
    let w = workload();
    decide_commit(&mut m, Some(&w), NOW);
    commit(&mut m, &w, 4.5, NOW);
    for (node, update) in [
        ("a", failed(MigrationStep::Commit)),
        ("b", failed(MigrationStep::Resume)),
        ("a", progress(MigrationPhase::PreCopy, 1)),
    ] {
        news(&mut m, node, update);
        assert_eq!(m.outcome, Some(MigrationOutcome::Committed));
        assert_eq!((m.phase, m.failed_step), (MigrationPhase::Done, None));
    }
    for side in [Side::Source, Side::Destination] {
        apply(&mut m, Event::NodeDown { side, node: "a" }, NOW);
        assert_eq!(m.outcome, Some(MigrationOutcome::Committed));
    }
    // The source's final report completes the figures but keeps the outcome.
    news(&mut m, "a", report(MigrationOutcome::Failed));
    assert_eq!(m.outcome, Some(MigrationOutcome::Committed));
    assert_eq!(m.bytes, 12345);
}

#[test]
fn a_commit_is_refused_when_the_workload_changed_or_went_away() {
    let mut changed = workload();
    changed.instance = Some("w-9".into());
    let mut stopped = workload();
    stopped.status = WorkloadStatus::Stopped;
    let mut elsewhere = workload();
    elsewhere.node = Some("c".into());
    for (w, why) in [
        (None, "the workload was removed"),
        (Some(&changed), "the workload changed meanwhile"),
        (Some(&stopped), "the workload changed meanwhile"),
        (Some(&elsewhere), "the workload changed meanwhile"),
    ] {
        let mut m = at_commit();
        assert_eq!(
            decide_commit(&mut m, w, NOW),
            CommitDecision::Refuse(why.into())
        );
        assert_eq!(m.outcome, Some(MigrationOutcome::Failed));
        assert_eq!(m.failed_step, Some(MigrationStep::Commit));
    }
}

#[test]
fn a_clone_adds_a_workload_and_leaves_the_original() {
    let mut m = migration(MigrationKind::Clone);
    news(&mut m, "b", listening());
    let w = workload();
    assert_eq!(decide_commit(&mut m, Some(&w), NOW), CommitDecision::Commit);
    let c = commit(&mut m, &w, 1.0, NOW);
    assert_eq!((c.name.as_str(), c.spec.profile.name.as_str()), ("c", "c"));
    assert_eq!(c.node.as_deref(), Some("b"));
    assert_eq!((c.generation, c.restarts, c.created_unix_ms), (1, 0, NOW));
    assert_eq!(c.history.len(), 1);
    assert!(c.history[0].what.contains("cloned live from w on a to b"));
}

#[test]
fn a_clone_onto_its_own_node_hears_both_sides_from_it() {
    let mut m = migration(MigrationKind::Clone);
    m.to = "a".into();
    news(&mut m, "a", listening());
    assert_eq!(m.to_address.as_deref(), Some("10.0.0.2:5000"));
    news(&mut m, "a", progress(MigrationPhase::StopAndCopy, 2));
    assert_eq!(m.phase, MigrationPhase::StopAndCopy);
    news(&mut m, "a", failed(MigrationStep::Resume));
    assert!(m.reason.is_some_and(|r| r.starts_with("destination a:")));
}

#[test]
fn a_node_going_down_fails_it_at_the_phase_it_was_in() {
    for (phase, step) in [
        (MigrationPhase::Prepare, MigrationStep::Prepare),
        (MigrationPhase::PreCopy, MigrationStep::PreCopy),
        (MigrationPhase::StopAndCopy, MigrationStep::StopAndCopy),
        (MigrationPhase::Commit, MigrationStep::Commit),
    ] {
        for (side, node, word) in [
            (Side::Source, "a", "source"),
            (Side::Destination, "b", "destination"),
        ] {
            let mut m = migration(MigrationKind::Move);
            m.phase = phase;
            assert!(apply(&mut m, Event::NodeDown { side, node }, NOW));
            assert_eq!(m.outcome, Some(MigrationOutcome::Failed));
            assert_eq!(m.failed_step, Some(step));
            assert_eq!(m.reason, Some(format!("{word} node {node} went down")));
        }
    }
}

#[test]
fn a_destination_that_never_listens_times_out_in_prepare() {
    let mut m = migration(MigrationKind::Move);
    assert!(apply(&mut m, Event::PrepareTimedOut, NOW));
    assert_eq!(m.failed_step, Some(MigrationStep::Prepare));
    // One that listens does not time out in prepare.
    let mut m = migration(MigrationKind::Move);
    news(&mut m, "b", listening());
    assert!(!apply(&mut m, Event::PrepareTimedOut, NOW));
    assert_eq!(m.outcome, None);
}
