//! How the agent fails.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("controller at {url}: {message}")]
    Controller { url: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blob {digest}: {message}")]
    Blob { digest: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
