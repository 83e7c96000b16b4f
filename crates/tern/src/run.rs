//! `tern run`, `tern resume` and `tern snapshot inspect`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tern_runtime::{Control, Outcome, Resumable, RunOptions, SnapshotFile, Start};
use tern_profile::format_size;
use tern_snapshot::{PageEncoding, Snapshot};
use tern_wasi::{Preopen, WasiConfig};

use crate::cli::{runtime, CheckpointArgs, ServiceArgs};
use crate::instance::Shared;

/// A snapshot that cannot be resumed with what it was given (wrong module, missing module).
#[derive(Debug)]
pub struct SnapshotRefused(pub String);

impl std::fmt::Display for SnapshotRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotRefused {}

fn options(checkpoint: &CheckpointArgs) -> Result<(RunOptions, Arc<Shared>)> {
    let control = Arc::new(Control::new());
    let shared = Arc::new(Shared::default());
    if let Some(path) = &checkpoint.control {
        crate::instance::serve(path, control.clone(), shared.clone())?;
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

fn finish(
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
        let _ = crate::instance::write_atomically(f, &text);
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
struct Loaded {
    wasm: Vec<u8>,
    options: RunOptions,
    shared: Arc<Shared>,
    rt: tern_runtime::Runtime,
    prepared: tern_runtime::Prepared,
}

/// Read and prepare a module, with the run's options (and control socket) set up first: a
/// SIGUSR1 or a control command that arrives while the module compiles must find them.
fn load(module: &Path, checkpoint: &CheckpointArgs) -> Result<Loaded> {
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
fn bind_service(service: &ServiceArgs) -> Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    let mut lines = String::new();
    for addr in &service.tcplisten {
        let l =
            std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
        lines.push_str(&format!("{}\n", l.local_addr()?));
        listeners.push(l);
    }
    if let Some(f) = &service.endpoints_file {
        crate::instance::write_atomically(f, &lines)?;
    }
    Ok(listeners)
}

/// Tell the program which descriptors are its listening sockets: they follow the preopened
/// directories (wasi-libc stops looking for directories at the first descriptor that is not
/// one, so sockets first would hide every directory). A value the user set stays.
fn listen_env(env: &mut Vec<(String, String)>, dirs: usize, sockets: usize) {
    if sockets == 0 {
        return;
    }
    let fds: Vec<String> = (0..sockets).map(|i| (3 + dirs + i).to_string()).collect();
    for (k, v) in [
        ("LISTEN_FDS", sockets.to_string()),
        ("TERN_LISTEN_FDS", fds.join(",")),
    ] {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v));
        }
    }
}

pub fn run(
    module: &Path,
    mut env: Vec<(String, String)>,
    preopens: Vec<Preopen>,
    args: Vec<String>,
    service: &ServiceArgs,
    checkpoint: &CheckpointArgs,
) -> Result<ExitCode> {
    let Loaded {
        wasm,
        options,
        shared,
        rt,
        prepared,
    } = load(module, checkpoint)?;
    let listeners = bind_service(service)?;
    listen_env(&mut env, preopens.len(), listeners.len());
    let mut argv = vec![module.display().to_string()];
    argv.extend(args);
    let config = WasiConfig {
        args: argv,
        env,
        preopens,
        listeners,
    };
    let outcome = rt.run(&prepared, Start::Fresh(config), &options);
    finish(outcome, checkpoint, &wasm, &shared)
}

pub fn receive(
    module: &Path,
    listen: std::net::SocketAddr,
    port_file: Option<&Path>,
    accept_timeout: std::time::Duration,
    preopens: Vec<Preopen>,
    service: &ServiceArgs,
    checkpoint: &CheckpointArgs,
) -> Result<ExitCode> {
    let Loaded {
        wasm,
        options,
        shared,
        rt,
        prepared,
    } = load(module, checkpoint)?;
    // The program's own sockets first: until it runs here, connections queue on them.
    let listeners = bind_service(service)?;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(f) = port_file {
        crate::instance::write_atomically(f, &addr.to_string())?;
    }
    let conn = accept_within(&listener, accept_timeout)?;
    drop(listener);
    conn.set_read_timeout(Some(crate::instance::migration_timeout()))?;
    conn.set_write_timeout(Some(crate::instance::migration_timeout()))?;
    // Should the source fall silent after this side is ready, only a control socket's owner
    // can know whether it committed; without one, not running is the safe answer.
    let decide: Box<dyn FnMut() -> Option<bool> + Send> = if checkpoint.control.is_some() {
        let s = shared.clone();
        Box::new(move || s.decision())
    } else {
        Box::new(|| Some(false))
    };
    let start = Start::Incoming {
        conn,
        preopens,
        listeners,
        decide,
    };
    let outcome = rt.run(&prepared, start, &options);
    finish(outcome, checkpoint, &wasm, &shared)
}

pub fn open_snapshot(path: &Path) -> Result<SnapshotFile> {
    SnapshotFile::open(path).with_context(|| format!("snapshot {}", path.display()))
}

pub fn resume(
    path: &Path,
    module: Option<&Path>,
    preopens: Vec<Preopen>,
    service: &ServiceArgs,
    checkpoint: &CheckpointArgs,
) -> Result<ExitCode> {
    let (options, shared) = options(checkpoint)?;
    let snapshot = open_snapshot(path)?;
    let rt = runtime()?;
    let want = snapshot.opened().meta.module_digest.clone();
    let wasm = match (module, snapshot.module()) {
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
        listeners: bind_service(service)?,
    };
    let outcome = rt.run(&prepared, start, &options);
    finish(outcome, checkpoint, &wasm, &shared)
}

fn accept_within(
    listener: &std::net::TcpListener,
    timeout: std::time::Duration,
) -> Result<std::net::TcpStream> {
    listener.set_nonblocking(true)?;
    let until = std::time::Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                return Ok(conn);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= until {
                    anyhow::bail!("no source connected within {timeout:?}");
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(e).context("waiting for the source"),
        }
    }
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

pub fn inspect(path: &Path, json: bool) -> Result<ExitCode> {
    let file = open_snapshot(path)?;
    file.verify_pages()
        .with_context(|| format!("snapshot {}", path.display()))?;
    let snapshot = file.opened();
    let bytes = file.bytes();
    let meta = &snapshot.meta;
    let memory: u64 = snapshot.memories.iter().map(|m| m.size).sum();
    let kept: u64 = snapshot.memories.iter().map(|m| m.stored_raw()).sum();
    let innermost = meta.stack.first();
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "format_version": tern_snapshot::VERSION,
            "transform_version": meta.transform_version,
            "module_digest": meta.module_digest,
            "module_embedded": snapshot.module.is_some(),
            "created_unix_ms": meta.created_unix_ms,
            "created": rfc3339(meta.created_unix_ms),
            "memory_bytes": memory,
            "memory_nonzero_bytes": kept,
            "file_bytes": bytes.len(),
            "memories": snapshot.memories.iter().map(|m| serde_json::json!({
                "index": m.index, "size": m.size,
                "nonzero_pages": m.chunks.iter().map(|c| c.pages).sum::<u32>(),
                "compressed": m.chunks.iter().any(|c| c.encoding == tern_snapshot::ChunkEncoding::Lz4)
            })).collect::<Vec<_>>(),
            "function": innermost.map(|f| serde_json::json!({"index": f.function, "name": f.name})),
            "stack_depth": meta.stack.len(),
            "fds": meta.fds.iter().map(|f| serde_json::json!({"fd": f.fd, "description": f.description})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("snapshot:  {}", path.display());
    println!(
        "format:    v{} (instrumentation v{})",
        tern_snapshot::VERSION,
        meta.transform_version
    );
    println!(
        "module:    {} ({})",
        meta.module_digest,
        if snapshot.module.is_some() {
            "embedded"
        } else {
            "referenced"
        }
    );
    println!("created:   {}", rfc3339(meta.created_unix_ms));
    println!(
        "memory:    {} ({} in non-zero pages; file {})",
        format_size(memory),
        format_size(kept),
        format_size(bytes.len() as u64)
    );
    match innermost {
        Some(f) => println!(
            "in:        function {} {} (stack depth {})",
            f.function,
            f.name
                .as_deref()
                .map(|n| format!("`{n}`"))
                .unwrap_or_default(),
            meta.stack.len()
        ),
        None => println!("in:        (no frames)"),
    }
    println!("descriptors:");
    for f in &meta.fds {
        println!("  {:>3}  {}", f.fd, f.description);
    }
    Ok(ExitCode::SUCCESS)
}

/// UTC timestamp from Unix milliseconds (civil-from-days, proleptic Gregorian).
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Let SIGPIPE end the process, as it does for C programs (Rust ignores it by default, which
/// turns a closed pipe into a panic in `println!`).
#[allow(unsafe_code)]
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
