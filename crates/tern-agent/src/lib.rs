//! `tern agent`: one per node. It registers the node with the controller (connecting out, so a
//! node behind NAT works), sends a heartbeat every second with measured resource use, the state
//! of its instances and their new output, and makes what runs on the node match the
//! controller's reply: it pulls the blobs an assignment references (verifying each digest),
//! starts instances, and stops those no longer assigned.
//!
//! Each instance is a `tern run` child process with its own directory (its files under a root
//! preopened as `/`, its volumes, its stdout and stderr), so that a crashing program cannot
//! take the agent down and its CPU time and memory can be read from `/proc`. An instance
//! outlives a crashed agent only briefly (then it stops itself); an agent restarted in time
//! adopts it again. The agent also plays its node's part in live migrations (`migration.rs`).

mod cgroup;
mod client;
mod config;
mod error;
mod instance;
mod migration;
mod node;
mod probe;
mod run;

pub use config::Config;
pub use error::{Error, Result};
pub use node::CpuMeasure;
pub use run::run;

use tern_api::Capacity;

/// What this machine offers: all its CPUs and memory.
pub fn machine_capacity() -> Capacity {
    node::capacity()
}
