//! Fault injection for drills and tests: make one migration misbehave at one exact step, in
//! this process, the way a real failure would. Off unless `TERN_FAULT_FILE` names a file; the
//! file holds one line `<side>:<step>:<action>`:
//!
//! - side: `source` or `destination`;
//! - step: the source's `prepare`, `volumes`, `pre-copy`, `stop-and-copy`, `resume`, `commit`
//!   (the destination said ready; the commit is not asked yet) or `committed` (the commit was
//!   granted; go is not sent yet); the destination's `prepare`, `pre-copy`, `resume` (state
//!   installed, ready not said yet) or `verdict` (ready said, waiting for go);
//! - action: `cut` closes the connection there (the network failed: the peer sees it end), or
//!   `hold` stops there, holding the connection open and silent, while the file
//!   `<TERN_FAULT_FILE>.held` exists (created on arrival): a stalled peer, and a moment at
//!   which a test can kill a process.
//!
//! A fault fires once: the file is removed when it does, so a test knows it was reached.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Which end of a migration this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

/// Reached `step`: misbehave if a fault is armed for it. Returns true if the connection must
/// be treated as cut from now on.
pub(crate) fn at(side: Side, step: &str) -> bool {
    let Some(path) = std::env::var_os("TERN_FAULT_FILE").map(PathBuf::from) else {
        return false;
    };
    let Ok(spec) = std::fs::read_to_string(&path) else {
        return false;
    };
    let mut parts = spec.trim().splitn(3, ':');
    let (Some(s), Some(st), Some(action)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ours = match side {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    if s != ours || st != step {
        return false;
    }
    // Only one process may take it (both ends can read the same file).
    if std::fs::remove_file(&path).is_err() {
        return false;
    }
    match action {
        "cut" => true,
        "hold" => {
            let mut held = path.into_os_string();
            held.push(".held");
            let held = PathBuf::from(held);
            if std::fs::write(&held, b"").is_ok() {
                while held.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            false
        }
        _ => false,
    }
}

/// A connection that a fault can cut: from then on it is closed (the peer sees its end) and
/// every read or write here fails as on a reset connection.
pub(crate) struct Cuttable<S> {
    inner: Option<S>,
}

impl<S> Cuttable<S> {
    pub(crate) fn new(inner: S) -> Self {
        Cuttable { inner: Some(inner) }
    }

    pub(crate) fn cut(&mut self) {
        self.inner = None;
    }

    fn live(&mut self) -> std::io::Result<&mut S> {
        self.inner.as_mut().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection cut (fault injected)",
            )
        })
    }
}

impl<S: Read> Read for Cuttable<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.live()?.read(buf)
    }
}

impl<S: Write> Write for Cuttable<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.live()?.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.live()?.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.live()?.flush()
    }
}
