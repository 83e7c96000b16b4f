//! What the API handlers and the background passes share: the store, the token, the
//! limits, the gateways following the route stream and their traffic.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tern_api::GatewayInfo;

use crate::store::Store;

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) token: String,
    pub(crate) down_after: Duration,
    pub(crate) limits: crate::migration::Limits,
    /// Bumped whenever assignments may have changed; held heartbeats wait on it.
    pub(crate) version: tokio::sync::watch::Sender<u64>,
    /// Gateways following the route stream now, and the migrations each has reported quiet.
    pub(crate) gateways: std::sync::Mutex<HashMap<String, (GatewayInfo, HashSet<String>)>>,
    /// Bumped when a gateway reports quiet.
    pub(crate) quiet: tokio::sync::watch::Sender<u64>,
    /// The gateways' traffic reports of the last minute, per workload (not stored: it is
    /// only ever about now).
    pub(crate) traffic: std::sync::Mutex<crate::rebalance::TrafficLog>,
    pub(crate) auto: crate::rebalance::Auto,
}

/// How far back traffic summaries look.
pub(crate) const TRAFFIC_WINDOW_MS: u64 = 60_000;

impl Shared {
    pub(crate) fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}
