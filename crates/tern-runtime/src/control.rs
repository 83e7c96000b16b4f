//! Asking a running program to stop at its next safe point, from any thread.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tern_instrument::FLAG_CAPTURE;

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
    }
}
