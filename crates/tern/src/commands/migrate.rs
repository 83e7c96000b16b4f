//! `tern migrate`: move a running workload to another node while it runs, following the
//! move with a progress bar on a terminal, and print its report. `tern clone` is the same
//! with a new name for the copy ([`request_and_follow`]).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tern_api::{MigrateRequest, Migration, TransferOptions};
use tern_profile::format_size;

use crate::args::{parse_size, ClusterArgs, Output};
use crate::client::Api;
use crate::reports::print_migration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(super) moving: Moving,
}

/// The flags `migrate` and `clone` share.
#[derive(clap::Args)]
pub(super) struct Moving {
    workload: String,
    /// The destination node.
    #[arg(long)]
    to: String,
    /// Bytes per second on the wire (e.g. 100MiB).
    #[arg(long, value_parser = parse_size)]
    bandwidth: Option<u64>,
    /// Return once the migration is recorded instead of following it.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

impl Moving {
    /// Ask for the move (a clone when `name` names the copy), follow it and report.
    pub(super) fn execute(self, name: Option<String>) -> Result<ExitCode> {
        let api = self.cluster.api()?;
        let req = request(self.to, self.bandwidth, name);
        request_and_follow(&api, &self.workload, &req, self.no_wait, self.out.json())
    }
}

pub fn execute(a: Args) -> Result<ExitCode> {
    a.moving.execute(None)
}

/// What `migrate` and `clone` ask the controller for.
fn request(to: String, bandwidth: Option<u64>, name: Option<String>) -> MigrateRequest {
    MigrateRequest {
        to,
        options: TransferOptions {
            bandwidth,
            ..Default::default()
        },
        name,
    }
}

/// Ask for the move (a clone when `req` names the copy), then (unless `no_wait`) follow it
/// and print its report. Exits 1 when it did not commit.
fn request_and_follow(
    api: &Api,
    workload: &str,
    req: &MigrateRequest,
    no_wait: bool,
    json: bool,
) -> Result<ExitCode> {
    let verb = if req.name.is_some() {
        "clone"
    } else {
        "migrate"
    };
    let m: Migration = api.post(&format!("/v1/workloads/{workload}/{verb}"), req)?;
    if no_wait {
        if json {
            println!("{}", serde_json::to_string_pretty(&m)?);
        } else {
            println!(
                "{}: {} {} → {} ({})",
                m.id, m.workload, m.from, m.to, m.phase
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stderr().is_terminal() && !json;
    let m = loop {
        let m: Migration = api.get(&format!("/v1/migrations/{}", m.id))?;
        if tty {
            let width = 24;
            let filled = (m.round as usize).min(width);
            eprint!(
                "\r{} → {} [{}{}] {:<13} round {:>2}  {:>9}",
                m.from,
                m.to,
                "#".repeat(filled),
                ".".repeat(width - filled),
                m.phase,
                m.round,
                format_size(m.bytes)
            );
        }
        if m.outcome.is_some() {
            break m;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    if tty {
        eprintln!();
    }
    // The source's own figures arrive with its next heartbeat after the commit.
    let m = if m.committed() && m.total_ms == 0.0 {
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut m = m;
        while m.total_ms == 0.0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(30));
            m = api.get(&format!("/v1/migrations/{}", m.id))?;
        }
        m
    } else {
        m
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        print_migration(&m);
    }
    Ok(if m.committed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
