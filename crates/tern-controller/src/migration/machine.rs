//! The migration state machine, as plain values and transitions (no store, no clock, no I/O).
//!
//! A migration goes prepare → pre-copy → stop-and-copy → commit → done, and ends exactly once
//! with an outcome. The commit point is the controller's decision (`decide_commit`): before
//! it, every failure ends the migration as failed and the source keeps running; after it,
//! nothing a node reports can undo it, because the destination may already run. Everything
//! the controller does with a migration goes through these functions, so these rules are
//! checked here, transition by transition, rather than only end to end.

use tern_api::{
    Migration, MigrationKind, MigrationOutcome, MigrationPhase, MigrationStep, MigrationUpdate,
    TransferReport, Workload, WorkloadStatus,
};

/// Which part a node plays in a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// Something that happened to a migration under way, from outside the commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event<'a> {
    /// A node's news (a heartbeat or an immediate report). A node that takes no part in the
    /// migration is not heard; one that is both sides (a clone onto its own node) is both.
    News {
        node: &'a str,
        update: &'a MigrationUpdate,
    },
    /// A node taking part went down.
    NodeDown { side: Side, node: &'a str },
    /// The destination did not start listening within the prepare timeout.
    PrepareTimedOut,
}

fn finish(
    m: &mut Migration,
    outcome: MigrationOutcome,
    step: Option<MigrationStep>,
    reason: Option<String>,
    now: u64,
) {
    m.outcome = Some(outcome);
    m.phase = MigrationPhase::Done;
    m.failed_step = step;
    m.reason = reason;
    m.finished_unix_ms = Some(now);
}

/// Fail a migration that has not ended; one that has is left as it is.
pub(crate) fn fail(m: &mut Migration, step: MigrationStep, reason: String, now: u64) {
    if m.outcome.is_none() {
        finish(m, MigrationOutcome::Failed, Some(step), Some(reason), now);
    }
}

/// The source's final report: its figures complete the record whatever the outcome; it ends
/// a migration still under way, but never as committed (only the controller commits).
fn apply_report(m: &mut Migration, report: &TransferReport, now: u64) {
    m.rounds = report.rounds.clone();
    m.bytes = report.bytes_wire;
    m.bytes_raw = report.bytes_raw;
    m.pause_ms = report.pause_ms;
    m.total_ms = report.total_ms;
    m.bandwidth_mib_s = report.bandwidth_mib_s;
    m.tracker = report.tracker.clone();
    m.files_bytes = report.files_wire;
    m.round = report.rounds.len() as u32;
    if m.outcome.is_none() {
        let (outcome, reason) = match report.outcome {
            MigrationOutcome::Committed => (
                MigrationOutcome::Failed,
                Some("the source reported a commit the controller never made".to_string()),
            ),
            other => (other, report.reason.clone()),
        };
        finish(m, outcome, report.failed_step, reason, now);
    }
}

/// Apply an event. Returns true if the other node must hear of the change (the
/// destination's address for the source, or the end).
pub(crate) fn apply(m: &mut Migration, event: Event<'_>, now: u64) -> bool {
    let (address, outcome) = (m.to_address.clone(), m.outcome);
    match event {
        Event::News { node, update } => {
            let (source, destination) = (node == m.from, node == m.to);
            if source {
                if let Some(report) = &update.report {
                    apply_report(m, report, now);
                }
            }
            if m.outcome.is_some() || !(source || destination) {
                // Ended (or committed): news of the steps before cannot change it.
            } else if let Some(f) = &update.failed {
                let side = if destination {
                    Side::Destination
                } else {
                    Side::Source
                };
                let reason = format!("{} {node}: {}", side.word(), f.reason);
                fail(m, f.step, reason, now);
            } else {
                if let (true, Some(addr)) = (destination, &update.listening) {
                    m.to_address = Some(addr.clone());
                    m.phase = m.phase.max(MigrationPhase::PreCopy);
                }
                if source {
                    // Phases only go forward: a late heartbeat cannot take one back.
                    if let Some(phase) = update.phase.filter(|p| *p < MigrationPhase::Done) {
                        m.phase = m.phase.max(phase);
                    }
                    m.round = update.round;
                    m.bytes = update.bytes;
                }
            }
        }
        Event::NodeDown { side, node } => {
            let step = m.phase.step();
            fail(
                m,
                step,
                format!("{} node {node} went down", side.word()),
                now,
            );
        }
        Event::PrepareTimedOut => {
            if m.to_address.is_none() {
                let reason = "the destination did not get ready in time".to_string();
                fail(m, MigrationStep::Prepare, reason, now);
            }
        }
    }
    m.to_address != address || m.outcome != outcome
}

/// The controller's answer when the source asks to commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CommitDecision {
    /// Commit now: the workload changes hands.
    Commit,
    /// It was committed already (the source asks again after a lost answer).
    AlreadyCommitted,
    /// No: the migration has ended otherwise, or is failed now for this reason.
    Refuse(String),
}

/// Decide a commit, failing the migration when it must be refused while still under way.
/// `workload` is the migrating workload as the store has it now.
pub(crate) fn decide_commit(
    m: &mut Migration,
    workload: Option<&Workload>,
    now: u64,
) -> CommitDecision {
    match m.outcome {
        Some(MigrationOutcome::Committed) => return CommitDecision::AlreadyCommitted,
        Some(other) => return CommitDecision::Refuse(format!("the migration has {other}")),
        None => {}
    }
    let why = match workload {
        None => "the workload was removed",
        Some(w)
            if w.instance.as_deref() != Some(m.from_instance.as_str())
                || w.node.as_deref() != Some(m.from.as_str())
                || w.status != WorkloadStatus::Running =>
        {
            "the workload changed meanwhile"
        }
        Some(_) => return CommitDecision::Commit,
    };
    fail(m, MigrationStep::Commit, why.to_string(), now);
    CommitDecision::Refuse(why.to_string())
}

/// What a commit does to the workloads: a move hands the workload to the destination's
/// instance; a clone adds a new workload there and leaves the original as it is. Returns the
/// workloads to store, and marks the migration committed.
pub(crate) fn commit(m: &mut Migration, w: &Workload, pause_ms: f64, now: u64) -> Workload {
    let out = match m.kind {
        MigrationKind::Move => {
            let mut w = w.clone();
            w.node = Some(m.to.clone());
            w.instance = Some(m.to_instance.clone());
            // Routed at once to where the destination listens (its agent reported it).
            w.endpoints = m.to_endpoints.clone();
            w.generation += 1;
            w.updated_unix_ms = now;
            let what = format!(
                "moved live from {} to {} ({}, pause {pause_ms:.1} ms)",
                m.from, m.to, m.why
            );
            crate::history::event(&mut w, now, what);
            w
        }
        MigrationKind::Clone => {
            let mut c = w.clone();
            c.name = m.target_workload.clone();
            c.spec.profile.name = c.name.clone();
            c.node = Some(m.to.clone());
            c.instance = Some(m.to_instance.clone());
            c.endpoints = m.to_endpoints.clone();
            c.generation = 1;
            c.restarts = 0;
            c.created_unix_ms = now;
            c.updated_unix_ms = now;
            c.history = Vec::new();
            let what = format!("cloned live from {} on {} to {}", m.workload, m.from, m.to);
            crate::history::event(&mut c, now, what);
            c
        }
    };
    m.pause_ms = pause_ms;
    finish(m, MigrationOutcome::Committed, None, None, now);
    out
}

#[cfg(test)]
mod tests;
