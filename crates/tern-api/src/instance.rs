//! The instance control socket (`tern run --control`): one JSON line per command, answered
//! by event lines.

use serde::{Deserialize, Serialize};

use crate::{MigrationPhase, TransferOptions, TransferReport};

/// A command to a running instance, one JSON line on its control socket (`tern run
/// --control`). The instance answers with [`InstanceEvent`] lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceCommand {
    /// Move the running program to the `tern receive` listening at `to`. With `ask_commit`
    /// the instance sends `ready` once the destination holds everything and waits for a
    /// `commit` line; without, it commits on its own.
    Migrate {
        to: String,
        #[serde(default)]
        options: TransferOptions,
        #[serde(default)]
        ask_commit: bool,
        /// Clone: after the commit the program continues here too.
        #[serde(default)]
        keep_running: bool,
        /// The controller's migration id: should the asker vanish while the instance waits for
        /// the commit answer, the next owner gives the verdict (`verdict`).
        #[serde(default)]
        id: Option<String>,
    },
    /// The controller's decision on a migration whose asker vanished before answering `ready`.
    Verdict { migration: String, commit: bool },
    /// The answer to `ready`.
    Commit { commit: bool },
    /// The answer to `quiesce`: the gateways hold the program's requests (or could not be
    /// asked); it may pause now.
    Quiet,
    /// Whoever keeps this connection open owns the instance (its agent). An instance whose
    /// owner has been gone for its orphan timeout stops itself, before the controller would
    /// start its workload elsewhere; an agent that comes back in time adopts it again.
    Watch,
    /// For a receiving instance whose source went silent after it was ready: run (go) or not.
    Decide { go: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceEvent {
    Progress {
        phase: MigrationPhase,
        round: u32,
        bytes: u64,
    },
    /// Pre-copy is done; the program would pause now. Its asker answers `quiet` once no
    /// gateway has a request in flight for it.
    Quiesce,
    /// The destination is ready; the program is paused until `commit`.
    Ready {
        report: TransferReport,
    },
    /// The migration ended (committed: the program now runs at the destination).
    Done {
        report: TransferReport,
    },
    Error {
        message: String,
    },
    Ok,
    /// The answer to `watch`; `awaiting_verdict` names a migration whose commit answer never
    /// came (the new owner must ask the controller and send `verdict`).
    Watching {
        pid: u32,
        #[serde(default)]
        awaiting_verdict: Option<String>,
    },
}
