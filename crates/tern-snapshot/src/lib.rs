//! Tern's snapshot format, version 2: one self-checking binary file holding everything needed to
//! continue a captured WebAssembly program — its linear memories (sparse; raw pages aligned so
//! that they can be mapped, or compressed), mutable
//! globals, the frames of its call stack, and the host's WASI state — and a reference to its
//! module by sha256 digest (or the module itself, embedded).
//!
//! This crate only encodes and decodes; it neither runs programs nor touches the file system
//! (callers hand it bytes). Every decoding failure is an [`Error`], never a panic: a snapshot
//! arrives from disk or from the network and may be truncated, corrupted or hostile. The layout
//! is specified in `docs/snapshot-format.md`.

mod format;
mod memory;

pub use format::{
    decode, encode, open, peek_meta, write, ChunkEncoding, Opened, PageEncoding, SectionId,
    StoredChunk, StoredMemory,
};
pub use memory::{Chunk, MemoryImage, PAGE};

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"TERNSNAP";
pub const VERSION: u32 = 2;

/// A decoded snapshot. Memory chunk payloads borrow nothing: decoding copies what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub meta: Meta,
    /// The host's WASI state, as JSON (its shape belongs to the WASI layer).
    pub wasi: serde_json::Value,
    pub globals: Vec<GlobalValue>,
    /// The frames memory `[0, sp)`, innermost frame first.
    pub frames: Vec<u8>,
    pub memories: Vec<MemoryImage>,
    /// The original module, when embedded.
    pub module: Option<Vec<u8>>,
}

/// Facts about the snapshot that readers (such as `tern snapshot inspect`) show without touching
/// the bulk sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `sha256:<hex>` of the original (uninstrumented) module.
    pub module_digest: String,
    /// The instrumentation version the frames were written by.
    pub transform_version: u32,
    pub created_unix_ms: u64,
    pub tern_version: String,
    /// The call stack, innermost first.
    pub stack: Vec<FrameInfo>,
    /// Open descriptors, for display.
    pub fds: Vec<FdInfo>,
    /// Entries each reference table (funcref, externref, exnref) held for the saved frames;
    /// all were null, and a resume recreates them as nulls.
    #[serde(default)]
    pub ref_slots: [u32; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameInfo {
    pub function: u32,
    pub name: Option<String>,
    pub resume_point: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdInfo {
    pub fd: u32,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalValue {
    pub index: u32,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a Tern snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this Tern reads version {VERSION})")]
    Version(u32),
    #[error("snapshot is truncated: {0}")]
    Truncated(String),
    #[error("snapshot is corrupted: {0}")]
    Corrupted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `sha256:<hex>` of some bytes: how Tern names modules and blobs.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
