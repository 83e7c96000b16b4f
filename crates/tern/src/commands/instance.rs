//! `tern instance migrate`: move the program of a running instance, through its control
//! socket, to a `tern receive` while it runs (a live migration without a cluster).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tern_api::{InstanceCommand, InstanceEvent, MigrationOutcome, TransferOptions};
use tern_profile::format_size;

use crate::args::{parse_size, Output};
use crate::reports::print_report;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: InstanceCmd,
}

#[derive(Subcommand)]
enum InstanceCmd {
    /// Move the program of the instance behind SOCKET to the `tern receive` at ADDR while it
    /// runs, and print the migration's report.
    Migrate {
        /// The instance's control socket (`--control` of `tern run`).
        socket: PathBuf,
        #[arg(long)]
        to: String,
        /// Bytes per second on the wire (e.g. 100MiB).
        #[arg(long, value_parser = parse_size)]
        bandwidth: Option<u64>,
        #[arg(long)]
        max_rounds: Option<u32>,
        /// Find written pages by hashing every page each round instead of asking the kernel.
        #[arg(long)]
        hashing: bool,
        #[command(flatten)]
        out: Output,
    },
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let InstanceCmd::Migrate {
        socket,
        to,
        bandwidth,
        max_rounds,
        hashing,
        out,
    } = a.command;
    let options = TransferOptions {
        bandwidth,
        max_rounds,
        force_hashing: hashing,
        link_delay_ms: 0,
    };
    let json = out.json();
    let conn = UnixStream::connect(&socket)
        .with_context(|| format!("control socket {}", socket.display()))?;
    let mut w = conn.try_clone()?;
    let mut line = serde_json::to_vec(&InstanceCommand::Migrate {
        to,
        options,
        ask_commit: false,
        keep_running: false,
        id: None,
    })?;
    line.push(b'\n');
    w.write_all(&line)?;
    let tty = std::io::stderr().is_terminal();
    for line in BufReader::new(conn).lines() {
        let line = line.context("reading from the instance")?;
        match serde_json::from_str::<InstanceEvent>(&line)? {
            InstanceEvent::Progress {
                phase,
                round,
                bytes,
            } if tty => {
                eprint!("\r{phase:<14} round {round:>3}  {:>10}", format_size(bytes));
            }
            InstanceEvent::Done { report } => {
                if tty {
                    eprintln!();
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_report(&report);
                }
                return Ok(if report.outcome == MigrationOutcome::Committed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            InstanceEvent::Error { message } => bail!("{message}"),
            _ => {}
        }
    }
    bail!("the instance closed its control socket without a report")
}
