//! A host implementation of WASI preview 1 (`wasi_snapshot_preview1`) for
//! wasmtime whose entire state is owned by Tern and can be saved mid-run and
//! restored in another process. It exists because Tern checkpoints running
//! guests, and wasmtime-wasi keeps its descriptor table opaque: here every
//! open descriptor remembers how to reopen itself (preopen, relative path,
//! offset, flags), clocks keep running forward across a resume, and every
//! import that can block waits in short slices so a checkpoint request is
//! honoured within milliseconds. It is not a general-purpose or security
//! hardened WASI runtime beyond what the preopens grant (paths are resolved
//! with cap-std), it does not implement preview 2 / the component model, and
//! it cannot move live network connections between processes.

mod abi;
mod blocking;
mod clock;
mod ctx;
mod dir;
mod embedder;
mod errno;
mod fd;
mod imports;
mod linker;
mod mem;
mod path;
mod poll;
mod proc;
mod register;
mod sock;
mod stat;
mod state;

use std::fmt;

pub use ctx::{InterruptedWait, Preopen, WasiConfig, WasiCtx};
pub use embedder::{BlockingHooks, WasiView};
pub use linker::add_to_linker;
pub use state::{FdKindState, FdState, WasiState};

/// The import module name under which every function of this crate is registered.
pub const IMPORT_MODULE: &str = "wasi_snapshot_preview1";

/// Every `wasi_snapshot_preview1` function this crate registers.
pub const FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// The imports that may wait for the outside world; they call
/// [`BlockingHooks`] and can be abandoned for a checkpoint.
pub const BLOCKING_FUNCTIONS: &[&str] = &["poll_oneoff", "fd_read", "sock_accept", "sock_recv"];

/// Whether `name` is a `wasi_snapshot_preview1` function this crate implements.
pub fn provides(name: &str) -> bool {
    FUNCTIONS.contains(&name)
}

/// Whether the import `name` may block (and therefore honours capture requests).
pub fn may_block(name: &str) -> bool {
    BLOCKING_FUNCTIONS.contains(&name)
}

/// The guest called `proc_exit`; returned as the wasmtime error of that call
/// so the runtime can downcast it and end the run with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit(pub i32);

impl fmt::Display for ProcExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest exited with code {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// Errors from building, saving or restoring a [`WasiCtx`]. Guest mistakes
/// never show up here: they become WASI errno values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host directory given as a preopen could not be opened.
    #[error("cannot open preopened directory {host} (guest path {guest:?})")]
    OpenPreopen {
        host: std::path::PathBuf,
        guest: String,
        #[source]
        source: std::io::Error,
    },
    /// The saved state refers to a preopen that `restore` was not given.
    #[error("saved state needs preopened directory {0:?}, which was not supplied")]
    MissingPreopen(String),
    /// The saved state refers to a listener that `restore` was not given.
    #[error("saved state needs listening socket #{0}, but only {1} were supplied")]
    MissingListener(usize, usize),
    /// A file or directory open at save time could not be reopened.
    #[error("cannot reopen {guest_path:?} (open when the checkpoint was taken)")]
    Reopen {
        guest_path: String,
        #[source]
        source: std::io::Error,
    },
    /// A network connection was open at save time; it cannot be moved.
    #[error(
        "fd {0} was an open network connection at checkpoint time, and no closed connection could be made to stand in for it"
    )]
    OpenConnection(u32),
    /// Querying an open descriptor (e.g. its offset) failed during `save`.
    #[error("cannot record the state of fd {fd}")]
    Inspect {
        fd: u32,
        #[source]
        source: std::io::Error,
    },
    /// Configuring a listening socket failed.
    #[error("cannot configure listening socket #{index}")]
    Listener {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    /// The saved state is internally inconsistent.
    #[error("invalid saved WASI state: {0}")]
    InvalidState(String),
}
