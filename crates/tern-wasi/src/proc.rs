//! Process-level imports: arguments, environment, clocks and randomness
//! (the ones linker.rs registers itself).

use crate::abi::*;
use crate::clock::realtime;
use crate::errno::{Errno, WasiResult};
use crate::mem::Mem;
use crate::WasiCtx;

/// Writes NUL-terminated strings into `buf` and their addresses into `ptrs`,
/// the layout shared by `args_get` and `environ_get`.
fn write_strings<'s>(
    mem: &mut Mem<'_>,
    ptrs: u32,
    buf: u32,
    items: impl Iterator<Item = Vec<&'s [u8]>>,
) -> WasiResult<()> {
    let mut ptr_at = ptrs;
    let mut buf_at = buf;
    for parts in items {
        mem.write_u32(ptr_at, buf_at)?;
        ptr_at = ptr_at.checked_add(4).ok_or(Errno::FAULT)?;
        for part in parts {
            mem.write(buf_at, part)?;
            let len = u32::try_from(part.len()).map_err(|_| Errno::FAULT)?;
            buf_at = buf_at.checked_add(len).ok_or(Errno::FAULT)?;
        }
        mem.write_u8(buf_at, 0)?;
        buf_at = buf_at.checked_add(1).ok_or(Errno::FAULT)?;
    }
    Ok(())
}

fn sizes(
    mem: &mut Mem<'_>,
    count: usize,
    bytes: usize,
    ret_count: u32,
    ret_bytes: u32,
) -> WasiResult<()> {
    let count = u32::try_from(count).map_err(|_| Errno::OVERFLOW)?;
    let bytes = u32::try_from(bytes).map_err(|_| Errno::OVERFLOW)?;
    mem.write_u32(ret_count, count)?;
    mem.write_u32(ret_bytes, bytes)
}

impl WasiCtx {
    pub(crate) fn args_sizes_get(
        &self,
        mem: &mut Mem<'_>,
        ret_count: u32,
        ret_bytes: u32,
    ) -> WasiResult<()> {
        let bytes = self.args.iter().map(|a| a.len() + 1).sum();
        sizes(mem, self.args.len(), bytes, ret_count, ret_bytes)
    }

    pub(crate) fn args_get(&self, mem: &mut Mem<'_>, argv: u32, buf: u32) -> WasiResult<()> {
        let items = self.args.iter().map(|a| vec![a.as_bytes()]);
        write_strings(mem, argv, buf, items)
    }

    pub(crate) fn environ_sizes_get(
        &self,
        mem: &mut Mem<'_>,
        ret_count: u32,
        ret_bytes: u32,
    ) -> WasiResult<()> {
        let bytes = self.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        sizes(mem, self.env.len(), bytes, ret_count, ret_bytes)
    }

    pub(crate) fn environ_get(&self, mem: &mut Mem<'_>, environ: u32, buf: u32) -> WasiResult<()> {
        let items = self
            .env
            .iter()
            .map(|(k, v)| vec![k.as_bytes(), b"=".as_slice(), v.as_bytes()]);
        write_strings(mem, environ, buf, items)
    }
}

impl WasiCtx {
    pub(crate) fn clock_now(&self, id: u32) -> WasiResult<u64> {
        match id {
            CLOCK_REALTIME => realtime(),
            CLOCK_MONOTONIC => Ok(self.clocks.monotonic()),
            CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => Ok(self.clocks.cputime()),
            _ => Err(Errno::INVAL),
        }
    }

    pub(crate) fn clock_res_get(&self, mem: &mut Mem<'_>, id: u32, ret: u32) -> WasiResult<()> {
        if id > CLOCK_THREAD_CPUTIME {
            return Err(Errno::INVAL);
        }
        mem.write_u64(ret, 1)
    }

    pub(crate) fn clock_time_get(&self, mem: &mut Mem<'_>, id: u32, ret: u32) -> WasiResult<()> {
        let now = self.clock_now(id)?;
        mem.write_u64(ret, now)
    }
}

/// Fills the guest buffer in place; no host copy, so any length up to the
/// guest's memory size is fine.
pub(crate) fn random_get(mem: &mut Mem<'_>, buf: u32, len: u32) -> WasiResult<()> {
    let out = mem.bytes_mut(buf, len)?;
    let mut done = 0;
    while let Some(rest) = out.get_mut(done..).filter(|r| !r.is_empty()) {
        match rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
