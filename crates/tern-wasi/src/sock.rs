//! Sockets: pre-opened listeners and the connections accepted from them.
//! Host sockets are always non-blocking; a guest that asked for blocking
//! behaviour gets it from the slice loop in poll.rs, so a checkpoint can
//! interrupt `sock_accept`/`sock_recv`/`fd_read` without losing data.

use crate::abi::*;
use crate::ctx::{Entry, Kind};
use crate::errno::{Errno, WasiResult};
use crate::mem::{read_into, total_len, Iov, Mem};
use crate::poll::{poll_one, wait_writable};
use crate::WasiCtx;
use rustix::event::PollFlags;
use rustix::net::{RecvFlags, SendFlags, Shutdown};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

/// Sends the first non-empty buffer (a legal partial write). MSG_NOSIGNAL
/// turns a closed peer into EPIPE instead of killing the host process.
pub(crate) fn send(
    sock: &TcpStream,
    mem: &Mem<'_>,
    iovs: &[Iov],
    nonblocking: bool,
) -> WasiResult<usize> {
    let buf = match iovs.first() {
        Some(iov) => mem.bytes(iov.ptr, iov.len)?,
        None => &[],
    };
    loop {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::AGAIN && !nonblocking => wait_writable(sock.as_fd())?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One attempt at receiving: `Ok(None)` means "would block" (after waiting
/// up to `timeout`), with nothing consumed.
pub(crate) fn try_recv(
    sock: &TcpStream,
    mem: &mut Mem<'_>,
    iovs: &[Iov],
    riflags: u16,
    nonblocking: bool,
    timeout: Duration,
) -> WasiResult<Option<usize>> {
    let peek = riflags & RIFLAGS_PEEK != 0;
    if riflags & RIFLAGS_WAITALL != 0 && !nonblocking && !peek {
        // MSG_WAITALL would block inside the kernel where no capture request
        // can reach it; instead wait until the whole request is buffered
        // (or the peer has finished sending) and then take it in one go.
        let want = u64::try_from(total_len(iovs)).unwrap_or(u64::MAX);
        let have = rustix::io::ioctl_fionread(sock)?;
        if have < want {
            let ev = poll_one(
                sock.as_fd(),
                PollFlags::IN | PollFlags::RDHUP,
                Duration::ZERO,
            )?;
            let closed = ev.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR);
            if !closed {
                // Readable already (have > 0) makes poll useless for waiting.
                if have > 0 {
                    // More data arriving cannot be polled for: look again soon.
                    crate::poll::nap(timeout.min(crate::poll::SLICE))?;
                } else {
                    poll_one(sock.as_fd(), PollFlags::IN | PollFlags::RDHUP, timeout)?;
                }
                return Ok(None);
            }
        }
        return recv_now(sock, mem, iovs, RecvFlags::empty()).map(Some);
    }
    let flags = if peek {
        RecvFlags::PEEK
    } else {
        RecvFlags::empty()
    };
    match recv_now(sock, mem, iovs, flags) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN) if nonblocking => Err(Errno::AGAIN),
        Err(Errno::AGAIN) => {
            poll_one(sock.as_fd(), PollFlags::IN, timeout)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn recv_now(
    sock: &TcpStream,
    mem: &mut Mem<'_>,
    iovs: &[Iov],
    flags: RecvFlags,
) -> WasiResult<usize> {
    read_into(mem, iovs, |buf| loop {
        match rustix::net::recv(sock, &mut *buf, flags) {
            Ok((n, _)) => return Ok(n),
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    })
}

impl WasiCtx {
    fn stream(&self, fd: u32) -> WasiResult<(&TcpStream, bool)> {
        let e = self.entry(fd)?;
        match &e.kind {
            Kind::Stream { sock } => Ok((sock, e.nonblocking())),
            Kind::Listener { .. } => Err(Errno::NOTCONN),
            _ => Err(Errno::NOTSOCK),
        }
    }

    pub(crate) fn sock_send(&self, mem: &Mem<'_>, fd: u32, iovs: &[Iov]) -> WasiResult<usize> {
        let (sock, nonblocking) = self.stream(fd)?;
        send(sock, mem, iovs, nonblocking)
    }

    pub(crate) fn sock_shutdown(&self, fd: u32, how: u8) -> WasiResult<()> {
        let how = match how {
            SDFLAGS_RD => Shutdown::Read,
            SDFLAGS_WR => Shutdown::Write,
            h if h == SDFLAGS_RD | SDFLAGS_WR => Shutdown::Both,
            _ => return Err(Errno::INVAL),
        };
        let (sock, _) = self.stream(fd)?;
        Ok(rustix::net::shutdown(sock, how)?)
    }

    /// One attempt at `sock_recv` (also used for `fd_read` on a stream).
    pub(crate) fn try_sock_recv(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        iovs: &[Iov],
        riflags: u16,
        timeout: Duration,
    ) -> WasiResult<Option<usize>> {
        if riflags & !(RIFLAGS_PEEK | RIFLAGS_WAITALL) != 0 {
            return Err(Errno::INVAL);
        }
        let (sock, nonblocking) = self.stream(fd)?;
        try_recv(sock, mem, iovs, riflags, nonblocking, timeout)
    }

    /// One attempt at `sock_accept`; the new stream inherits `flags`
    /// (only NONBLOCK is meaningful, as in `accept4`).
    pub(crate) fn try_sock_accept(
        &mut self,
        fd: u32,
        flags: u16,
        timeout: Duration,
    ) -> WasiResult<Option<u32>> {
        if flags & !FDFLAGS_NONBLOCK != 0 {
            return Err(Errno::INVAL);
        }
        let e = self.entry(fd)?;
        let nonblocking = e.nonblocking();
        let Kind::Listener { sock, .. } = &e.kind else {
            return Err(match e.kind {
                Kind::Stream { .. } => Errno::INVAL,
                _ => Errno::NOTSOCK,
            });
        };
        let stream = match sock.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if nonblocking {
                    return Err(Errno::AGAIN);
                }
                poll_one(sock.as_fd(), PollFlags::IN, timeout)?;
                return Ok(None);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        stream.set_nonblocking(true)?;
        // WASI gives a program no setsockopt: a service that writes a response in two
        // pieces would wait out the peer's delayed ACK (40 ms) on each request under Nagle.
        let _ = stream.set_nodelay(true);
        let entry = Entry::new(
            Kind::Stream { sock: stream },
            flags,
            RIGHTS_SOCKET,
            RIGHTS_SOCKET,
        );
        self.insert(entry).map(Some)
    }
}
