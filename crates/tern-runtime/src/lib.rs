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
    /// A live migration failed, on either side. The step is reported beside the cause (a
    /// report's `failed_step`), so the message does not repeat it.
    #[error("migration: {cause}")]
    Migration {
        step: tern_api::MigrationStep,
        cause: MigrationCause,
    },
}

/// Why a live migration failed, as the side that reports it saw it.
#[derive(Debug, thiserror::Error)]
pub enum MigrationCause {
    /// The other side closed the connection while this one was `doing` something.
    #[error("{doing}: the other side closed the connection")]
    Closed { doing: &'static str },
    /// Nothing could be read or written for the connection's timeout: a peer that vanished
    /// without closing.
    #[error("{doing}: the other side fell silent (connection timed out)")]
    TimedOut { doing: &'static str },
    /// Any other failure of the connection, or of this side's memory map or files.
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        source: std::io::Error,
    },
    /// A frame failed its checksum: damaged on the way.
    #[error("a frame failed its checksum")]
    Checksum,
    /// A frame head announced more than a frame may hold.
    #[error("frame of {0} bytes is larger than allowed")]
    FrameTooLarge(usize),
    /// A frame of a kind the protocol does not allow here; `context` says what was expected
    /// ("instead of ready", "while receiving").
    #[error("unexpected frame {kind} {context}")]
    UnexpectedFrame { kind: u8, context: &'static str },
    /// Any other frame that does not follow the protocol (short, out of bounds, bad data).
    #[error("{0}")]
    Protocol(String),
    /// A path from the other side that would lead outside its directory.
    #[error(
        "file path {path:?} {}",
        if *through_link { "goes through a symbolic link" } else { "is not a plain relative path" }
    )]
    UnsafePath { path: String, through_link: bool },
    /// The source: the destination refused the program (another module, protocol or
    /// instrumentation version), for this reason.
    #[error("the destination refused: {0}")]
    Refused(String),
    /// The destination: the program the source offers does not fit here, for this reason
    /// (which the source is told).
    #[error("refused: {0}")]
    Incompatible(String),
    /// The destination: the program has a directory this side was not given.
    #[error("the program has directory {0:?}, this destination was not given it")]
    MissingDirectory(String),
    /// The destination: the program's module lacks a memory the source sends.
    #[error("module has no memory {0}")]
    NoMemory(u32),
    /// The destination: a memory could not grow to the source's size.
    #[error("growing memory {index} to {end} bytes: {reason}")]
    Grow {
        index: u32,
        end: u64,
        reason: String,
    },
    /// The source: the destination failed, for this reason (its own error's text).
    #[error("the destination failed: {0}")]
    DestinationFailed(String),
    /// The destination: the source gave up before the state was sent.
    #[error("the source aborted the migration")]
    SourceAborted,
    /// The destination: the source decided against the move once this side was ready.
    #[error("aborted: the program continues at the source")]
    Aborted,
    /// The source: no program runs under the control.
    #[error("no program is running")]
    NotRunning,
    /// The source: the program ended on its own before it could be moved.
    #[error("the program ended during the migration")]
    ProgramEnded,
    /// The source: asking for the commit failed (the migration rolls back).
    #[error("commit: {0}")]
    Commit(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
