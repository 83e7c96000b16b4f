//! The view of the cluster the scheduler decides from. The field names are a contract with the
//! controller, which fills these from its store and from the agents' and gateways' reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::network::Network;
use crate::{DEFAULT_COOLDOWN_MS, DEFAULT_THRESHOLD};

/// How much each term of the score counts for a workload (see [`crate::Terms`] for the terms).
///
/// A weight that is negative, NaN or infinite counts as 0: a typo in a profile must not make the
/// scheduler prefer the worst node, nor turn every score into NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Weights {
    /// Expected free CPU for the workload on the node. Default 1.0.
    pub performance: f64,
    /// Low latency to where its requests come from and to the workloads it talks to. Default 1.0.
    pub proximity: f64,
    /// Free memory and CPU left on the node after placing it (spreads load). Default 0.5.
    pub resources: f64,
    /// Matching the labels the workload prefers. Default 0.5.
    pub affinity: f64,
    /// Cheap nodes (the `cost` label). Default 0.0: cost matters only to those who ask.
    pub cost: f64,
    /// Penalty for the time a live migration would take (only for moves). Default 1.0.
    pub move_cost: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            performance: 1.0,
            proximity: 1.0,
            resources: 0.5,
            affinity: 0.5,
            cost: 0.0,
            move_cost: 1.0,
        }
    }
}

impl Weights {
    /// The weights as the scheduler uses them: every unusable value replaced by 0.
    pub fn sanitized(&self) -> Weights {
        Weights {
            performance: amount(self.performance),
            proximity: amount(self.proximity),
            resources: amount(self.resources),
            affinity: amount(self.affinity),
            cost: amount(self.cost),
            move_cost: amount(self.move_cost),
        }
    }
}

/// A workload's scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub weights: Weights,
    /// A move must gain more than this in total score ([`DEFAULT_THRESHOLD`]). A negative value
    /// counts as 0 (a move to a worse node is never worth it) and NaN as the default.
    pub threshold: f64,
    /// Time after a move during which the workload does not move again ([`DEFAULT_COOLDOWN_MS`]).
    pub cooldown_ms: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            weights: Weights::default(),
            threshold: DEFAULT_THRESHOLD,
            cooldown_ms: DEFAULT_COOLDOWN_MS,
        }
    }
}

impl Policy {
    pub(crate) fn threshold(&self) -> f64 {
        if self.threshold.is_nan() {
            DEFAULT_THRESHOLD
        } else {
            self.threshold.max(0.0)
        }
    }
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    pub name: String,
    /// Includes `region`, maybe `cost` (a number), `arch`, anything.
    pub labels: BTreeMap<String, String>,
    /// Capacity: cores.
    pub cpus: f64,
    /// Capacity: bytes.
    pub memory: u64,
    /// Memory promised (limits) to the workloads placed here, including running ones.
    pub committed_memory: u64,
    /// CPU promised (limits) to the workloads placed here.
    pub committed_cpu: f64,
    /// Measured busy cores now (`0..=cpus`), all processes of the node.
    pub cpu_busy: f64,
    pub up: bool,
    /// `false`: drained, takes nothing new.
    pub schedulable: bool,
    /// Can enforce a CPU limit (workloads with `cpu > 0` need it).
    pub cpu_limit: bool,
}

impl Default for Node {
    fn default() -> Node {
        Node {
            name: String::new(),
            labels: BTreeMap::new(),
            cpus: 0.0,
            memory: 0,
            committed_memory: 0,
            committed_cpu: 0.0,
            cpu_busy: 0.0,
            up: true,
            schedulable: true,
            cpu_limit: true,
        }
    }
}

impl Node {
    /// The `region` label, or `""`.
    pub fn region(&self) -> &str {
        self.labels.get("region").map_or("", String::as_str)
    }

    /// The `cost` label as a number; 0 when absent or not a non-negative number.
    pub fn cost(&self) -> f64 {
        self.labels
            .get("cost")
            .and_then(|c| c.trim().parse::<f64>().ok())
            .map_or(0.0, amount)
    }
}

/// A workload as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Workload {
    pub name: String,
    /// Reserved memory (its limit), bytes; 0 = none.
    pub memory: u64,
    /// Reserved CPU (its limit), cores; 0 = none.
    pub cpu: f64,
    /// Measured cores it uses now.
    pub cpu_used: f64,
    /// Bytes a move must transfer (memory and volumes).
    pub state_bytes: u64,
    /// label → allowed values: the node must have one of them.
    pub require: BTreeMap<String, Vec<String>>,
    pub exclude_nodes: Vec<String>,
    /// label → value it would rather have (the affinity term).
    pub prefer: BTreeMap<String, String>,
    pub policy: Policy,
    /// Requests per second by client region (from the gateways).
    pub demand: BTreeMap<String, f64>,
    /// Names of the workloads it talks to.
    pub talks_to: Vec<String>,
    /// Where it runs now; `None` = pending.
    pub node: Option<String>,
    /// Live migration is allowed, it is running, and it is not migrating now.
    pub movable: bool,
    /// When it last moved, for the cooldown.
    pub last_moved_ms: Option<u64>,
    /// Nodes where a move of it made latency worse: never chosen again.
    pub avoid: Vec<String>,
}

/// Everything a decision depends on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub workloads: Vec<Workload>,
    pub network: Network,
    /// The caller's clock (milliseconds since any fixed epoch), for cooldowns.
    pub now_ms: u64,
}

/// How many migrations may run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// At most this many migrations with a given node as source or destination.
    pub per_node: usize,
    /// At most this many migrations in the cluster.
    pub total: usize,
    /// `(from, to)` node names of the migrations under way.
    pub active: Vec<(String, String)>,
    /// Nodes a migration has just left or reached, whose measurements do not show it yet:
    /// no move starts from or to them until they do (else a second workload would follow
    /// the first to a node that only looks idle, and move again once it is measured).
    #[serde(default)]
    pub settling: Vec<String>,
}

impl Limits {
    /// No limit and nothing under way (for simulations and tests).
    pub fn unlimited() -> Limits {
        Limits {
            per_node: usize::MAX,
            total: usize::MAX,
            active: Vec::new(),
            settling: Vec::new(),
        }
    }
}

/// A quantity as the scheduler uses it: negative, NaN or infinite counts as 0, so that one bad
/// measurement cannot poison a comparison (NaN is neither greater nor smaller than anything).
pub(crate) fn amount(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}
