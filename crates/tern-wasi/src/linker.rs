//! The embedding interface ([`WasiView`], [`BlockingHooks`],
//! [`add_to_linker`]) and the registration helpers shared by imports.rs and
//! blocking.rs. Imports are registered on raw i32/i64 parameters and only
//! decode arguments here; their semantics live in the per-topic modules.

use crate::errno::{Errno, WasiResult};
use crate::mem::Mem;
use crate::{ProcExit, WasiCtx, IMPORT_MODULE};
use wasmtime::{Caller, Extern, Linker, Memory};

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

/// The guest's exported linear memory. Without one no pointer argument can
/// mean anything, so this is a trap rather than an errno.
pub(crate) fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        Some(Extern::SharedMemory(_)) => Err(wasmtime::Error::msg(
            "WASI: shared linear memory is not supported",
        )),
        _ => Err(wasmtime::Error::msg(
            "WASI import called by a module that exports no memory named \"memory\"",
        )),
    }
}

pub(crate) fn code(r: WasiResult<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// Narrow integer parameters arrive as i32; out-of-range values are EINVAL,
/// as wiggle reports for invalid flag/enum values.
pub(crate) fn small<N: TryFrom<u32>>(v: i32) -> WasiResult<N> {
    N::try_from(v as u32).map_err(|_| Errno::INVAL)
}

/// Counts returned to the guest are bounded by MAX_IO, so this never fails
/// in practice; it stays checked so that it cannot truncate silently.
pub(crate) fn size(n: usize) -> WasiResult<u32> {
    u32::try_from(n).map_err(|_| Errno::OVERFLOW)
}

/// Registers an import that needs guest memory. The body sees `ctx: &mut
/// WasiCtx` and `mem: &mut Mem` and evaluates to `WasiResult<()>`.
macro_rules! with_mem {
    ($linker:ident, $name:literal, |$ctx:ident, $mem:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
        $linker.func_wrap(
            IMPORT_MODULE,
            $name,
            move |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                let memory = memory(&mut caller)?;
                let (bytes, data) = memory.data_and_store_mut(&mut caller);
                let $ctx: &mut WasiCtx = data.wasi();
                let $mem = &mut Mem::new(bytes);
                #[allow(clippy::redundant_closure_call, unused_mut)]
                let r: WasiResult<()> = (|| $body)();
                Ok(code(r))
            },
        )?;
    };
}

pub(crate) use with_mem;

/// Registers an import that touches only the context.
macro_rules! no_mem {
    ($linker:ident, $name:literal, |$ctx:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
        $linker.func_wrap(
            IMPORT_MODULE,
            $name,
            move |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                let $ctx: &mut WasiCtx = caller.data_mut().wasi();
                #[allow(clippy::redundant_closure_call)]
                let r: WasiResult<()> = (|| $body)();
                Ok(code(r))
            },
        )?;
    };
}

pub(crate) use no_mem;

/// Adds every `wasi_snapshot_preview1` function to `linker`.
pub fn add_to_linker<T: WasiView>(
    linker: &mut Linker<T>,
    hooks: BlockingHooks<T>,
) -> wasmtime::Result<()> {
    add_process(linker)?;
    crate::imports::add_fd(linker)?;
    crate::imports::add_path(linker)?;
    crate::blocking::add(linker, hooks)?;
    Ok(())
}

fn add_process<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    with_mem!(linker, "args_get", |ctx, mem, argv: i32, buf: i32| {
        ctx.args_get(mem, argv as u32, buf as u32)
    });
    with_mem!(
        linker,
        "args_sizes_get",
        |ctx, mem, count: i32, bytes: i32| { ctx.args_sizes_get(mem, count as u32, bytes as u32) }
    );
    with_mem!(linker, "environ_get", |ctx, mem, env: i32, buf: i32| {
        ctx.environ_get(mem, env as u32, buf as u32)
    });
    with_mem!(
        linker,
        "environ_sizes_get",
        |ctx, mem, count: i32, bytes: i32| {
            ctx.environ_sizes_get(mem, count as u32, bytes as u32)
        }
    );
    with_mem!(linker, "clock_res_get", |ctx, mem, id: i32, ret: i32| {
        ctx.clock_res_get(mem, id as u32, ret as u32)
    });
    with_mem!(
        linker,
        "clock_time_get",
        |ctx, mem, id: i32, _precision: i64, ret: i32| {
            ctx.clock_time_get(mem, id as u32, ret as u32)
        }
    );
    with_mem!(linker, "random_get", |_ctx, mem, buf: i32, len: i32| {
        crate::proc::random_get(mem, buf as u32, len as u32)
    });
    no_mem!(linker, "sched_yield", |_ctx| {
        std::thread::yield_now();
        Ok(())
    });
    no_mem!(linker, "proc_raise", |_ctx, _sig: i32| {
        Err(Errno::NOSYS)
    });
    linker.func_wrap(
        IMPORT_MODULE,
        "proc_exit",
        |mut caller: Caller<'_, T>, status: i32| -> wasmtime::Result<()> {
            caller.data_mut().wasi().exit_code = Some(status);
            Err(ProcExit(status).into())
        },
    )?;
    Ok(())
}
