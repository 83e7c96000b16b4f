//! `tern snapshot inspect`: what a snapshot file holds, for people or (`--json`) for scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use tern_profile::format_size;

use crate::launch::open_snapshot;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Show what a snapshot holds.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let SnapshotCommand::Inspect { file, json } = a.command;
    inspect(&file, json)
}

fn inspect(path: &Path, json: bool) -> Result<ExitCode> {
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
