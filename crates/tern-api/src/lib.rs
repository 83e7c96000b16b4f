//! Every shape that crosses a Tern process boundary, and nothing else: the controller's HTTP
//! API (nodes, workloads, migrations, placement, routes), the agents' heartbeats and migration
//! news, the gateways' route stream and traffic reports, the instance control socket, and the
//! report a live migration produces. The controller, the agents, the gateways, the CLI and the
//! runtime all speak through these types, so a field means the same thing on both sides of
//! every connection and no crate needs another's internals to talk to it. Enums name phases,
//! outcomes and steps; nothing here does I/O.

mod heartbeat;
mod instance;
mod migration;
mod node;
mod output;
mod route;
pub mod traffic;
mod workload;

pub use heartbeat::*;
pub use instance::*;
pub use migration::*;
pub use node::*;
pub use output::*;
pub use route::*;
pub use workload::*;

/// Milliseconds since the Unix epoch: the clock of every `*_unix_ms` field.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
