//! The JSON shapes of the controller's HTTP API, shared by the controller, the agents and the
//! CLI.

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
    pub phase: Option<String>,
    pub round: u32,
    pub bytes: u64,
    /// The step that failed and why (either side).
    pub failed: Option<(String, String)>,
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
    /// prepare, pre-copy, stop-and-copy, commit, done.
    pub phase: String,
    /// None while it runs; then committed, failed or rolled_back.
    pub outcome: Option<String>,
    pub failed_step: Option<String>,
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

/// The source's question before it pauses: are the gateways holding its requests?
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QuiesceReply {
    /// Every connected gateway has no request in flight for the workload and holds new ones.
    pub quiet: bool,
    /// How many gateways were asked.
    pub gateways: usize,
}

/// A gateway connected to the controller's route stream (`GET /v1/gateways`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub id: String,
    pub region: String,
    pub address: String,
    pub connected_unix_ms: u64,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub instance: String,
    pub workload: String,
    pub spec: WorkloadSpec,
}

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

/// Where the gateways send one workload's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub workload: String,
    /// Requests whose Host (without port) is this, case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Requests whose path starts with this (the longest matching prefix wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The running instance's address for its first port; None while nothing runs it.
    pub endpoint: Option<String>,
    /// The node it runs on and that node's region (for the link's delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_region: Option<String>,
    /// A migration of the workload is stopping it or committing: hold its requests.
    pub moving: bool,
    /// That migration, whose quiet the gateways report (`POST /v1/migrations/{id}/quiet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

/// Every route (`GET /v1/routes`; `GET /v1/routes/watch` streams one table per line, at once
/// and after every change, and again every 15 s when nothing changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub routes: Vec<Route>,
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
pub struct LogsReply {
    pub chunks: Vec<StoredLog>,
    /// Pass as `from` to get what follows.
    pub next: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLog {
    pub seq: u64,
    pub instance: String,
    pub stream: Stream,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
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
    /// "committed", "rolled_back" or "failed".
    pub outcome: String,
    pub failed_step: Option<String>,
    pub reason: Option<String>,
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
        phase: String,
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
