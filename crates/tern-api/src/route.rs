//! What the gateways route: the controller's route table and the gateways it knows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The controller repeats the route table this often when nothing changes: a stream that stays
/// silent much longer is dead.
pub const ROUTES_REPEAT: Duration = Duration::from_secs(15);

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

/// A gateway connected to the controller's route stream (`GET /v1/gateways`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub id: String,
    pub region: String,
    pub address: String,
    pub connected_unix_ms: u64,
}
