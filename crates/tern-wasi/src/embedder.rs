//! What the embedding runtime provides: access to the WASI context from its
//! store's data ([`WasiView`]) and the hooks of the imports that may block
//! ([`BlockingHooks`]). Every registration and the waiting loop need them, so
//! they sit below all of those.

use crate::WasiCtx;
use wasmtime::Caller;

/// Access to the WASI context from the store's data.
pub trait WasiView: Send + 'static {
    fn wasi(&mut self) -> &mut WasiCtx;
    /// Polled at least every 5 ms while an import blocks; true = abandon the
    /// call now so the runtime can checkpoint.
    fn capture_requested(&self) -> bool;
    /// A descriptor that becomes readable when a capture is requested. With one, blocking
    /// imports sleep until something happens instead of waking every 5 ms to look.
    fn wake_fd(&self) -> Option<std::sync::Arc<std::os::fd::OwnedFd>> {
        None
    }
}

/// Hooks the runtime supplies for imports that may block (poll_oneoff,
/// fd_read, sock_accept, sock_recv).
pub struct BlockingHooks<T: 'static> {
    /// Called on entry to a blocking import, before anything else (the
    /// runtime finishes a resume here).
    pub on_enter: fn(&mut Caller<'_, T>) -> wasmtime::Result<()>,
    /// Called when the call is abandoned because capture_requested() became
    /// true; the import then returns errno 0 at once WITHOUT any side effect
    /// (it will be re-executed from scratch after the resume).
    pub on_interrupt: fn(&mut Caller<'_, T>) -> wasmtime::Result<()>,
}

impl<T: 'static> Clone for BlockingHooks<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: 'static> Copy for BlockingHooks<T> {}
