//! How a gateway runs, and how starting one fails.

use std::net::SocketAddr;
use std::time::Duration;

use crate::demand;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The controller's base URL (`http://host:port`).
    pub controller: String,
    pub token: String,
    /// The region this gateway serves (where its clients are).
    pub region: String,
    /// How long a request may wait for its workload to run somewhere.
    pub hold_timeout: Duration,
    /// How many requests may wait at once; more get a 503 at once.
    pub max_held: usize,
    /// Largest request head (line and headers) accepted; larger gets a 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head (slow clients are cut off).
    pub header_timeout: Duration,
    /// A header that names the client's region, set by a trusted proxy in front (a CDN).
    pub region_header: Option<String>,
    /// Client address → region, for counting demand (after the header, before our region).
    pub region_cidrs: Vec<demand::Cidr>,
    /// How long a service may take to start its answer (then 504; it is not sent again).
    pub upstream_timeout: Duration,
    /// Made-up delays from this gateway's clients to the nodes (added to each request).
    pub delays: std::sync::Arc<tern_profile::DelayTable>,
}

impl Config {
    pub fn new(listen: SocketAddr, controller: &str, token: &str, region: &str) -> Config {
        Config {
            listen,
            controller: controller.trim_end_matches('/').to_string(),
            token: token.to_string(),
            region: region.to_string(),
            hold_timeout: Duration::from_secs(10),
            max_held: 1000,
            max_header_bytes: 16 << 10,
            header_timeout: Duration::from_secs(10),
            region_header: None,
            region_cidrs: Vec::new(),
            upstream_timeout: Duration::from_secs(30),
            delays: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
