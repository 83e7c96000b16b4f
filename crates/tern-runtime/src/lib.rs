//! Tern's migratable runtime: runs a WASI preview 1 command module on wasmtime, after
//! instrumenting it (see `tern-instrument`), so that it can be captured at a safe point into a
//! [`tern_snapshot::Snapshot`] and continued from one in a fresh process.
//!
//! It owns the engine configuration, the on-disk cache of modules and compiled code (keyed by
//! the module's sha256, so a second start neither instruments nor compiles), the capture and
//! restore of instance state, and the wiring of capture requests (a timer, `SIGUSR1`, or any
//! thread holding a [`Control`]), and live migration: moving a running program to another
//! process over one byte stream while it runs (`migrate_out` on the source, `Start::Incoming`
//! on the destination). It does not decide when or where a program should move: that is the
//! job of the agent and controller.

mod cache;
mod control;
mod exec;
mod fault;
mod host;
mod live;
mod snapfile;
mod state;
mod sys;

pub use cache::{Cache, Prepared};
pub use control::Control;
pub use exec::{engine_config, Outcome, Resumable, RunOptions, RunStats, Runtime, Start};
pub use live::{migrate_out, MigrateOptions, Progress};
pub use snapfile::SnapshotFile;

/// Exit code for a program stopped by a trap, as `wasmtime run` reports an abort.
pub const TRAP_EXIT_CODE: i32 = 134;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("module imports {0}, which Tern does not provide")]
    UnknownImport(String),
    #[error(transparent)]
    Instrument(#[from] tern_instrument::Error),
    #[error("compiling module: {0}")]
    Compile(String),
    #[error("module cache at {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("module has no `_start` export (Tern runs WASI commands)")]
    NoStart,
    #[error("program trapped: {0}")]
    Trap(String),
    #[error("setting up WASI: {0}")]
    Wasi(#[from] tern_wasi::Error),
    #[error("snapshot does not fit this module: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Snapshot(#[from] tern_snapshot::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("restoring state: {0}")]
    Restore(String),
    #[error("capturing state: {0}")]
    Capture(String),
    #[error("migration: {0}")]
    Migration(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
