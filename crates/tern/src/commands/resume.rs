//! `tern resume`: continue a snapshot in this process, with the module it was taken from
//! (given, embedded, or from the local cache by digest).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tern_runtime::{Resumable, Start};
use tern_wasi::Preopen;

use crate::args::{parse_dirs, CheckpointArgs, ServiceArgs};
use crate::home::runtime;
use crate::launch::{bind_service, finish, open_snapshot, options, SnapshotRefused};

#[derive(clap::Args)]
pub struct Args {
    /// Grant a host directory: HOST_DIR[::GUEST_DIR] (must cover the snapshot's preopens).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dirs: Vec<String>,
    /// The module, when it is neither embedded nor in the local cache.
    #[arg(long)]
    module: Option<PathBuf>,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The snapshot file.
    snapshot: PathBuf,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let preopens = parse_dirs(&a.dirs)?;
    let path = a.snapshot.as_path();
    let (options, shared) = options(&a.checkpoint)?;
    let snapshot = open_snapshot(path)?;
    let rt = runtime()?;
    let want = snapshot.opened().meta.module_digest.clone();
    let wasm = match (a.module.as_deref(), snapshot.module()) {
        (Some(m), _) => {
            let wasm = std::fs::read(m).with_context(|| format!("reading {}", m.display()))?;
            let got = tern_snapshot::digest(&wasm);
            if got != want {
                return Err(SnapshotRefused(format!(
                    "{} is module {got}, but the snapshot {} was taken from {want}",
                    m.display(),
                    path.display()
                ))
                .into());
            }
            wasm
        }
        (None, Some(embedded)) => {
            if tern_snapshot::digest(embedded) != want {
                return Err(SnapshotRefused(format!(
                    "the module embedded in {} does not match its digest",
                    path.display()
                ))
                .into());
            }
            embedded.to_vec()
        }
        (None, None) => rt.cache().load_module(&want)?.ok_or_else(|| {
            SnapshotRefused(format!(
                "module {want} is not in the local cache ({}); give it with --module PATH",
                rt.cache().dir().display()
            ))
        })?,
    };
    let prepared = rt.prepare(&wasm).context("loading the snapshot's module")?;
    let preopens = if preopens.is_empty() {
        recorded_preopens(&snapshot.opened().wasi)
    } else {
        preopens
    };
    let start = Start::Resume {
        snapshot: Resumable::File(Arc::new(snapshot)),
        preopens,
        listeners: bind_service(&a.service)?,
    };
    let outcome = rt.run(&prepared, start, &options);
    finish(outcome, &a.checkpoint, &wasm, &shared)
}

/// Without `--dir`, a resume on the same machine grants the directories the program had.
fn recorded_preopens(wasi: &serde_json::Value) -> Vec<Preopen> {
    let Ok(state) = serde_json::from_value::<tern_wasi::WasiState>(wasi.clone()) else {
        return Vec::new();
    };
    state
        .preopens
        .iter()
        .map(|p| Preopen {
            host: PathBuf::from(&p.host),
            guest: p.guest.clone(),
        })
        .collect()
}
