//! `tern agent`: run a node agent until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::args::parse_size;
use crate::files::read_delays;
use crate::signals::stop_flag;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    controller: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    name: String,
    /// k=v,... (provider, region, zone, arch, cost, or any label of yours).
    #[arg(long, default_value = "")]
    labels: String,
    /// Data directory (blobs, instances, volumes).
    #[arg(long)]
    data: PathBuf,
    /// Address other nodes use to reach this one.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// A delay table (TOML: `[[link]] between = [A, B]`, `delay`): made-up latency added
    /// to this node's links.
    #[arg(long, value_name = "FILE")]
    delays: Option<PathBuf>,
    /// Where the node's busy CPU is measured: `host` (the machine) or `instances` (the
    /// sum of its instances, for several nodes on one machine).
    #[arg(long, default_value = "host", value_parser = ["host", "instances"])]
    cpu_measure: String,
    /// CPUs the node offers (default: the machine's).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory the node offers, e.g. 4GiB (default: the machine's).
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let labels = parse_labels(&a.labels)?;
    let cpu_measure = if a.cpu_measure == "instances" {
        tern_agent::CpuMeasure::Instances
    } else {
        tern_agent::CpuMeasure::Host
    };
    let stop = stop_flag()?;
    let delays = match &a.delays {
        Some(f) => read_delays(f)?,
        None => Default::default(),
    };
    if a.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        bail!("--cpus must be a positive number");
    }
    let capacity = match (a.cpus, a.memory) {
        (None, None) => None,
        (cpus, memory) => {
            let machine = tern_agent::machine_capacity();
            Some(tern_api::Capacity {
                cpus: cpus.unwrap_or(machine.cpus),
                memory: memory.unwrap_or(machine.memory),
            })
        }
    };
    let config = tern_agent::Config {
        controller: a.controller,
        token: a.token,
        name: a.name,
        labels,
        data_dir: a.data,
        address: a.address,
        tern_exe: std::env::current_exe().context("finding the tern executable")?,
        capacity,
        heartbeat: Duration::from_secs(1),
        delays: Arc::new(delays),
        cpu_measure,
    };
    tern_agent::run(config, stop)?;
    Ok(ExitCode::SUCCESS)
}

/// `--labels region=eu-west,arch=arm64`; blanks around keys and values do not count.
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("label {part:?}: expected key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}
