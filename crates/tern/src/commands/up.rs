//! `tern up`: a controller, agents and gateways on this machine (the processes are the
//! `daemons` module's); in the foreground until Ctrl-C, or detached until `tern down`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;

use crate::client::context_path;
use crate::daemons::{self, wait_for_file, REGIONS};
use crate::signals::stop_flag;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Return once it runs; `tern down` stops it.
    #[arg(long)]
    detach: bool,
    /// A delay table (made-up geography) for the agents' links and the gateways.
    #[arg(long, value_name = "FILE")]
    delays: Option<PathBuf>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let nodes = a.nodes;
    let cluster = daemons::start(nodes, a.detach, a.delays.as_deref())?;
    println!("controller: {}", cluster.url);
    println!(
        "nodes:      {nodes} ({})",
        REGIONS
            .iter()
            .take(nodes.min(3))
            .map(|r| r.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (region, addr_file) in &cluster.gateways {
        println!(
            "gateway:    {} ({region})",
            wait_for_file(addr_file)?.trim()
        );
    }
    println!("context:    {}", context_path()?.display());
    if a.detach {
        println!("stop with:  tern down");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Ctrl-C stops the cluster");
    let stop = stop_flag()?;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.stop()?;
    Ok(ExitCode::SUCCESS)
}
