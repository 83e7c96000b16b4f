//! Running a program in this process, as `tern run`, `tern resume` and `tern receive` do: the
//! run's options (checkpoint timer, SIGUSR1, control socket), the service's listening sockets,
//! and what happens when it ends (exit code, snapshot file, migrated away).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tern_runtime::{Control, Outcome, RunOptions, SnapshotFile};
use tern_snapshot::{PageEncoding, Snapshot};

use crate::args::{CheckpointArgs, ServiceArgs};
use crate::control::Shared;
use crate::files::write_atomically;
use crate::home::runtime;

/// A snapshot that cannot be resumed with what it was given (wrong module, missing module).
#[derive(Debug)]
pub struct SnapshotRefused(pub String);

impl std::fmt::Display for SnapshotRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotRefused {}

pub fn options(checkpoint: &CheckpointArgs) -> Result<(RunOptions, Arc<Shared>)> {
    let control = Arc::new(Control::new());
    let shared = Arc::new(Shared::default());
    if let Some(path) = &checkpoint.control {
        crate::control::serve(path, control.clone(), shared.clone())?;
        if let Some(t) = checkpoint.orphan_timeout {
            shared.exit_when_orphaned(t);
        }
    }
    if checkpoint.checkpoint_to.is_some() {
        // SIGUSR1 asks for a checkpoint now; without a file to write it has no meaning.
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])
            .context("installing the SIGUSR1 handler")?;
        let c = control.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                c.request();
            }
        });
    }
    Ok((
        RunOptions {
            checkpoint_after: checkpoint.checkpoint_after,
            control,
            stats: Default::default(),
            max_memory: checkpoint.max_memory,
        },
        shared,
    ))
}

pub fn finish(
    outcome: tern_runtime::Result<Outcome>,
    checkpoint: &CheckpointArgs,
    module: &[u8],
    shared: &Shared,
) -> Result<ExitCode> {
    if let Some(f) = &checkpoint.exit_file {
        let text = match &outcome {
            Ok(Outcome::Exited(code)) => (*code).clamp(0, 255).to_string(),
            Ok(Outcome::Captured(_)) => "0".to_string(),
            Ok(Outcome::Migrated) => "migrated".to_string(),
            Err(tern_runtime::Error::Trap(_)) => "trap".to_string(),
            Err(e) => format!("error: {e}"),
        };
        let _ = write_atomically(f, &text);
    }
    match outcome {
        Ok(Outcome::Exited(code)) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Ok(Outcome::Migrated) => {
            // The program continues elsewhere; this process ends once it has said so.
            shared.wait_reported();
            Ok(ExitCode::SUCCESS)
        }
        Ok(Outcome::Captured(mut snapshot)) => {
            let path = checkpoint
                .checkpoint_to
                .as_ref()
                .context("program was captured but no --checkpoint-to was given")?;
            if checkpoint.embed_module {
                snapshot.module = Some(module.to_vec());
            }
            let pages = if checkpoint.compress {
                PageEncoding::Lz4
            } else {
                PageEncoding::Raw
            };
            write_snapshot(path, &snapshot, pages)?;
            eprintln!("checkpoint: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(tern_runtime::Error::Trap(msg)) => {
            eprintln!("tern: program trapped: {msg}");
            Ok(ExitCode::from(tern_runtime::TRAP_EXIT_CODE as u8))
        }
        Err(e) => Err(e.into()),
    }
}

/// Write to a new file and rename it into place: a snapshot being resumed has its pages mapped
/// from its file, which must therefore never change underneath it (and a crash mid-write must
/// not destroy the previous snapshot).
fn write_snapshot(path: &Path, snapshot: &Snapshot, pages: PageEncoding) -> Result<()> {
    let tmp = path.with_extension("tmp-snapshot");
    let file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    tern_snapshot::write(snapshot, pages, &mut w)
        .and_then(|()| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A module read and prepared, with the run's options.
pub struct Loaded {
    pub wasm: Vec<u8>,
    pub options: RunOptions,
    pub shared: Arc<Shared>,
    pub rt: tern_runtime::Runtime,
    pub prepared: tern_runtime::Prepared,
}

/// Read and prepare a module, with the run's options (and control socket) set up first: a
/// SIGUSR1 or a control command that arrives while the module compiles must find them.
pub fn load(module: &Path, checkpoint: &CheckpointArgs) -> Result<Loaded> {
    let wasm = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let (options, shared) = options(checkpoint)?;
    let rt = runtime()?;
    let prepared = rt
        .prepare(&wasm)
        .with_context(|| format!("loading {}", module.display()))?;
    Ok(Loaded {
        wasm,
        options,
        shared,
        rt,
        prepared,
    })
}

/// Bind the service's listening sockets and say where they listen.
pub fn bind_service(service: &ServiceArgs) -> Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    let mut lines = String::new();
    for addr in &service.tcplisten {
        let l =
            std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
        lines.push_str(&format!("{}\n", l.local_addr()?));
        listeners.push(l);
    }
    if let Some(f) = &service.endpoints_file {
        write_atomically(f, &lines)?;
    }
    Ok(listeners)
}

pub fn open_snapshot(path: &Path) -> Result<SnapshotFile> {
    SnapshotFile::open(path).with_context(|| format!("snapshot {}", path.display()))
}
