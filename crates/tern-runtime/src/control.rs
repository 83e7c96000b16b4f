//! Asking a running program to stop at its next safe point, from any thread.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tern_instrument::FLAG_CAPTURE;
use tern_snapshot::Snapshot;

/// A capture request channel shared between the thread running the program and whoever wants
/// it captured (a timer, a signal handler thread, an agent).
#[derive(Debug)]
pub struct Control {
    requested: AtomicBool,
    requested_at: Mutex<Option<std::time::Instant>>,
    /// Address of the instance's flag word while an instance runs, else 0.
    flag: Mutex<usize>,
    /// An eventfd that is readable while a request is pending: blocking imports wait on it
    /// instead of waking every few milliseconds to look (None if eventfd is unavailable).
    wake: Option<Arc<OwnedFd>>,
    /// The running program's module and memories, for a live migration to read.
    live_info: Mutex<Option<LiveInfo>>,
    /// A live migration waiting for the program to stop at a safe point.
    live: Mutex<Option<LiveRequest>>,
    /// The running program's memories, readable by a live migration.
    pub(crate) memories: crate::sys::AttachedMemories,
}

/// Where a running program's memories are, for reading them while it runs.
#[derive(Debug, Clone)]
pub(crate) struct LiveInfo {
    pub(crate) module_digest: String,
    /// (memory index, base address) of each memory the program defines.
    pub(crate) memories: Vec<(u32, usize)>,
    /// Its preopened directories (guest path, host path), whose files move with it.
    pub(crate) dirs: Vec<(String, std::path::PathBuf)>,
}

/// A live migration's request to the program thread: stop at the next safe point and hand over
/// the state (`paused`), then wait for the verdict (true: the program moved away and ends here;
/// false: it continues here).
#[derive(Debug)]
pub(crate) struct LiveRequest {
    pub(crate) paused: mpsc::SyncSender<Snapshot>,
    pub(crate) verdict: mpsc::Receiver<bool>,
}

impl Default for Control {
    fn default() -> Self {
        use rustix::event::{eventfd, EventfdFlags};
        Control {
            requested: AtomicBool::new(false),
            requested_at: Mutex::new(None),
            flag: Mutex::new(0),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .ok()
                .map(Arc::new),
            live_info: Mutex::new(None),
            live: Mutex::new(None),
            memories: Default::default(),
        }
    }
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    pub(crate) fn wake_fd(&self) -> Option<Arc<OwnedFd>> {
        self.wake.clone()
    }

    /// Ask for a capture at the next safe point. Harmless when nothing is running.
    pub fn request(&self) {
        *self.requested_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        self.requested.store(true, Ordering::SeqCst);
        let flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        if *flag != 0 {
            crate::sys::fetch_or_word(*flag, FLAG_CAPTURE);
        }
        if let Some(w) = &self.wake {
            // Failure only means the counter is already huge, i.e. readable.
            let _ = rustix::io::write(w, &1u64.to_ne_bytes());
        }
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// When the pending request was made.
    pub fn requested_at(&self) -> Option<std::time::Instant> {
        *self.requested_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clear(&self) {
        self.requested.store(false, Ordering::SeqCst);
        if let Some(w) = &self.wake {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(w, &mut buf);
        }
    }

    /// Publish the flag word of a new instance; a request made before it existed is applied.
    pub(crate) fn attach(&self, addr: usize) {
        let mut flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        *flag = addr;
        if self.requested() {
            crate::sys::fetch_or_word(addr, FLAG_CAPTURE);
        }
    }

    /// Must be called before the instance's store is dropped.
    pub(crate) fn detach(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        *self.live_info.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.memories.detach();
    }

    pub(crate) fn set_live_info(&self, info: LiveInfo) {
        let bases: Vec<usize> = info.memories.iter().map(|m| m.1).collect();
        self.memories.attach(&bases);
        *self.live_info.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }

    pub(crate) fn live_info(&self) -> Option<LiveInfo> {
        self.live_info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a program is running under this control.
    pub fn running(&self) -> bool {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) != 0
    }

    /// Stop the program at its next safe point and hand its state to a live migration.
    pub(crate) fn request_live(&self, req: LiveRequest) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(req);
        self.request();
    }

    pub(crate) fn take_live(&self) -> Option<LiveRequest> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Put back a live request that could not be served at this safe point.
    pub(crate) fn put_live(&self, req: LiveRequest) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(req);
    }

    /// Withdraw a live request (the migration gave up before the program stopped).
    pub(crate) fn cancel_live(&self) {
        if self.take_live().is_some() {
            self.clear();
            let flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
            if *flag != 0 {
                crate::sys::fetch_and_word(*flag, !FLAG_CAPTURE);
            }
        }
    }
}
