//! The helpers that import registration shares (imports.rs, blocking.rs and
//! linker.rs): the guest's memory, errno codes, checked narrowing, and the
//! `with_mem!`/`no_mem!` macros. Imports are registered on raw i32/i64
//! parameters and only decode arguments here; their semantics live in the
//! per-topic modules.

use crate::errno::{Errno, WasiResult};
use wasmtime::{Caller, Extern, Memory};

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
