//! `tern controller`: run the control plane until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::args::parse_duration;
use crate::signals::wait_for_signal;

#[derive(clap::Args)]
pub struct Args {
    /// Data directory (store, blobs, token).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:7420")]
    listen: SocketAddr,
    /// Mark a node down after this long without a heartbeat.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    down_after: Duration,
    /// Largest module or file accepted, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_blob_bytes: usize,
    /// Migrations under way at once that one node takes part in.
    #[arg(long, default_value_t = 2)]
    max_migrations_per_node: usize,
    /// Migrations under way at once in the whole cluster.
    #[arg(long, default_value_t = 4)]
    max_migrations: usize,
    /// Start with automatic placement paused (`tern placement resume` starts it).
    #[arg(long)]
    placement_paused: bool,
    /// How often the rebalancer scores every workload on every node.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    rebalance_every: Duration,
    /// Passes in a row a better node must stay better before a workload moves there.
    #[arg(long, default_value_t = 2)]
    confirm_passes: u32,
    /// Multiply every metric the scheduler sees by a random factor within ±this (0.1 for
    /// ±10%): for testing that noise moves nothing.
    #[arg(long, default_value_t = 0.0)]
    metric_noise: f64,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let mut config = tern_controller::Config::new(a.data, a.listen);
    config.down_after = a.down_after;
    config.max_blob_bytes = a.max_blob_bytes;
    config.max_migrations_per_node = a.max_migrations_per_node;
    config.max_migrations = a.max_migrations;
    config.placement_paused = a.placement_paused;
    config.rebalance_every = a.rebalance_every;
    config.confirm_passes = a.confirm_passes;
    if !(0.0..1.0).contains(&a.metric_noise) {
        bail!(
            "--metric-noise must be at least 0 and below 1, not {}",
            a.metric_noise
        );
    }
    config.metric_noise = a.metric_noise;
    let rt = tokio::runtime::Runtime::new()?;
    let data = config.data_dir.clone();
    rt.block_on(async move {
        let c = tern_controller::Controller::start(config)
            .await
            .context("starting the controller")?;
        // `tern up` waits for this file to learn the address.
        let url = c.url();
        std::fs::write(data.join("url"), &url).context("writing the url file")?;
        eprintln!(
            "tern controller: listening on {url} (token in {})",
            data.join("token").display()
        );
        wait_for_signal().await;
        c.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}
