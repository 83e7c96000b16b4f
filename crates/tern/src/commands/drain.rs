//! `tern drain`: keep new workloads off a node and move its workloads away live, reporting
//! each move, until it is empty (or at once with `--no-wait`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tern_api::{Migration, Node, Workload, WorkloadStatus};

use crate::args::ClusterArgs;
use crate::reports::print_migration;

#[derive(clap::Args)]
pub struct Args {
    node: String,
    /// Return at once instead of waiting until the node is empty.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let api = a.cluster.api()?;
    let node = a.node.as_str();
    let _: Node = api.post(&format!("/v1/nodes/{node}/drain"), &())?;
    println!("{node}: drained (no new workloads); moving its workloads off");
    if a.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let mut reported: Vec<String> = Vec::new();
    loop {
        let ms: Vec<Migration> = api.get("/v1/migrations")?;
        for m in &ms {
            if m.from != node || m.outcome.is_none() || reported.contains(&m.id) {
                continue;
            }
            if m.why.starts_with("drain") {
                print_migration(m);
            }
            reported.push(m.id.clone());
        }
        let ws: Vec<Workload> = api.get("/v1/workloads")?;
        let left: Vec<&Workload> = ws
            .iter()
            .filter(|w| {
                w.node.as_deref() == Some(node)
                    && matches!(w.status, WorkloadStatus::Running | WorkloadStatus::Starting)
            })
            .collect();
        if left.is_empty() {
            println!(
                "{node}: empty after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
