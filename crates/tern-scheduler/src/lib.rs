//! The scheduler core of Tern's controller: given a view of the cluster (nodes with their labels,
//! capacity, promised and measured resources; workloads with their constraints, demand and
//! policy; the measured network between regions), it decides where a pending workload goes
//! ([`Scheduler::place`]), which running workloads should live-migrate and where
//! ([`Scheduler::rebalance`]), and why ([`Scheduler::explain`], [`feasible`]).
//!
//! It is for deciding only. It does no I/O: no clock but the `now_ms` the caller puts in the
//! [`Cluster`], no files, no network, no threads. The controller builds a [`Scheduler`] from its
//! store each pass and carries the little state that must outlive a pass ([`Hysteresis`]) itself;
//! carrying out a decision (the migration protocol, the store, retries) is the controller's job.
//! Because nothing here waits on the world, [`sim`] runs the exact production code on a generated
//! cluster of 10,000 nodes and measures it.
//!
//! A decision is the node with the highest score among the feasible ones. Feasibility is a hard
//! filter with reasons worded for `tern ps` ([`feasible`], [`feasible_nodes`]); the score is a
//! weighted sum of terms in `[0, 1]` ([`Terms`], [`Weights`]). Nodes whose static attributes are
//! equal form equivalence classes so that a decision looks at a few nodes per class rather than
//! at every node (see `index.rs` and `search.rs` for how, and for what that costs in exactness).

#![forbid(unsafe_code)]

mod explain;
mod feasible;
mod index;
mod network;
mod prepare;
mod rebalance;
mod scheduler;
mod score;
mod search;
pub mod sim;
mod view;

pub use explain::{Explanation, Verdict};
pub use feasible::{feasible, feasible_nodes};
pub use network::{Link, Network};
pub use rebalance::{Decision, Hysteresis};
pub use scheduler::{PassStats, Scheduler};
pub use score::{Score, Terms};
pub use view::{Cluster, Limits, Node, Policy, Weights, Workload};

/// A move must raise a workload's total score by more than this to be worth its risk and cost.
pub const DEFAULT_THRESHOLD: f64 = 0.15;

/// A workload that moved does not move again for this long (one minute), so that two nodes that
/// keep looking better than each other under noisy measurements cannot bounce it between them.
pub const DEFAULT_COOLDOWN_MS: u64 = 60_000;
