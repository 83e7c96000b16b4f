//! Workloads as the API shows them: the deployed spec, status, history, and why the
//! scheduler keeps one where it is.

use serde::{Deserialize, Serialize};

/// A file the workload receives, by content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBlob {
    pub guest: String,
    pub digest: String,
}

/// A profile with its module and files resolved to blobs: what `tern deploy` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub profile: tern_profile::Profile,
    /// `sha256:<hex>` of the module.
    pub module: String,
    #[serde(default)]
    pub files: Vec<FileBlob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadStatus {
    /// Waiting for a node (see `reason`) or for its restart backoff.
    Pending,
    /// Assigned to a node that has not reported it running yet.
    Starting,
    Running,
    /// Ended and not restarted (per its restart policy).
    Exited,
    Failed,
    /// Stopped by `tern stop`.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub unix_ms: u64,
    pub what: String,
}

/// A port of the profile and the address its instance's socket listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub port: u16,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub status: WorkloadStatus,
    pub node: Option<String>,
    pub reason: Option<String>,
    /// The current instance's id (a new one for every start).
    pub instance: Option<String>,
    pub generation: u64,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub spec: WorkloadSpec,
    /// Where the current instance listens for each of the profile's `ports` (once it does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// sha256 of the spec's JSON: deploying the same spec twice changes nothing.
    pub spec_digest: String,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    /// Not before this time (restart backoff).
    pub start_after_unix_ms: u64,
    pub history: Vec<Event>,
    /// Nodes the scheduler keeps it off for a while: moving there made its latency worse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<Avoid>,
}

/// A node a workload is kept off, until when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Avoid {
    pub node: String,
    pub until_unix_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployReply {
    pub workload: Workload,
    /// False when the same spec was already deployed.
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// The state of automatic placement (`GET /v1/placement`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementState {
    /// Automatic moves are paused (`tern placement pause`).
    pub paused: bool,
    pub rebalance_every_ms: u64,
    pub confirm_passes: u32,
    /// The last rebalance pass: when, how long it took, and what it found.
    pub last_pass_unix_ms: Option<u64>,
    pub last_pass_ms: f64,
    pub candidates: usize,
    pub started: usize,
}

/// `GET /v1/workloads/{name}/explain`: why the workload runs where it does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainReply {
    pub workload: String,
    pub node: Option<String>,
    pub paused: bool,
    pub explanation: tern_scheduler::Explanation,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<Avoid>,
}
