//! Live migrations: a user's request, the record the controller keeps, each node's order and
//! news, the source's commit question and its final report.

use serde::{Deserialize, Serialize};

use crate::{Endpoint, LogChunk, WorkloadSpec};

/// Where a migration is. Phases only move forward; `Done` comes with an outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPhase {
    /// The destination prepares (blobs, module) and starts listening.
    #[default]
    Prepare,
    /// The source sends its memory while the program runs, round after round.
    PreCopy,
    /// The program is paused; the last pages and its state go across.
    StopAndCopy,
    /// The destination holds everything; the controller decides.
    Commit,
    Done,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationOutcome {
    /// The workload runs at the destination (or, for a clone, in both places).
    Committed,
    /// The commit was refused: the source continues.
    RolledBack,
    /// It failed before the commit: the source continues. A report not finished yet says this.
    #[default]
    Failed,
}

/// The step of a migration at which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStep {
    /// Reaching the destination.
    Connect,
    /// The destination getting ready, or the handshake.
    Prepare,
    /// The program's directories (files and volumes).
    Volumes,
    PreCopy,
    StopAndCopy,
    /// The destination installing the state.
    Resume,
    Commit,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Prepare => "prepare",
            MigrationPhase::PreCopy => "pre-copy",
            MigrationPhase::StopAndCopy => "stop-and-copy",
            MigrationPhase::Commit => "commit",
            MigrationPhase::Done => "done",
        }
    }

    /// The step a failure during this phase is charged to.
    pub fn step(self) -> MigrationStep {
        match self {
            MigrationPhase::Prepare => MigrationStep::Prepare,
            MigrationPhase::PreCopy => MigrationStep::PreCopy,
            MigrationPhase::StopAndCopy => MigrationStep::StopAndCopy,
            MigrationPhase::Commit | MigrationPhase::Done => MigrationStep::Commit,
        }
    }
}

impl MigrationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationOutcome::Committed => "committed",
            MigrationOutcome::RolledBack => "rolled_back",
            MigrationOutcome::Failed => "failed",
        }
    }
}

impl MigrationStep {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStep::Connect => "connect",
            MigrationStep::Prepare => "prepare",
            MigrationStep::Volumes => "volumes",
            MigrationStep::PreCopy => "pre-copy",
            MigrationStep::StopAndCopy => "stop-and-copy",
            MigrationStep::Resume => "resume",
            MigrationStep::Commit => "commit",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}
display_as_str!(MigrationPhase, MigrationOutcome, MigrationStep);

/// A side's failure in a migration: the step and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationFailure {
    pub step: MigrationStep,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Source,
    Destination,
}

/// A node's part in a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationOrder {
    pub id: String,
    pub workload: String,
    pub role: Role,
    /// The source's instance, or the one the destination prepares.
    pub instance: String,
    pub spec: WorkloadSpec,
    /// Where the destination listens (for the source, once known).
    pub to_address: Option<String>,
    pub options: TransferOptions,
    /// A clone: the source continues after the commit.
    #[serde(default)]
    pub keep_running: bool,
    /// The other side's node and its region (for the link's delay).
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub peer_region: String,
}

/// A node's news about its part in a migration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationUpdate {
    pub id: String,
    /// The destination listens here.
    pub listening: Option<String>,
    pub phase: Option<MigrationPhase>,
    pub round: u32,
    pub bytes: u64,
    /// The step that failed and why (either side).
    pub failed: Option<MigrationFailure>,
    /// The source's final report.
    pub report: Option<TransferReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationKind {
    /// The workload moves.
    Move,
    /// A copy starts from the same state as a new workload; the original keeps running.
    Clone,
}

/// One migration, as `tern migrations` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    pub id: String,
    pub kind: MigrationKind,
    pub workload: String,
    /// For a clone: the new workload's name.
    pub target_workload: String,
    pub from: String,
    pub to: String,
    pub from_instance: String,
    pub to_instance: String,
    pub phase: MigrationPhase,
    /// None while it runs.
    pub outcome: Option<MigrationOutcome>,
    pub failed_step: Option<MigrationStep>,
    pub reason: Option<String>,
    /// Why it was started (a user's request, a drain, the scheduler).
    pub why: String,
    pub to_address: Option<String>,
    pub options: TransferOptions,
    pub round: u32,
    /// Bytes on the wire so far (all of them once done).
    pub bytes: u64,
    pub bytes_raw: u64,
    pub rounds: Vec<MigrationRound>,
    pub pause_ms: f64,
    pub total_ms: f64,
    pub bandwidth_mib_s: f64,
    pub tracker: String,
    /// Bytes on the wire for files of the workload's directories (volumes).
    #[serde(default)]
    pub files_bytes: u64,
    /// The source asked the gateways to stop sending it requests (just before it pauses).
    #[serde(default)]
    pub quiesce: bool,
    /// Where the destination's instance listens (its profile's ports), for the commit to
    /// route to at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_endpoints: Vec<Endpoint>,
    pub requested_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// Started by the scheduler (not by a user or a drain).
    #[serde(default)]
    pub auto: bool,
    /// The workload's median request latency (gateways) just before the move, ms: the
    /// scheduler compares it with the one after, and moves back if the move made it worse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_p50_ms: Option<f64>,
    /// What that comparison found, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<String>,
}

impl Migration {
    /// Its outcome once it has one, else its phase: one word for tables.
    pub fn state(&self) -> &'static str {
        self.outcome
            .map_or(self.phase.as_str(), MigrationOutcome::as_str)
    }

    pub fn committed(&self) -> bool {
        self.outcome == Some(MigrationOutcome::Committed)
    }
}

/// The source's question before it pauses: are the gateways holding its requests?
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QuiesceReply {
    /// Every connected gateway has no request in flight for the workload and holds new ones.
    pub quiet: bool,
    /// How many gateways were asked.
    pub gateways: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrateRequest {
    pub to: String,
    #[serde(default)]
    pub options: TransferOptions,
    /// For a clone: the new workload's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A node's news about a migration, sent at once rather than with the next heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationNews {
    pub node: String,
    pub update: MigrationUpdate,
}

/// The source asks to commit once the destination holds everything; the controller decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRequest {
    pub report: TransferReport,
    /// The source instance's output not yet acknowledged, to its end (the program is paused):
    /// stored before anything the destination prints.
    pub tail: Vec<LogChunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitReply {
    pub commit: bool,
    pub reason: Option<String>,
}

/// One round of a live migration: bytes of memory sent, raw and on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationRound {
    pub raw_bytes: u64,
    pub wire_bytes: u64,
    pub ms: f64,
}

/// What a live migration did, as the moving instance reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    pub outcome: MigrationOutcome,
    /// The step where a failure happened, and why.
    pub failed_step: Option<MigrationStep>,
    pub reason: Option<String>,
    /// The pre-copy rounds, then the stop-and-copy round.
    pub rounds: Vec<MigrationRound>,
    pub pause_ms: f64,
    pub total_ms: f64,
    pub bytes_raw: u64,
    pub bytes_wire: u64,
    /// How written pages were found: "userfaultfd-wp" or "hashing".
    pub tracker: String,
    /// Of the bytes, those of files in the program's directories (volumes), raw and wire.
    #[serde(default)]
    pub files_raw: u64,
    #[serde(default)]
    pub files_wire: u64,
    pub bandwidth_mib_s: f64,
}

/// Settings of one live migration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferOptions {
    /// Bytes per second (None: unlimited).
    #[serde(default)]
    pub bandwidth: Option<u64>,
    #[serde(default)]
    pub max_rounds: Option<u32>,
    /// Find written pages by hashing even where the kernel can track them.
    #[serde(default)]
    pub force_hashing: bool,
    /// Added to each round trip of the migration protocol: the link's delay from the
    /// source's delay table (a made-up geography; 0 on real links).
    #[serde(default)]
    pub link_delay_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users' scripts match these words (`tern migrations -o json`): the JSON and the text
    /// output must say the same.
    #[test]
    fn enums_serialize_as_their_words() {
        let word = |v: serde_json::Value| v.as_str().map(str::to_string);
        for p in [
            MigrationPhase::Prepare,
            MigrationPhase::PreCopy,
            MigrationPhase::StopAndCopy,
            MigrationPhase::Commit,
            MigrationPhase::Done,
        ] {
            assert_eq!(word(serde_json::json!(p)).as_deref(), Some(p.as_str()));
        }
        for o in [
            MigrationOutcome::Committed,
            MigrationOutcome::RolledBack,
            MigrationOutcome::Failed,
        ] {
            assert_eq!(word(serde_json::json!(o)).as_deref(), Some(o.as_str()));
        }
        for s in [
            MigrationStep::Connect,
            MigrationStep::Prepare,
            MigrationStep::Volumes,
            MigrationStep::PreCopy,
            MigrationStep::StopAndCopy,
            MigrationStep::Resume,
            MigrationStep::Commit,
        ] {
            assert_eq!(word(serde_json::json!(s)).as_deref(), Some(s.as_str()));
        }
        assert_eq!(MigrationOutcome::RolledBack.as_str(), "rolled_back");
        assert_eq!(MigrationPhase::StopAndCopy.to_string(), "stop-and-copy");
        assert_eq!(format!("{:<6}|", MigrationStep::Resume), "resume|");
    }
}
