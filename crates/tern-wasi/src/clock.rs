//! Clocks that keep running forward across a checkpoint: the guest's
//! monotonic and CPU-time clocks are host clocks plus an offset chosen at
//! restore time so that no reading after a resume is smaller than one before.
//! The `clock_*` imports that read them are in proc.rs, with the other
//! process-level imports, so that this stays below the context that holds it.

use crate::errno::{Errno, WasiResult};
use rustix::time::{clock_gettime, ClockId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(crate) struct Clocks {
    mono_base: Instant,
    mono_offset: u64,
    cpu_base: u64,
    cpu_offset: u64,
}

fn host_cputime() -> u64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Clocks {
    /// Clocks that start at the given readings (0 and 0 for a fresh run,
    /// the saved readings on resume).
    pub fn resume(monotonic_ns: u64, cputime_ns: u64) -> Self {
        Clocks {
            mono_base: Instant::now(),
            mono_offset: monotonic_ns,
            cpu_base: host_cputime(),
            cpu_offset: cputime_ns,
        }
    }

    pub fn new() -> Self {
        Clocks::resume(0, 0)
    }

    pub fn monotonic(&self) -> u64 {
        self.mono_offset
            .saturating_add(saturating_nanos(self.mono_base.elapsed()))
    }

    pub fn cputime(&self) -> u64 {
        self.cpu_offset
            .saturating_add(host_cputime().saturating_sub(self.cpu_base))
    }

    /// The host instant at which the guest's monotonic clock reads `deadline`.
    pub fn instant_at(&self, deadline: u64) -> Instant {
        let wait = deadline.saturating_sub(self.monotonic());
        far_future(Instant::now(), Duration::from_nanos(wait))
    }
}

pub(crate) fn realtime() -> WasiResult<u64> {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Errno::OVERFLOW)?;
    u64::try_from(d.as_nanos()).map_err(|_| Errno::OVERFLOW)
}

/// `now + after`, clamped to a year (still "never" for a guest's purposes)
/// when the sum does not fit in an `Instant`.
pub(crate) fn far_future(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}
