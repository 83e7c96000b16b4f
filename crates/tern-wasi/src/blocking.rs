//! The four imports that may wait on the outside world: `fd_read`,
//! `poll_oneoff`, `sock_accept` and `sock_recv`. Each calls the runtime's
//! `on_enter` hook first, validates every argument before waiting (so that
//! an abandoned call has done nothing), then waits via [`block`].

use crate::ctx::Kind;
use crate::embedder::{BlockingHooks, WasiView};
use crate::errno::{Errno, WasiResult};
use crate::fd::retry;
use crate::mem::{read_into, Iov, Mem};
use crate::poll::{block, poll_one};
use crate::register::{code, memory, size, small};
use crate::{WasiCtx, IMPORT_MODULE};
use rustix::event::PollFlags;
use std::time::Duration;
use wasmtime::{Caller, Linker, Memory};

impl WasiCtx {
    /// One attempt at `fd_read`; `Ok(None)` = nothing available yet (after
    /// waiting up to `timeout`). Regular files never report `None`.
    fn try_read(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        iovs: &[Iov],
        timeout: Duration,
    ) -> WasiResult<Option<usize>> {
        let e = self.entry(fd)?;
        match &e.kind {
            Kind::File(_) => self.read_file(mem, fd, iovs).map(Some),
            Kind::Stream { .. } => self.try_sock_recv(mem, fd, iovs, 0, timeout),
            Kind::Stdin => {
                // Host stdin stays blocking (it is shared with the process),
                // so only read once poll(2) says a read will not block.
                let stdin = rustix::stdio::stdin();
                let wait = if e.nonblocking() {
                    Duration::ZERO
                } else {
                    timeout
                };
                if poll_one(stdin, PollFlags::IN, wait)?.is_empty() {
                    return if e.nonblocking() {
                        Err(Errno::AGAIN)
                    } else {
                        Ok(None)
                    };
                }
                read_into(mem, iovs, |buf| {
                    retry(|| rustix::io::read(stdin, &mut *buf).map_err(Into::into))
                })
                .map(Some)
            }
            Kind::Listener { .. } => Err(Errno::NOTCONN),
            Kind::Stdout | Kind::Stderr | Kind::Dir(_) => Err(Errno::BADF),
        }
    }
}

/// Runs argument validation with plain memory access before any waiting.
fn precheck<T: WasiView, R>(
    caller: &mut Caller<'_, T>,
    memory: Memory,
    check: impl FnOnce(&Mem<'_>, &mut WasiCtx) -> WasiResult<R>,
) -> WasiResult<R> {
    let (bytes, data) = memory.data_and_store_mut(caller);
    check(&Mem::new(bytes), data.wasi())
}

fn finish(done: Option<WasiResult<()>>) -> i32 {
    // `None`: abandoned for a checkpoint; errno 0 with nothing written.
    done.map_or(0, code)
}

pub(crate) fn add<T: WasiView>(
    linker: &mut Linker<T>,
    hooks: BlockingHooks<T>,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "fd_read",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              iovs: i32,
              iovs_len: i32,
              ret: i32|
              -> wasmtime::Result<i32> {
            (hooks.on_enter)(&mut caller)?;
            let memory = memory(&mut caller)?;
            let (fd, ret) = (fd as u32, ret as u32);
            let checked = precheck(&mut caller, memory, |mem, ctx| {
                ctx.entry(fd)?;
                mem.check(ret, 4)?;
                mem.iovecs(iovs as u32, iovs_len as u32)
            });
            let iovs = match checked {
                Ok(iovs) => iovs,
                Err(e) => return Ok(e.code()),
            };
            let done = block(&mut caller, memory, &hooks, |mem, ctx, timeout| {
                let Some(n) = ctx.try_read(mem, fd, &iovs, timeout)? else {
                    return Ok(None);
                };
                mem.write_u32(ret, size(n)?)?;
                Ok(Some(()))
            })?;
            Ok(finish(done))
        },
    )?;

    linker.func_wrap(
        IMPORT_MODULE,
        "sock_recv",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              iovs: i32,
              iovs_len: i32,
              riflags: i32,
              ret_len: i32,
              ret_flags: i32|
              -> wasmtime::Result<i32> {
            (hooks.on_enter)(&mut caller)?;
            let memory = memory(&mut caller)?;
            let (fd, ret_len, ret_flags) = (fd as u32, ret_len as u32, ret_flags as u32);
            let checked = precheck(&mut caller, memory, |mem, ctx| {
                ctx.entry(fd)?;
                mem.check(ret_len, 4)?;
                mem.check(ret_flags, 2)?;
                let riflags: u16 = small(riflags)?;
                Ok((mem.iovecs(iovs as u32, iovs_len as u32)?, riflags))
            });
            let (iovs, riflags) = match checked {
                Ok(v) => v,
                Err(e) => return Ok(e.code()),
            };
            let done = block(&mut caller, memory, &hooks, |mem, ctx, timeout| {
                let Some(n) = ctx.try_sock_recv(mem, fd, &iovs, riflags, timeout)? else {
                    return Ok(None);
                };
                mem.write_u32(ret_len, size(n)?)?;
                mem.write_u16(ret_flags, 0)?;
                Ok(Some(()))
            })?;
            Ok(finish(done))
        },
    )?;

    linker.func_wrap(
        IMPORT_MODULE,
        "sock_accept",
        move |mut caller: Caller<'_, T>, fd: i32, flags: i32, ret: i32| -> wasmtime::Result<i32> {
            (hooks.on_enter)(&mut caller)?;
            let memory = memory(&mut caller)?;
            let (fd, ret) = (fd as u32, ret as u32);
            let checked = precheck(&mut caller, memory, |mem, ctx| {
                ctx.entry(fd)?;
                mem.check(ret, 4)?;
                small::<u16>(flags)
            });
            let flags = match checked {
                Ok(v) => v,
                Err(e) => return Ok(e.code()),
            };
            let done = block(&mut caller, memory, &hooks, |mem, ctx, timeout| {
                let Some(new_fd) = ctx.try_sock_accept(fd, flags, timeout)? else {
                    return Ok(None);
                };
                mem.write_u32(ret, new_fd)?;
                Ok(Some(()))
            })?;
            Ok(finish(done))
        },
    )?;

    linker.func_wrap(
        IMPORT_MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>,
              subs: i32,
              events: i32,
              n: i32,
              ret: i32|
              -> wasmtime::Result<i32> {
            (hooks.on_enter)(&mut caller)?;
            let memory = memory(&mut caller)?;
            let r = crate::poll::poll_oneoff(
                &mut caller,
                memory,
                &hooks,
                subs as u32,
                events as u32,
                n as u32,
                ret as u32,
            )?;
            Ok(code(r))
        },
    )?;
    Ok(())
}
