//! Waiting: the slice loop shared by every blocking import, and
//! `poll_oneoff`. No import ever sleeps longer than [`SLICE`] between checks
//! of `capture_requested()`, and an abandoned call leaves no trace.

use crate::abi::*;
use crate::clock::{far_future, realtime};
use crate::ctx::{InterruptedWait, Kind};
use crate::embedder::{BlockingHooks, WasiView};
use crate::errno::{Errno, WasiResult};
use crate::mem::Mem;
use crate::WasiCtx;
use rustix::event::{PollFd, PollFlags};
use std::io::Seek;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Caller, Memory};

/// Longest uninterrupted wait; the runtime relies on hearing back this often.
pub(crate) const SLICE: Duration = Duration::from_millis(5);
/// More subscriptions than any real program uses; bounds host allocation.
const MAX_SUBSCRIPTIONS: u32 = 1 << 16;

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

thread_local! {
    /// The runtime's wake descriptor while a blocking import runs on this thread (see
    /// [`block`]): every wait also watches it, so a capture request ends the wait at once.
    static WAKE: std::cell::RefCell<Option<Arc<OwnedFd>>> = const { std::cell::RefCell::new(None) };
}

/// With a wake descriptor, waits only need a safety-net timeout.
const WOKEN_SLICE: Duration = Duration::from_millis(500);

/// poll(2) over `fds` (plus the wake descriptor, if any) that treats EINTR as "nothing ready
/// yet"; returns each descriptor's events.
pub(crate) fn poll_fds(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    timeout: Duration,
) -> WasiResult<Vec<PollFlags>> {
    let wake = WAKE.with(|w| w.borrow().clone());
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(fd, events)| PollFd::from_borrowed_fd(fd, events))
        .collect();
    if let Some(w) = &wake {
        pollfds.push(PollFd::new(w.as_ref(), PollFlags::IN));
    }
    match rustix::event::poll(&mut pollfds, Some(&timespec(timeout))) {
        Ok(_) => {}
        Err(e) if e == rustix::io::Errno::INTR => {}
        Err(e) => return Err(e.into()),
    }
    Ok(pollfds
        .iter()
        .take(fds.len())
        .map(|p| p.revents())
        .collect())
}

/// Waits up to `timeout` for `events` on one descriptor; returns what fired.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Duration,
) -> WasiResult<PollFlags> {
    Ok(poll_fds(&[(fd, events)], timeout)?
        .pop()
        .unwrap_or(PollFlags::empty()))
}

/// Sleep up to `timeout`, or until a capture request wakes the thread.
pub(crate) fn nap(timeout: Duration) -> WasiResult<()> {
    poll_fds(&[], timeout).map(|_| ())
}

/// For writes the guest expects to block: not interruptible, since only
/// the reading side of I/O is declared as blocking to the runtime.
pub(crate) fn wait_writable(fd: BorrowedFd<'_>) -> WasiResult<()> {
    poll_one(fd, PollFlags::OUT, SLICE).map(|_| ())
}

/// Runs `step` until it yields a result, first with a zero timeout and then
/// with [`SLICE`]-long waits, checking for a capture request in between.
/// `step` must have no side effect when it returns `Ok(None)`. Returns
/// `None` if the call was abandoned (after `on_interrupt` ran).
pub(crate) fn block<T: WasiView, R>(
    caller: &mut Caller<'_, T>,
    memory: Memory,
    hooks: &BlockingHooks<T>,
    mut step: impl FnMut(&mut Mem<'_>, &mut WasiCtx, Duration) -> WasiResult<Option<R>>,
) -> wasmtime::Result<Option<WasiResult<R>>> {
    let wake = caller.data().wake_fd();
    let slice = if wake.is_some() { WOKEN_SLICE } else { SLICE };
    /// Clears the thread's wake descriptor however the call ends.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            WAKE.with(|w| *w.borrow_mut() = None);
        }
    }
    WAKE.with(|w| *w.borrow_mut() = wake);
    let _reset = Reset;
    let mut timeout = Duration::ZERO;
    loop {
        let (bytes, data) = memory.data_and_store_mut(&mut *caller);
        match step(&mut Mem::new(bytes), data.wasi(), timeout) {
            Ok(None) => {}
            Ok(Some(r)) => return Ok(Some(Ok(r))),
            Err(e) => return Ok(Some(Err(e))),
        }
        if caller.data().capture_requested() {
            (hooks.on_interrupt)(caller)?;
            return Ok(None);
        }
        timeout = slice;
    }
}

enum What {
    Clock(Instant),
    Read(u32),
    Write(u32),
}

struct Sub {
    userdata: u64,
    what: What,
    /// A relative timer's deadline on the guest's monotonic clock (kept across a capture).
    deadline: Option<u64>,
}

/// A fired subscription: (index, nbytes, eventrwflags).
type Fired = (usize, u64, u16);

fn check_fd(ctx: &WasiCtx, fd: u32, write: bool) -> WasiResult<()> {
    match (&ctx.entry(fd)?.kind, write) {
        (Kind::Stdin, false) | (Kind::Stdout | Kind::Stderr, true) => Ok(()),
        (Kind::File(_) | Kind::Stream { .. }, _) | (Kind::Listener { .. }, false) => Ok(()),
        _ => Err(Errno::BADF),
    }
}

/// The subscriptions at `ptr`. `resumed` holds the deadlines of the same wait given up for a
/// capture, if this is that wait called again: its relative timers keep them.
fn parse(
    ctx: &WasiCtx,
    mem: &Mem<'_>,
    ptr: u32,
    n: u32,
    resumed: Option<&[Option<u64>]>,
) -> WasiResult<Vec<Sub>> {
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(Errno::INVAL);
    }
    mem.check(ptr, n * SUBSCRIPTION_SIZE)?;
    let now = Instant::now();
    let mut subs = Vec::new();
    for i in 0..n {
        let at = ptr + i * SUBSCRIPTION_SIZE;
        let userdata = mem.read_u64(at)?;
        let mut deadline = None;
        let what = match mem.read_u8(at + 8)? {
            EVENTTYPE_CLOCK => {
                let id = mem.read_u32(at + 16)?;
                let timeout = mem.read_u64(at + 24)?;
                let flags = mem.read_u16(at + 40)?;
                if flags & !SUBCLOCK_ABSTIME != 0 {
                    return Err(Errno::INVAL);
                }
                let absolute = flags & SUBCLOCK_ABSTIME != 0;
                let instant = match (id, absolute) {
                    (CLOCK_MONOTONIC, true) => ctx.clocks.instant_at(timeout),
                    (CLOCK_REALTIME, true) => far_future(
                        now,
                        Duration::from_nanos(timeout.saturating_sub(realtime()?)),
                    ),
                    (CLOCK_MONOTONIC | CLOCK_REALTIME, false) => {
                        let kept = resumed.and_then(|d| d.get(i as usize).copied().flatten());
                        let at =
                            kept.unwrap_or_else(|| ctx.clocks.monotonic().saturating_add(timeout));
                        deadline = Some(at);
                        ctx.clocks.instant_at(at)
                    }
                    _ => return Err(Errno::INVAL),
                };
                What::Clock(instant)
            }
            t @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
                let fd = mem.read_u32(at + 16)?;
                let write = t == EVENTTYPE_FD_WRITE;
                check_fd(ctx, fd, write)?;
                if write {
                    What::Write(fd)
                } else {
                    What::Read(fd)
                }
            }
            _ => return Err(Errno::INVAL),
        };
        subs.push(Sub {
            userdata,
            what,
            deadline,
        });
    }
    Ok(subs)
}

fn file_available(file: &std::fs::File) -> u64 {
    let mut f = file;
    let pos = f.stream_position().unwrap_or(0);
    let size = cap_std::fs::Metadata::from_file(file).map_or(0, |m| m.len());
    size.saturating_sub(pos)
}

fn pending_bytes(fd: BorrowedFd<'_>) -> u64 {
    rustix::io::ioctl_fionread(fd).unwrap_or(1)
}

/// One readiness pass over all subscriptions, waiting at most `timeout`.
fn gather(ctx: &WasiCtx, subs: &[Sub], timeout: Duration) -> WasiResult<Vec<Fired>> {
    let mut fired = Vec::new();
    let mut waits: Vec<(usize, BorrowedFd<'_>, bool)> = Vec::new();
    let mut earliest: Option<Instant> = None;
    for (i, sub) in subs.iter().enumerate() {
        let (fd, write) = match sub.what {
            What::Clock(d) => {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
                continue;
            }
            What::Read(fd) => (fd, false),
            What::Write(fd) => (fd, true),
        };
        match &ctx.entry(fd)?.kind {
            Kind::File(f) if !write => fired.push((i, file_available(&f.file), 0)),
            Kind::File(_) | Kind::Stdout | Kind::Stderr => fired.push((i, 1, 0)),
            Kind::Stdin => waits.push((i, rustix::stdio::stdin(), write)),
            Kind::Stream { sock } => waits.push((i, sock.as_fd(), write)),
            Kind::Listener { sock, .. } => waits.push((i, sock.as_fd(), write)),
            Kind::Dir(_) => return Err(Errno::BADF),
        }
    }
    let now = Instant::now();
    let mut wait = timeout;
    if let Some(e) = earliest {
        wait = wait.min(e.saturating_duration_since(now));
    }
    if !fired.is_empty() {
        wait = Duration::ZERO;
    }
    let asked: Vec<(BorrowedFd<'_>, PollFlags)> = waits
        .iter()
        .map(|&(_, fd, write)| (fd, if write { PollFlags::OUT } else { PollFlags::IN }))
        .collect();
    let revents = poll_fds(&asked, wait)?;
    for (&rev, &(i, fd, write)) in revents.iter().zip(&waits) {
        if rev.is_empty() {
            continue;
        }
        let hup = rev.intersects(PollFlags::HUP | PollFlags::ERR);
        let flags = if hup { EVENTRWFLAGS_HANGUP } else { 0 };
        let nbytes = if write { 1 } else { pending_bytes(fd) };
        fired.push((i, nbytes, flags));
    }
    let now = Instant::now();
    for (i, sub) in subs.iter().enumerate() {
        if matches!(sub.what, What::Clock(d) if d <= now) {
            fired.push((i, 0, 0));
        }
    }
    fired.sort_unstable_by_key(|f| f.0);
    Ok(fired)
}

fn write_event(mem: &mut Mem<'_>, at: u32, sub: &Sub, nbytes: u64, flags: u16) -> WasiResult<()> {
    let kind = match sub.what {
        What::Clock(_) => EVENTTYPE_CLOCK,
        What::Read(_) => EVENTTYPE_FD_READ,
        What::Write(_) => EVENTTYPE_FD_WRITE,
    };
    let mut buf = [0u8; EVENT_SIZE as usize];
    buf[0..8].copy_from_slice(&sub.userdata.to_le_bytes());
    buf[10] = kind;
    buf[16..24].copy_from_slice(&nbytes.to_le_bytes());
    buf[24..26].copy_from_slice(&flags.to_le_bytes());
    mem.write(at, &buf)
}

/// `poll_oneoff`: validates everything up front (so that an interrupted
/// call has written nothing), then waits in slices until something fires.
pub(crate) fn poll_oneoff<T: WasiView>(
    caller: &mut Caller<'_, T>,
    memory: Memory,
    hooks: &BlockingHooks<T>,
    subs_ptr: u32,
    events_ptr: u32,
    n: u32,
    ret: u32,
) -> wasmtime::Result<WasiResult<()>> {
    let (subs, raw) = {
        let (bytes, data) = memory.data_and_store_mut(&mut *caller);
        let mem = Mem::new(bytes);
        let ctx = data.wasi();
        // Only the very next call can be the interrupted one, called again.
        let interrupted = ctx.interrupted_wait.take();
        let checked = parse_raw(&mem, subs_ptr, n).and_then(|raw| {
            let resumed = interrupted
                .as_ref()
                .filter(|w| w.subscriptions == raw)
                .map(|w| w.deadlines.as_slice());
            let subs = parse(ctx, &mem, subs_ptr, n, resumed)?;
            mem.check(events_ptr, n.saturating_mul(EVENT_SIZE))?;
            mem.check(ret, 4)?;
            Ok((subs, raw))
        });
        match checked {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        }
    };
    let done = block(caller, memory, hooks, |mem, ctx, timeout| {
        let fired = gather(ctx, &subs, timeout)?;
        if fired.is_empty() {
            return Ok(None);
        }
        let mut at = events_ptr;
        for &(i, nbytes, flags) in &fired {
            let sub = subs.get(i).ok_or(Errno::INVAL)?;
            write_event(mem, at, sub, nbytes, flags)?;
            at = at.wrapping_add(EVENT_SIZE);
        }
        let count = u32::try_from(fired.len()).map_err(|_| Errno::OVERFLOW)?;
        mem.write_u32(ret, count)?;
        Ok(Some(()))
    })?;
    match done {
        Some(result) => Ok(result),
        None => {
            caller.data_mut().wasi().interrupted_wait = Some(InterruptedWait {
                subscriptions: raw,
                deadlines: subs.iter().map(|s| s.deadline).collect(),
            });
            Ok(Ok(()))
        }
    }
}

/// The subscriptions' bytes, after the same bounds checks `parse` makes.
fn parse_raw(mem: &Mem<'_>, ptr: u32, n: u32) -> WasiResult<Vec<u8>> {
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(Errno::INVAL);
    }
    Ok(mem.bytes(ptr, n * SUBSCRIPTION_SIZE)?.to_vec())
}
