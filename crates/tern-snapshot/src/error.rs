//! How decoding a snapshot fails.

use crate::VERSION;

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
