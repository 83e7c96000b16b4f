//! What a snapshot holds, decoded: its facts (meta), WASI state, globals, frames, memories
//! and, optionally, the module.

use serde::{Deserialize, Serialize};

use crate::MemoryImage;

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
