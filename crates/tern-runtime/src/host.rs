//! What a program's store holds besides the instance: its WASI context, the capture control it
//! answers to, and its resource limits.

use std::sync::Arc;

use tern_wasi::{WasiCtx, WasiView};

use crate::control::Control;

/// The data of every store Tern runs a program in.
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    control: Arc<Control>,
    /// What the store may grow to (`Store::limiter`).
    pub(crate) limits: wasmtime::StoreLimits,
}

impl Host {
    pub(crate) fn new(wasi: WasiCtx, control: Arc<Control>, max_memory: Option<u64>) -> Host {
        let mut limits = wasmtime::StoreLimitsBuilder::new();
        if let Some(bytes) = max_memory {
            limits = limits.memory_size(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        Host {
            wasi,
            control,
            limits: limits.build(),
        }
    }
}

impl WasiView for Host {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
    fn capture_requested(&self) -> bool {
        self.control.requested()
    }
    fn wake_fd(&self) -> Option<Arc<std::os::fd::OwnedFd>> {
        self.control.wake_fd()
    }
}
