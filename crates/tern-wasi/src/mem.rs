//! Bounds-checked access to guest linear memory. Every pointer and length the
//! guest passes goes through here, so a hostile guest gets EFAULT instead of a
//! host panic, and no single call allocates more than [`MAX_IO`] bytes.

use crate::abi::IOVEC_SIZE;
use crate::errno::{Errno, WasiResult};
use std::io::IoSlice;
use std::ops::Range;

/// Upper bound for one host-side buffer; larger requests become partial
/// reads/writes, which every WASI caller must already handle.
pub(crate) const MAX_IO: usize = 64 << 20;
/// Linux rejects vectors longer than IOV_MAX (1024) with EINVAL; truncating
/// instead keeps the call a legal partial transfer.
pub(crate) const MAX_IOVS: usize = 1024;
/// No host path can be longer than this anyway (PATH_MAX is 4096), and it
/// bounds the copy cap-std makes of a guest path.
const MAX_PATH: u32 = 32 << 10;

/// One guest buffer of an `iovec` array, already bounds-checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Iov {
    pub ptr: u32,
    pub len: u32,
}

pub(crate) struct Mem<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Mem<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Mem { bytes }
    }

    fn range(&self, ptr: u32, len: u32) -> WasiResult<Range<usize>> {
        let start = usize::try_from(ptr).map_err(|_| Errno::FAULT)?;
        let len = usize::try_from(len).map_err(|_| Errno::FAULT)?;
        let end = start.checked_add(len).ok_or(Errno::FAULT)?;
        if end > self.bytes.len() {
            return Err(Errno::FAULT);
        }
        Ok(start..end)
    }

    pub fn check(&self, ptr: u32, len: u32) -> WasiResult<()> {
        self.range(ptr, len).map(|_| ())
    }

    pub fn bytes(&self, ptr: u32, len: u32) -> WasiResult<&[u8]> {
        let r = self.range(ptr, len)?;
        self.bytes.get(r).ok_or(Errno::FAULT)
    }

    pub fn bytes_mut(&mut self, ptr: u32, len: u32) -> WasiResult<&mut [u8]> {
        let r = self.range(ptr, len)?;
        self.bytes.get_mut(r).ok_or(Errno::FAULT)
    }

    fn array<const N: usize>(&self, ptr: u32) -> WasiResult<[u8; N]> {
        let len = u32::try_from(N).map_err(|_| Errno::FAULT)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(ptr, len)?);
        Ok(out)
    }

    pub fn read_u8(&self, ptr: u32) -> WasiResult<u8> {
        Ok(self.array::<1>(ptr)?[0])
    }

    pub fn read_u16(&self, ptr: u32) -> WasiResult<u16> {
        self.array(ptr).map(u16::from_le_bytes)
    }

    pub fn read_u32(&self, ptr: u32) -> WasiResult<u32> {
        self.array(ptr).map(u32::from_le_bytes)
    }

    pub fn read_u64(&self, ptr: u32) -> WasiResult<u64> {
        self.array(ptr).map(u64::from_le_bytes)
    }

    pub fn write(&mut self, ptr: u32, data: &[u8]) -> WasiResult<()> {
        let len = u32::try_from(data.len()).map_err(|_| Errno::FAULT)?;
        self.bytes_mut(ptr, len)?.copy_from_slice(data);
        Ok(())
    }

    pub fn write_u8(&mut self, ptr: u32, v: u8) -> WasiResult<()> {
        self.write(ptr, &[v])
    }

    pub fn write_u16(&mut self, ptr: u32, v: u16) -> WasiResult<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    pub fn write_u32(&mut self, ptr: u32, v: u32) -> WasiResult<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    pub fn write_u64(&mut self, ptr: u32, v: u64) -> WasiResult<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// A guest string used as a path: must be in bounds and valid UTF-8.
    pub fn path(&self, ptr: u32, len: u32) -> WasiResult<&str> {
        if len > MAX_PATH {
            return Err(Errno::NAMETOOLONG);
        }
        std::str::from_utf8(self.bytes(ptr, len)?).map_err(|_| Errno::ILSEQ)
    }

    /// Reads an `iovec` array, checking every buffer it will use. Empty
    /// buffers are dropped; the list is cut at [`MAX_IOVS`] entries and
    /// [`MAX_IO`] total bytes.
    pub fn iovecs(&self, ptr: u32, count: u32) -> WasiResult<Vec<Iov>> {
        let array_len = count.checked_mul(IOVEC_SIZE).ok_or(Errno::FAULT)?;
        self.check(ptr, array_len)?;
        let mut out = Vec::new();
        let mut total: usize = 0;
        for i in 0..count.min(MAX_IOVS as u32) {
            let at = ptr + i * IOVEC_SIZE;
            let buf = self.read_u32(at)?;
            let len = self.read_u32(at + 4)?;
            if len == 0 {
                continue;
            }
            self.check(buf, len)?;
            let room = MAX_IO - total;
            let len = len.min(u32::try_from(room).unwrap_or(u32::MAX));
            out.push(Iov { ptr: buf, len });
            total += len as usize;
            if total >= MAX_IO {
                break;
            }
        }
        Ok(out)
    }

    /// Borrowed views of already-checked buffers, for vectored writes.
    pub fn io_slices(&self, iovs: &[Iov]) -> WasiResult<Vec<IoSlice<'_>>> {
        iovs.iter()
            .map(|iov| self.bytes(iov.ptr, iov.len).map(IoSlice::new))
            .collect()
    }

    /// Copies `data` into consecutive guest buffers (after a host-side read).
    pub fn scatter(&mut self, iovs: &[Iov], mut data: &[u8]) -> WasiResult<()> {
        for iov in iovs {
            if data.is_empty() {
                break;
            }
            let n = data.len().min(iov.len as usize);
            let (head, tail) = data.split_at(n);
            self.write(iov.ptr, head)?;
            data = tail;
        }
        Ok(())
    }
}

/// Total length of checked buffers (at most [`MAX_IO`]).
pub(crate) fn total_len(iovs: &[Iov]) -> usize {
    iovs.iter().map(|i| i.len as usize).sum()
}

/// Runs `read` either straight into the single guest buffer or, when the
/// guest gave several (possibly overlapping) buffers, into one bounded host
/// buffer that is then scattered. Returns the number of bytes read.
pub(crate) fn read_into(
    mem: &mut Mem<'_>,
    iovs: &[Iov],
    read: impl FnOnce(&mut [u8]) -> WasiResult<usize>,
) -> WasiResult<usize> {
    match iovs {
        [] => read(&mut []),
        [one] => {
            let buf = mem.bytes_mut(one.ptr, one.len)?;
            let n = read(buf)?;
            Ok(n.min(one.len as usize))
        }
        many => {
            let mut buf = vec![0u8; total_len(many)];
            let n = read(&mut buf)?.min(buf.len());
            mem.scatter(many, buf.get(..n).unwrap_or_default())?;
            Ok(n)
        }
    }
}
