//! [`add_to_linker`]: registers every import, the process-level ones here
//! and the others through imports.rs and blocking.rs.

use crate::embedder::{BlockingHooks, WasiView};
use crate::errno::{Errno, WasiResult};
use crate::mem::Mem;
use crate::register::{code, memory, no_mem, with_mem};
use crate::{ProcExit, WasiCtx, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

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
