//! Tern's instrumentation: rewrites an ordinary WebAssembly module so that a running instance can
//! be stopped at a safe point, its call stack written out as plain bytes, and later rebuilt in a
//! fresh instance — possibly in another process or on another machine.
//!
//! The transform is Asyncify-like but is Tern's own, written over `wasmparser` and `wasm-encoder`
//! so that it understands every instruction wasmtime accepts, including exception handling
//! (`try_table`): frames inside `try_table` bodies are captured and re-entered like any other
//! block. Only functions that can reach a capture point are rewritten; the rest are copied byte
//! for byte. This crate does no I/O and knows nothing about WASI or wasmtime: it takes bytes and
//! returns bytes plus a description ([`Instrumented`]) of what the host must save and restore.
//!
//! The contract with the host (see `docs/instrumentation.md`):
//! - global [`STATE_EXPORT`]: 0 running, 1 unwinding (a capture is in progress), 2 rewinding;
//! - memory [`FLAG_EXPORT`] (one page that never moves): bit 0 of the word at offset 0 asks for a
//!   capture at the next safe point (the host may set it from any thread); bit 1 is set by the
//!   host while rewinding so that poll points notice;
//! - memory [`FRAMES_EXPORT`]: the saved frames, `[0, SP)` where SP is global [`SP_EXPORT`]. Each
//!   frame ends with a 12-byte trailer: resume point, function index and frame size (little
//!   endian `u32`s), so the host can walk the stack from the outermost frame down.

mod analysis;
mod body;
mod counted;
mod frame_memory;
mod liveness;
mod module;
#[cfg(test)]
mod test_ops;

pub use body::TWO_FORMS_UP_TO as DEFAULT_TWO_FORMS_UP_TO;
pub use frame_memory::LOCALS_TIMES_POINTS as DEFAULT_LOCALS_IN_MEMORY_ABOVE;
pub use module::instrument;

/// Bumped whenever the frame layout or the host contract changes: a snapshot taken under one
/// version cannot be resumed under another.
pub const TRANSFORM_VERSION: u32 = 21;

pub const STATE_EXPORT: &str = "__tern_state";
pub const SP_EXPORT: &str = "__tern_sp";
pub const FLAG_EXPORT: &str = "__tern_flag";
pub const FRAMES_EXPORT: &str = "__tern_frames";
/// The module's start function, moved out of the start section so that a resume does not run it
/// a second time.
pub const START_EXPORT: &str = "__tern_start";
/// Prefix of the exports that expose every defined global (`__tern_global_7`) and memory.
pub const GLOBAL_EXPORT_PREFIX: &str = "__tern_global_";
pub const MEMORY_EXPORT_PREFIX: &str = "__tern_memory_";
/// Tables that hold reference-typed locals of unwound frames (wasm cannot store them in memory).
pub const REF_TABLE_EXPORT_PREFIX: &str = "__tern_refs_";
/// How many entries of each reference table belong to saved frames (`__tern_refs_sp_exn`).
pub const REF_SP_EXPORT_PREFIX: &str = "__tern_refs_sp_";
/// The reference tables, in the order of [`REF_TABLE_EXPORT_PREFIX`] suffixes.
pub const REF_CLASSES: [&str; 3] = ["func", "extern", "exn"];

pub const STATE_RUNNING: i32 = 0;
pub const STATE_UNWINDING: i32 = 1;
pub const STATE_REWINDING: i32 = 2;
pub const FLAG_CAPTURE: u32 = 1;
pub const FLAG_REWIND: u32 = 2;
/// Size of the trailer at the end of every saved frame.
pub const FRAME_TRAILER: u32 = 12;

/// What the host must know about an instrumented module.
#[derive(Debug, Clone)]
pub struct Instrumented {
    pub wasm: Vec<u8>,
    /// Defined mutable globals the host saves and restores, as (global index, type).
    pub globals: Vec<(u32, GlobalKind)>,
    /// Indices of the module's own defined memories (exported as `__tern_memory_<i>`).
    pub memories: Vec<u32>,
    /// Whether the module had a start function (now exported as [`START_EXPORT`]).
    pub has_start: bool,
    pub stats: Stats,
    /// Function names from the name section, by function index (empty where absent).
    pub function_names: Vec<(u32, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKind {
    I32,
    I64,
    F32,
    F64,
    V128,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub functions: u32,
    pub instrumented: u32,
    pub resume_points: u32,
    pub polls: u32,
    /// Functions whose locals live in the locals memory (too large to compile otherwise).
    pub locals_in_memory: u32,
    /// Rewritten functions with a separate running form (the others, above
    /// [`Options::two_forms_up_to`], run in their rewinding form, which costs guards).
    pub two_forms: u32,
    /// Loops that run without their poll when, on entry, they will end within a budget of
    /// operations (counted loops; see `counted.rs`).
    pub counted_loops: u32,
    /// Short loops whose running form runs several copies of the body per poll (see
    /// `counted.rs`).
    pub unrolled_loops: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which imports may start a capture (they block, so a checkpoint must be able to
    /// interrupt them).
    pub capturing_imports: Vec<(String, String)>,
    /// Rewritten functions whose numeric locals times resume points exceed this keep their
    /// locals in a memory of Tern's own, so that the compiler can handle them (`None`: the
    /// default bound; `Some(0)`: every rewritten function, which tests use).
    pub locals_in_memory_above: Option<usize>,
    /// Rewritten functions whose numeric locals times resume points are at most this get a
    /// separate running form; larger ones run in their rewinding form (`None`: the default
    /// bound; `Some(0)`: none, which tests use).
    pub two_forms_up_to: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid wasm module: {0}")]
    Invalid(#[from] wasmparser::BinaryReaderError),
    #[error("module uses {0}, which Tern cannot migrate")]
    Unsupported(String),
    #[error("encoding the instrumented module: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
