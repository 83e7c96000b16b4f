//! Descriptor-level imports (`fd_*`) that never wait on the outside world.
//! Regular-file I/O goes straight to the OS with no host-side buffering, so
//! a checkpoint right after a call never loses or repeats bytes.

use crate::abi::*;
use crate::ctx::{Entry, Kind};
use crate::errno::{Errno, WasiResult};
use crate::mem::{read_into, Iov, Mem};
use crate::stat::{split_timestamp, write_fdstat, write_filestat, Filestat};
use crate::WasiCtx;
use cap_std::fs::Metadata;
use rustix::fs::{Timestamps, UTIME_NOW, UTIME_OMIT};
use rustix::time::Timespec;
use std::io::{Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::os::fd::AsFd;

/// Retries an OS call interrupted by a signal, as libc's callers would.
pub(crate) fn retry<R>(mut op: impl FnMut() -> std::io::Result<R>) -> WasiResult<R> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.map_err(Errno::from),
        }
    }
}

/// Builds the `futimens` argument from a WASI `fstflags` request.
pub(crate) fn timestamps(atim: u64, mtim: u64, fst: u16) -> WasiResult<Timestamps> {
    fn one(ts: u64, set: bool, now: bool) -> WasiResult<Timespec> {
        let (tv_sec, tv_nsec) = match (set, now) {
            (true, true) => return Err(Errno::INVAL),
            (true, false) => split_timestamp(ts),
            (false, true) => (0, UTIME_NOW),
            (false, false) => (0, UTIME_OMIT),
        };
        Ok(Timespec { tv_sec, tv_nsec })
    }
    if fst & !FSTFLAGS_ALL != 0 {
        return Err(Errno::INVAL);
    }
    Ok(Timestamps {
        last_access: one(atim, fst & FSTFLAGS_ATIM != 0, fst & FSTFLAGS_ATIM_NOW != 0)?,
        last_modification: one(mtim, fst & FSTFLAGS_MTIM != 0, fst & FSTFLAGS_MTIM_NOW != 0)?,
    })
}

fn seekable(entry: &Entry) -> WasiResult<&std::fs::File> {
    match &entry.kind {
        Kind::File(f) => Ok(&f.file),
        Kind::Stdin | Kind::Stdout | Kind::Stderr => Err(Errno::SPIPE),
        Kind::Listener { .. } | Kind::Stream { .. } => Err(Errno::SPIPE),
        Kind::Dir(_) => Err(Errno::BADF),
    }
}

/// Writes to process stdout/stderr directly (no std `LineWriter`), waiting
/// out EAGAIN in case the host's descriptor was left non-blocking.
pub(crate) fn write_stdio(
    fd: std::os::fd::BorrowedFd<'_>,
    mem: &Mem<'_>,
    iovs: &[Iov],
) -> WasiResult<usize> {
    let slices = mem.io_slices(iovs)?;
    loop {
        match rustix::io::writev(fd, &slices) {
            Ok(n) => return Ok(n),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::AGAIN => crate::poll::wait_writable(fd)?,
            Err(e) => return Err(e.into()),
        }
    }
}

impl WasiCtx {
    pub(crate) fn fd_fdstat_get(&self, mem: &mut Mem<'_>, fd: u32, ret: u32) -> WasiResult<()> {
        let e = self.entry(fd)?;
        let filetype = match &e.kind {
            Kind::Stdin => self.stdio_filetype(0),
            Kind::Stdout => self.stdio_filetype(1),
            Kind::Stderr => self.stdio_filetype(2),
            Kind::Dir(_) => FILETYPE_DIRECTORY,
            Kind::File(f) => crate::stat::filetype(Metadata::from_file(&f.file)?.file_type()),
            Kind::Listener { .. } | Kind::Stream { .. } => FILETYPE_SOCKET_STREAM,
        };
        write_fdstat(
            mem,
            ret,
            filetype,
            e.fdflags,
            e.rights_base,
            e.rights_inheriting,
        )
    }

    /// Like wasmtime: a terminal is a character device, anything else on
    /// stdio is "unknown", which is what makes `isatty()` agree with it.
    fn stdio_filetype(&self, n: usize) -> u8 {
        match self.tty.get(n) {
            Some(true) => FILETYPE_CHARACTER_DEVICE,
            _ => FILETYPE_UNKNOWN,
        }
    }

    pub(crate) fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> WasiResult<()> {
        if flags & !FDFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        let e = self.entry_mut(fd)?;
        // The sync modes are fixed at open time on Linux (F_SETFL ignores
        // them), so only a request that keeps them unchanged can succeed.
        if (flags ^ e.fdflags) & FDFLAGS_SYNCS != 0 {
            return Err(Errno::INVAL);
        }
        match &e.kind {
            Kind::Dir(_) => return Err(Errno::BADF),
            Kind::File(f) => {
                let mut os = rustix::fs::fcntl_getfl(&f.file)?;
                os.set(rustix::fs::OFlags::APPEND, flags & FDFLAGS_APPEND != 0);
                rustix::fs::fcntl_setfl(&f.file, os)?;
            }
            // Non-blocking mode of stdio and sockets is emulated in the host.
            _ => {}
        }
        e.fdflags = flags;
        Ok(())
    }

    pub(crate) fn fd_fdstat_set_rights(
        &mut self,
        fd: u32,
        base: u64,
        inheriting: u64,
    ) -> WasiResult<()> {
        let e = self.entry_mut(fd)?;
        if base & !e.rights_base != 0 || inheriting & !e.rights_inheriting != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        e.rights_base = base;
        e.rights_inheriting = inheriting;
        Ok(())
    }

    pub(crate) fn fd_filestat_get(&self, mem: &mut Mem<'_>, fd: u32, ret: u32) -> WasiResult<()> {
        let st = match &self.entry(fd)?.kind {
            Kind::Stdin => Filestat {
                filetype: self.stdio_filetype(0),
                ..Filestat::default()
            },
            Kind::Stdout => Filestat {
                filetype: self.stdio_filetype(1),
                ..Filestat::default()
            },
            Kind::Stderr => Filestat {
                filetype: self.stdio_filetype(2),
                ..Filestat::default()
            },
            Kind::File(f) => Filestat::from(&Metadata::from_file(&f.file)?),
            Kind::Dir(d) => Filestat::from(&d.dir.dir_metadata()?),
            Kind::Listener { .. } | Kind::Stream { .. } => Filestat {
                filetype: FILETYPE_SOCKET_STREAM,
                ..Filestat::default()
            },
        };
        write_filestat(mem, ret, &st)
    }

    pub(crate) fn fd_filestat_set_size(&self, fd: u32, size: u64) -> WasiResult<()> {
        let f = self.file(fd)?;
        retry(|| f.file.set_len(size))
    }

    pub(crate) fn fd_filestat_set_times(
        &self,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> WasiResult<()> {
        let times = timestamps(atim, mtim, fst)?;
        let fd = match &self.entry(fd)?.kind {
            Kind::File(f) => f.file.as_fd(),
            Kind::Dir(d) => d.dir.as_fd(),
            _ => return Err(Errno::BADF),
        };
        Ok(rustix::fs::futimens(fd, &times)?)
    }

    pub(crate) fn fd_advise(&self, fd: u32, offset: u64, len: u64, advice: u8) -> WasiResult<()> {
        use rustix::fs::Advice;
        let advice = match advice {
            0 => Advice::Normal,
            1 => Advice::Sequential,
            2 => Advice::Random,
            3 => Advice::WillNeed,
            4 => Advice::DontNeed,
            ADVICE_NOREUSE => Advice::NoReuse,
            _ => return Err(Errno::INVAL),
        };
        let f = self.file(fd)?;
        Ok(rustix::fs::fadvise(
            &f.file,
            offset,
            NonZeroU64::new(len),
            advice,
        )?)
    }

    /// Emulates `posix_fallocate` by growing the file, which is what libc
    /// falls back to on filesystems without native preallocation.
    pub(crate) fn fd_allocate(&self, fd: u32, offset: u64, len: u64) -> WasiResult<()> {
        let f = self.file(fd)?;
        let end = offset.checked_add(len).ok_or(Errno::FBIG)?;
        if i64::try_from(end).is_err() {
            return Err(Errno::FBIG);
        }
        let size = Metadata::from_file(&f.file)?.len();
        if end > size {
            retry(|| f.file.set_len(end))?;
        }
        Ok(())
    }

    pub(crate) fn fd_sync(&self, fd: u32, data_only: bool) -> WasiResult<()> {
        let fd = match &self.entry(fd)?.kind {
            Kind::File(f) => f.file.as_fd(),
            Kind::Dir(d) => d.dir.as_fd(),
            _ => return Err(Errno::BADF),
        };
        let r = if data_only {
            rustix::fs::fdatasync(fd)
        } else {
            rustix::fs::fsync(fd)
        };
        Ok(r?)
    }

    pub(crate) fn fd_seek(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        offset: i64,
        whence: u8,
        ret: u32,
    ) -> WasiResult<()> {
        let mut file = seekable(self.entry(fd)?)?;
        let pos = match whence {
            WHENCE_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::INVAL)?),
            WHENCE_CUR => SeekFrom::Current(offset),
            WHENCE_END => SeekFrom::End(offset),
            _ => return Err(Errno::INVAL),
        };
        mem.check(ret, 8)?;
        let new = retry(|| file.seek(pos))?;
        mem.write_u64(ret, new)
    }

    pub(crate) fn fd_tell(&self, mem: &mut Mem<'_>, fd: u32, ret: u32) -> WasiResult<()> {
        let mut file = seekable(self.entry(fd)?)?;
        let pos = retry(|| file.stream_position())?;
        mem.write_u64(ret, pos)
    }

    /// `fd_read` on a regular file; the blocking kinds go through poll.rs.
    pub(crate) fn read_file(&self, mem: &mut Mem<'_>, fd: u32, iovs: &[Iov]) -> WasiResult<usize> {
        let mut file = &self.file(fd)?.file;
        read_into(mem, iovs, |buf| retry(|| file.read(buf)))
    }

    pub(crate) fn fd_pread(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        iovs: &[Iov],
        offset: u64,
    ) -> WasiResult<usize> {
        let file = seekable(self.entry(fd)?)?;
        read_into(mem, iovs, |buf| {
            retry(|| rustix::io::pread(file, &mut *buf, offset).map_err(Into::into))
        })
    }

    pub(crate) fn fd_pwrite(
        &self,
        mem: &Mem<'_>,
        fd: u32,
        iovs: &[Iov],
        offset: u64,
    ) -> WasiResult<usize> {
        let file = seekable(self.entry(fd)?)?;
        let slices = mem.io_slices(iovs)?;
        retry(|| rustix::io::pwritev(file, &slices, offset).map_err(Into::into))
    }

    pub(crate) fn fd_write(&self, mem: &Mem<'_>, fd: u32, iovs: &[Iov]) -> WasiResult<usize> {
        let e = self.entry(fd)?;
        match &e.kind {
            Kind::Stdout => write_stdio(rustix::stdio::stdout(), mem, iovs),
            Kind::Stderr => write_stdio(rustix::stdio::stderr(), mem, iovs),
            Kind::File(f) => {
                let slices = mem.io_slices(iovs)?;
                let mut file = &f.file;
                retry(|| file.write_vectored(&slices))
            }
            Kind::Stream { sock } => crate::sock::send(sock, mem, iovs, e.nonblocking()),
            Kind::Listener { .. } => Err(Errno::NOTCONN),
            Kind::Stdin | Kind::Dir(_) => Err(Errno::BADF),
        }
    }
}
