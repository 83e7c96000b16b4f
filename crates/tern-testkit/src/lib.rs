//! Test support for the Tern workspace, in two parts.
//!
//! The harness that the tern crate's tests and benchmarks run Tern through, so that each
//! starts, drives and checks Tern the same way: [`Tern`] runs the `tern` binary as a process
//! (its path comes from the caller: `env!("CARGO_BIN_EXE_tern")`); [`Cluster`] builds a real
//! cluster of `tern` processes (controller, agents with their labels and flags, gateways),
//! deploys [`Profile`]s, reads `ps`, `nodes` and `migrations`, waits with a timeout and a
//! failure message that shows the cluster's recent logs, and stops it all when dropped;
//! [`assert_ends_alike`] (and [`Cluster::assert_ends_like`] for a workload) is the check that a
//! program moved, checkpointed or resumed while it ran ends exactly like an unmoved run;
//! [`http`] speaks HTTP/1.1 by hand to gateways and services.
//!
//! And checks that are about the code itself rather than about one crate's behaviour, so that
//! every crate is held to them the same way. Today there is one, [`modules`]: the graph of
//! dependencies between the top-level modules of a crate, and the cycles in it, each cycle
//! given with the file and line of every reference that makes one of its edges, so a human can
//! see what to move. The workspace's own test (`tests/it`) runs it over every crate under
//! `crates/`; `cargo run -p tern-testkit --example module-cycles` prints the same report
//! without failing.

#![forbid(unsafe_code)]

mod cluster;
mod ending;
pub mod http;
pub mod modules;
mod profile;
mod tern;

pub use cluster::{Builder, Cluster, Gateway, Migrated, WAIT};
pub use ending::{assert_ends_alike, Ending};
pub use profile::Profile;
pub use tern::{
    files_in, fixture, signal_pid, text, wait_for_content, wait_until, Files, Tern, Up,
};
