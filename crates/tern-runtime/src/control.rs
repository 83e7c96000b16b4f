//! Asking a running program to stop at its next safe point, from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tern_instrument::FLAG_CAPTURE;

/// A capture request channel shared between the thread running the program and whoever wants
/// it captured (a timer, a signal handler thread, an agent).
#[derive(Debug, Default)]
pub struct Control {
    requested: AtomicBool,
    requested_at: Mutex<Option<std::time::Instant>>,
    /// Address of the instance's flag word while an instance runs, else 0.
    flag: Mutex<usize>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
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
