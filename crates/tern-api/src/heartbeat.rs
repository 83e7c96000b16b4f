//! The agent's heartbeat (measurements, instance states, output, migration news) and the
//! controller's reply (what the node should run).

use serde::{Deserialize, Serialize};

use crate::{LinkReport, MigrationOrder, MigrationUpdate, Peer, Usage, WorkloadSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Starting,
    Running,
    /// The program ended with an exit code.
    Exited,
    /// The program trapped or could not be started.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: String,
    pub workload: String,
    pub status: InstanceStatus,
    pub exit_code: Option<i32>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub cpu_ms: u64,
    pub memory: u64,
    /// Cores it used over the last heartbeat period.
    #[serde(default)]
    pub cpu_cores: f64,
    /// Bytes a migration would move: its resident anonymous memory (0: unknown).
    #[serde(default)]
    pub state_bytes: u64,
    /// Where its listening sockets listen, in the order of the profile's `ports`.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Output of an instance since the previous heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub instance: String,
    pub workload: String,
    pub stream: Stream,
    pub data: String,
    /// The bytes of the instance's stream this chunk holds, `[offset, end)`: a chunk sent
    /// twice (a heartbeat whose answer was lost, then the tail a migration commits) is
    /// stored once. `end` 0: unknown.
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub end: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub session: String,
    pub usage: Usage,
    pub instances: Vec<InstanceReport>,
    #[serde(default)]
    pub logs: Vec<LogChunk>,
    /// When what the node runs is already what it should run, hold the reply up to this long
    /// (at most 5 s) and answer as soon as that changes: assignments reach the node at once
    /// without polling.
    #[serde(default)]
    pub wait_ms: u64,
    /// How the node's part in each migration goes.
    #[serde(default)]
    pub migrations: Vec<MigrationUpdate>,
    /// The node's links to the other nodes (its probes).
    #[serde(default)]
    pub links: Vec<LinkReport>,
}

/// What the controller wants running on the node that sent the heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub assignments: Vec<Assignment>,
    /// Migrations this node takes part in, as source or destination.
    #[serde(default)]
    pub migrations: Vec<MigrationOrder>,
    /// The other nodes that are up, for the node to probe.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub instance: String,
    pub workload: String,
    pub spec: WorkloadSpec,
}
