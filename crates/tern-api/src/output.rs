//! Programs' output: what a node sends of an instance's stdout and stderr, and what the
//! controller stores and serves (`tern logs`).

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLog {
    pub seq: u64,
    pub instance: String,
    pub stream: Stream,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsReply {
    pub chunks: Vec<StoredLog>,
    /// Pass as `from` to get what follows.
    pub next: u64,
}
