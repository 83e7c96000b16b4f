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

mod error;
mod format;
mod memory;
mod snapshot;

pub use error::{Error, Result};
pub use format::{
    decode, encode, open, peek_meta, write, ChunkEncoding, Opened, PageEncoding, SectionId,
    StoredChunk, StoredMemory,
};
pub use memory::{Chunk, MemoryImage, PAGE};
pub use snapshot::{FdInfo, FrameInfo, GlobalValue, Meta, Snapshot, Value};

/// The file's first bytes, and the format version this crate reads and writes.
pub const MAGIC: &[u8; 8] = b"TERNSNAP";
pub const VERSION: u32 = 2;

/// `sha256:<hex>` of some bytes: how Tern names modules and blobs.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
