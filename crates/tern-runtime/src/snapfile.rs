//! Snapshot files resumed without reading their memory: the file is mapped, its small sections
//! are verified at once, and its raw memory pages are mapped copy-on-write into the new
//! instance, so that resuming costs the same for a 1 MiB and a 1 GiB program. The pages'
//! checksums are verified by a background thread while the program already runs; nothing the
//! program does can be seen outside (no host call returns, no capture is written, no exit is
//! reported) until that check has passed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tern_snapshot::{ChunkEncoding, Opened, Snapshot};

use crate::control::Control;
use crate::sys::FileMap;
use crate::{Error, Result};

/// An opened snapshot file.
pub struct SnapshotFile {
    path: PathBuf,
    file: std::fs::File,
    map: Arc<FileMap>,
    opened: Opened,
}

impl SnapshotFile {
    /// Map `path` and verify everything but its memory pages.
    pub fn open(path: &Path) -> Result<SnapshotFile> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let map = Arc::new(FileMap::new(&file).map_err(io)?);
        let opened = tern_snapshot::open(map.bytes())?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            map,
            opened,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything but the memory pages, verified.
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The embedded module, if any.
    pub fn module(&self) -> Option<&[u8]> {
        self.opened.module.clone().map(|r| &self.map.bytes()[r])
    }

    /// Check every memory page's checksum now.
    pub fn verify_pages(&self) -> Result<()> {
        Ok(self.opened.verify_pages(self.map.bytes())?)
    }

    /// Read the whole snapshot into memory (verifying every page).
    pub fn load(&self) -> Result<Snapshot> {
        Ok(self.opened.clone().load(self.map.bytes())?)
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Start checking the raw (mapped) pages in the background. Compressed pages are checked
    /// as they are decompressed, before the program starts.
    pub(crate) fn check_pages_in_background(&self, control: Arc<Control>) -> Arc<PageCheck> {
        let check = Arc::new(PageCheck::default());
        let chunks: Vec<_> = self
            .opened
            .memories
            .iter()
            .flat_map(|m| m.chunks.iter().copied())
            .filter(|c| c.encoding == ChunkEncoding::Raw)
            .collect();
        let map = self.map.clone();
        let c = check.clone();
        std::thread::spawn(move || {
            let mut result = Ok(());
            for chunk in &chunks {
                match chunk.verified(map.bytes()) {
                    Ok(_) => {}
                    Err(
                        tern_snapshot::Error::Corrupted(why) | tern_snapshot::Error::Truncated(why),
                    ) => {
                        result = Err(why);
                        break;
                    }
                    Err(other) => {
                        result = Err(other.to_string());
                        break;
                    }
                }
            }
            let failed = result.is_err();
            c.finish(result);
            if failed {
                // Stop the program at its next safe point, where the run reports the failure.
                control.request();
            }
        });
        check
    }
}

/// The outcome of the background page check, awaited by everything that lets the program's
/// state be seen.
#[derive(Default)]
pub(crate) struct PageCheck {
    passed: AtomicBool,
    result: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl PageCheck {
    fn finish(&self, result: Result<(), String>) {
        let mut slot = self.result.lock().unwrap_or_else(|p| p.into_inner());
        if result.is_ok() {
            self.passed.store(true, Ordering::Release);
        }
        *slot = Some(result);
        self.done.notify_all();
    }

    /// Block until the check is over; its failure as a snapshot error.
    pub(crate) fn wait(&self) -> Result<()> {
        if self.passed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut slot = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*slot {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    return Err(Error::Snapshot(tern_snapshot::Error::Corrupted(e.clone())))
                }
                None => slot = self.done.wait(slot).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }
}
