//! The `tern` command: runs WASI programs so that they can be checkpointed and resumed
//! (`tern run`, `tern resume`), inspects snapshots, runs and drives the fleet (controller,
//! agents, gateways, live migration, placement), and demonstrates the whole cycle
//! (`tern demo`). It is a thin shell: the work happens in the library crates.
//!
//! Modules, top down: `cli` (the subcommands) uses `commands` (one module per subcommand),
//! which use the rest; `demo`, `daemons`, `launch` and `control` do the larger jobs, and
//! `client`, `args`, `table`, `reports`, `files`, `home` and `signals` are small leaves.
//! Nothing below `commands` uses `commands` or `cli`.

mod args;
mod cli;
mod client;
mod commands;
mod control;
mod daemons;
mod demo;
mod files;
mod home;
mod launch;
mod reports;
mod signals;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tern: {e:#}");
            // Snapshots refused for what they contain get a distinct code scripts can test.
            if e.chain().any(|c| {
                c.downcast_ref::<tern_snapshot::Error>().is_some()
                    || matches!(
                        c.downcast_ref::<tern_runtime::Error>(),
                        Some(tern_runtime::Error::Mismatch(_) | tern_runtime::Error::Snapshot(_))
                    )
                    || c.downcast_ref::<launch::SnapshotRefused>().is_some()
            }) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
