//! `tern gateway`: run an HTTP reverse proxy in front of the cluster's services until SIGINT
//! or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::args::parse_duration;
use crate::files::{read_delays, write_atomically};
use crate::signals::wait_for_signal;

#[derive(clap::Args)]
pub struct Args {
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long)]
    controller: String,
    #[arg(long)]
    token: String,
    /// The region whose clients this gateway serves.
    #[arg(long)]
    region: String,
    /// How long a request may wait for its workload to run somewhere (then 503).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    hold_timeout: Duration,
    /// How many requests may wait at once (more get a 503 at once).
    #[arg(long, default_value_t = 1000)]
    max_held: usize,
    /// Write the address actually listened on to this file.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Count a request's demand for the region this header names (set by a trusted
    /// proxy in front, such as a CDN).
    #[arg(long, value_name = "HEADER")]
    region_header: Option<String>,
    /// Count a request's demand by client address: a file of `ADDRESS/LEN REGION` lines.
    #[arg(long, value_name = "FILE")]
    region_cidrs: Option<PathBuf>,
    /// Close a connection whose client takes longer than this to send a request head.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// Largest request head accepted, in bytes (larger: 431).
    #[arg(long, default_value_t = 16 << 10)]
    max_header_bytes: usize,
    /// How long a service may take to start its answer (then 504, not sent again).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    upstream_timeout: Duration,
    /// A delay table: made-up latency from this gateway's clients to the nodes.
    #[arg(long, value_name = "FILE")]
    delays: Option<PathBuf>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let mut config = tern_gateway::Config::new(a.listen, &a.controller, &a.token, &a.region);
    config.hold_timeout = a.hold_timeout;
    config.max_held = a.max_held;
    config.header_timeout = a.header_timeout;
    config.max_header_bytes = a.max_header_bytes;
    config.upstream_timeout = a.upstream_timeout;
    config.region_header = a.region_header;
    if let Some(f) = a.delays {
        config.delays = std::sync::Arc::new(read_delays(&f)?);
    }
    if let Some(f) = a.region_cidrs {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        config.region_cidrs = tern_gateway::demand::parse_cidrs(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    }
    let addr_file = a.addr_file;
    // One event loop, as an nginx worker: measured 26.5k requests/s against 20.4k for Tokio's
    // work-stealing pool on two vCPUs (whose thread hand-offs cost more than they bring when
    // the load generator and the service share the cores). One loop per core (SO_REUSEPORT)
    // is the way to more cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let region = config.region.clone();
        let g = tern_gateway::start(config)
            .await
            .context("starting the gateway")?;
        if let Some(f) = &addr_file {
            write_atomically(f, &g.addr.to_string())?;
        }
        eprintln!("tern gateway: listening on {} (region {region})", g.addr);
        wait_for_signal().await;
        drop(g);
        Ok(ExitCode::SUCCESS)
    })
}
