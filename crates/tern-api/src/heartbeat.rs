//! The agent's heartbeat (measurements, instance states, output, migration news) and the
//! controller's reply (what the node should run).

use serde::{Deserialize, Serialize};

use crate::{
    InstanceReport, LinkReport, LogChunk, MigrationOrder, MigrationUpdate, Peer, Usage,
    WorkloadSpec,
};

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
