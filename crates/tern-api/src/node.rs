//! Nodes: what an agent registers with, what it measures of itself and of its links, and
//! how the controller shows a node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a node offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpus: f64,
    /// Bytes.
    pub memory: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Where other nodes reach this one (for node-to-node traffic).
    pub address: String,
    /// Where the node answers probes from other nodes (round-trip time and bandwidth).
    #[serde(default)]
    pub probe: Option<String>,
    /// Identifies one run of the agent: a second agent with the same name is refused while the
    /// first is up.
    pub session: String,
}

/// What a node can do beyond running WebAssembly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// It can hold an instance to a CPU share (a writable cgroup cpu controller).
    pub cpu_limit: bool,
}

/// Measured resource use of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Busy fraction of the node's CPUs (`cpu_busy` / CPUs).
    pub cpu_load: f64,
    pub memory_used: u64,
    pub memory_free: u64,
    /// Busy cores now (0 to the node's CPUs), measured over the last heartbeat period.
    #[serde(default)]
    pub cpu_busy: f64,
    /// Network traffic of the machine, bytes per second received and sent.
    #[serde(default)]
    pub net_rx_bytes_s: f64,
    #[serde(default)]
    pub net_tx_bytes_s: f64,
}

/// What a node measured of its link to another node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    pub peer: String,
    /// Median round-trip time of the last probes, ms.
    pub rtt_ms: f64,
    /// Bytes per second a bulk transfer to the peer achieved (0: not measured yet).
    pub bandwidth: f64,
    pub measured_unix_ms: u64,
}

/// Another node, as the agents that probe it need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub region: String,
    pub probe: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    #[serde(default)]
    pub capabilities: Capabilities,
    pub address: String,
    #[serde(default)]
    pub probe: Option<String>,
    /// What the node measured of its links to the others.
    #[serde(default)]
    pub links: Vec<LinkReport>,
    pub status: NodeStatus,
    pub usage: Usage,
    pub registered_unix_ms: u64,
    pub last_heartbeat_unix_ms: u64,
    pub session: String,
    /// Per-instance figures from the last heartbeat.
    #[serde(default)]
    pub instances: Vec<InstanceReport>,
    /// New workloads may be placed here (false while drained).
    #[serde(default = "yes")]
    pub schedulable: bool,
    /// `tern drain`: its workloads are being moved off.
    #[serde(default)]
    pub draining: bool,
    /// The controller's timeout for marking a silent node down; instances that lose their
    /// agent stop themselves well before it.
    #[serde(default)]
    pub down_after_ms: u64,
}

fn yes() -> bool {
    true
}

/// `GET /v1/network`: what the nodes' probes measured, node to node and summed up by region
/// pair (the median of the node pairs: what the scheduler uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkReply {
    pub regions: tern_scheduler::Network,
    pub nodes: Vec<NodeLinks>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLinks {
    pub node: String,
    pub region: String,
    pub links: Vec<LinkReport>,
}

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
