//! Tern's control plane. The controller keeps the registry of nodes and workloads in an
//! embedded transactional store (redb), holds the content-addressed blobs (modules and files)
//! that nodes pull by digest, decides where each workload runs, and serves all of it over an
//! HTTP JSON API that the CLI and the agents use. Agents connect out to it (a node behind NAT
//! works): their heartbeats carry measurements, instance states and output, and the replies
//! carry what the node should run.
//!
//! Every request must carry the token generated at first start (`<data>/token`); without it the
//! answer is 401 and nothing changes.

mod controller;
mod history;
mod http;
mod migration;
mod openapi;
mod rebalance;
mod reconcile;
mod shared;
mod store;
mod view;

pub use controller::{Config, Controller};
pub use http::paths as api_paths;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
