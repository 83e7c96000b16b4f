//! `tern logs`: a workload's output, stdout to stdout and stderr to stderr, optionally
//! following it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tern_api::{LogsReply, Stream};

use crate::args::ClusterArgs;

#[derive(clap::Args)]
pub struct Args {
    workload: String,
    /// Keep following new output.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let api = a.cluster.api()?;
    let workload = a.workload;
    let mut from = 0u64;
    loop {
        let r: LogsReply = api.get(&format!("/v1/workloads/{workload}/logs?from={from}"))?;
        for c in &r.chunks {
            match c.stream {
                Stream::Stdout => {
                    print!("{}", c.data);
                    let _ = std::io::stdout().flush();
                }
                Stream::Stderr => eprint!("{}", c.data),
            }
        }
        from = r.next;
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if r.chunks.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
