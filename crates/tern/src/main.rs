//! The `tern` command: runs WASI programs so that they can be checkpointed and resumed
//! (`tern run`, `tern resume`), inspects snapshots, and demonstrates the whole cycle
//! (`tern demo`). It is a thin shell: the work happens in `tern-runtime` and `tern-snapshot`.

mod cli;
mod demo;
mod fleet;
mod instance;
mod placement;
mod run;

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
                    || c.downcast_ref::<run::SnapshotRefused>().is_some()
            }) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
