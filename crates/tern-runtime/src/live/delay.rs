//! A link's made-up delay (`MigrateOptions::link_delay`), so that a cluster on one machine
//! moves workloads as a spread-out one would: the source's connection, wrapped, waits out the
//! delay whenever it turns from sending to waiting for an answer, which is once per round trip
//! of the protocol, whatever frames make it up.
//!
//! The files' exchanges (two round trips a pass, one pass before pre-copy and one while the
//! program is paused) have never been charged a delay: the move's documented cost is the
//! hello's, the sync's and the ready's round trips, and a pause that includes one round trip.
//! They run with the delay [`suspended`](Delayed::suspend).

use std::io::{IoSlice, Read, Write};
use std::time::Duration;

/// A connection that waits `delay` before the first read after a write.
pub(super) struct Delayed<S> {
    inner: S,
    delay: Duration,
    /// Written since the last read: the next read waits for an answer.
    wrote: bool,
    /// Round trips cost nothing for now.
    suspended: bool,
}

impl<S> Delayed<S> {
    pub(super) fn new(inner: S, delay: Duration) -> Self {
        Delayed {
            inner,
            delay,
            wrote: false,
            suspended: false,
        }
    }

    pub(super) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Round trips from now on cost nothing (true) or the delay again (false).
    pub(super) fn suspend(&mut self, suspended: bool) {
        self.suspended = suspended;
    }
}

impl<S: Read> Read for Delayed<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.wrote) && !self.suspended && !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Delayed<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wrote = true;
        self.inner.write(buf)
    }

    // Frames go out in one `writev` each: this must not fall back to one write per slice.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.wrote = true;
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Reads answer with zeros; writes and vectored writes are counted.
    #[derive(Default)]
    struct Peer {
        writes: usize,
    }

    impl Read for Peer {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    impl Write for Peer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            self.writes += 1;
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const DELAY: Duration = Duration::from_millis(100);

    /// How many delays `f` waited out (the test's own work takes far less than one).
    fn delays(link: &mut Delayed<Peer>, f: impl FnOnce(&mut Delayed<Peer>)) -> u32 {
        let t = Instant::now();
        f(link);
        (t.elapsed().as_secs_f64() / DELAY.as_secs_f64()) as u32
    }

    #[test]
    fn one_delay_per_turn_from_sending_to_reading() {
        let mut link = Delayed::new(Peer::default(), DELAY);
        let mut buf = [0u8; 8];
        // Reads with nothing sent before, and further reads of the same answer, cost nothing.
        assert_eq!(delays(&mut link, |l| l.read_exact(&mut buf).unwrap()), 0);
        // A request of several writes, then its answer in several reads: one delay.
        let n = delays(&mut link, |l| {
            l.write_all(b"request").unwrap();
            let n = l.write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b"b")]);
            assert_eq!(n.unwrap(), 2);
            l.flush().unwrap();
            for _ in 0..3 {
                l.read_exact(&mut buf).unwrap();
            }
        });
        assert_eq!(n, 1);
        // Two round trips: two delays.
        let n = delays(&mut link, |l| {
            for _ in 0..2 {
                l.write_all(b"x").unwrap();
                l.read_exact(&mut buf).unwrap();
            }
        });
        assert_eq!(n, 2);
        // A vectored write reaches the connection as one.
        assert_eq!(link.get_mut().writes, 4);
    }

    #[test]
    fn suspended_round_trips_cost_nothing() {
        let mut link = Delayed::new(Peer::default(), DELAY);
        let mut buf = [0u8; 8];
        link.suspend(true);
        let n = delays(&mut link, |l| {
            for _ in 0..3 {
                l.write_all(b"x").unwrap();
                l.read_exact(&mut buf).unwrap();
            }
        });
        assert_eq!(n, 0);
        link.suspend(false);
        let n = delays(&mut link, |l| {
            l.write_all(b"x").unwrap();
            l.read_exact(&mut buf).unwrap();
        });
        assert_eq!(n, 1);
    }
}
