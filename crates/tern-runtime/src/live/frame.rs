//! The wire: frames of `kind u8 | length u32 | payload | crc32 u32` (little endian; the checksum
//! covers kind, length and payload), the small JSON messages some of them carry, and how a
//! failed read or write becomes a [`MigrationCause`]. Page and file frames are built in
//! `memory` and `files`.

use std::io::{IoSlice, Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tern_api::MigrationStep;

use crate::{Error, MigrationCause};

/// Sent in the hello; a destination speaking another version refuses.
pub(super) const PROTOCOL_VERSION: u32 = 1;
/// Largest frame payload accepted, so that a hostile peer cannot make us allocate at will.
pub(super) const MAX_FRAME: usize = 64 << 20;

pub(super) mod kind {
    pub const HELLO: u8 = 1;
    pub const ACCEPT: u8 = 2;
    pub const REFUSE: u8 = 3;
    pub const PAGES: u8 = 4;
    pub const ROUND_END: u8 = 5;
    pub const FINAL: u8 = 6;
    pub const READY: u8 = 7;
    pub const GO: u8 = 8;
    pub const ABORT: u8 = 9;
    pub const FAILED: u8 = 10;
    pub const SYNC: u8 = 11;
    pub const SYNCED: u8 = 12;
    pub const MANIFEST: u8 = 13;
    pub const NEEDS: u8 = 14;
    pub const FILE_DATA: u8 = 15;
    pub const FILES_DONE: u8 = 16;
    pub const FILES_SYNCED: u8 = 17;
}

/// The source's first frame: what it moves, for the destination to check against what it
/// prepared.
#[derive(Serialize, Deserialize)]
pub(super) struct Hello {
    pub(super) version: u32,
    pub(super) module_digest: String,
    pub(super) transform_version: u32,
    pub(super) memories: Vec<u32>,
    /// Bytes of each memory when the migration starts, for the destination to prepare.
    #[serde(default)]
    pub(super) sizes: Vec<u64>,
}

/// The payload of a refuse, failed or abort frame.
#[derive(Serialize, Deserialize)]
pub(super) struct Reason {
    pub(super) reason: String,
}

impl Reason {
    pub(super) fn encode(reason: &str) -> Vec<u8> {
        serde_json::to_vec(&Reason {
            reason: reason.into(),
        })
        .unwrap_or_default()
    }

    pub(super) fn decode(payload: &[u8]) -> Caused<String> {
        let r: Reason = serde_json::from_slice(payload).map_err(proto)?;
        Ok(r.reason)
    }
}

/// A result whose failure is not charged to a step yet: the code that knows the step does it
/// with [`At::at`].
pub(crate) type Caused<T> = std::result::Result<T, MigrationCause>;

/// A migration's failure, with the step it happened in (`Error::Migration`'s fields).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) step: MigrationStep,
    pub(crate) cause: MigrationCause,
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Error {
        Error::Migration {
            step: f.step,
            cause: f.cause,
        }
    }
}

/// Charge a cause to the step it happened in.
pub(crate) trait At<T> {
    fn at(self, step: MigrationStep) -> std::result::Result<T, Failed>;
}

impl<T> At<T> for Caused<T> {
    fn at(self, step: MigrationStep) -> std::result::Result<T, Failed> {
        self.map_err(|cause| Failed { step, cause })
    }
}

/// Anything malformed: the text says what.
pub(super) fn proto(what: impl std::fmt::Display) -> MigrationCause {
    MigrationCause::Protocol(what.to_string())
}

/// A failed read or write while `doing` something: the peer's end and its silence (the
/// connection's timeout) are told apart from other errors.
pub(super) fn io_err(doing: &'static str) -> impl Fn(std::io::Error) -> MigrationCause {
    use std::io::ErrorKind;
    move |e| match e.kind() {
        ErrorKind::UnexpectedEof => MigrationCause::Closed { doing },
        ErrorKind::WouldBlock | ErrorKind::TimedOut => MigrationCause::TimedOut { doing },
        _ => MigrationCause::Io { doing, source: e },
    }
}

/// Writes frames, counting bytes and keeping to a bandwidth limit.
pub(super) struct FrameWriter<W: Write> {
    pub(super) w: W,
    bandwidth: Option<u64>,
    started: Instant,
    sent: u64,
}

impl<W: Write> FrameWriter<W> {
    pub(super) fn new(w: W, bandwidth: Option<u64>) -> Self {
        FrameWriter {
            w,
            bandwidth,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Write one frame whose payload is `parts`, in one write; returns its bytes on the wire.
    pub(super) fn frame(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<u64> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(len as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        for p in parts {
            crc.update(p);
        }
        let sum = crc.finalize().to_le_bytes();
        // One write for the whole frame: small separate writes would each become a segment.
        let mut slices = Vec::with_capacity(parts.len() + 2);
        slices.push(IoSlice::new(&head));
        slices.extend(parts.iter().map(|p| IoSlice::new(p)));
        slices.push(IoSlice::new(&sum));
        write_all_vectored(&mut self.w, &mut slices)?;
        let n = (head.len() + len + 4) as u64;
        self.sent += n;
        if let Some(limit) = self.bandwidth.filter(|b| *b > 0) {
            let due = Duration::from_secs_f64(self.sent as f64 / limit as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(n)
    }

    /// A frame, then a flush: the last before this side waits for an answer.
    pub(super) fn send(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<u64> {
        let n = self.frame(kind, parts)?;
        self.w.flush()?;
        Ok(n)
    }
}

/// `Write::write_all_vectored` is not stable yet.
fn write_all_vectored(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read one frame: its kind and payload (checksum verified).
pub(super) fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Caused<u8> {
    let head = read_head(r)?;
    read_body(r, head, buf)
}

/// Read the answer to what this side sent: `want`, or a failure the other side reports.
pub(super) fn read_answer(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    want: u8,
    context: &'static str,
) -> Caused<()> {
    match read_frame(r, buf)? {
        k if k == want => Ok(()),
        kind::FAILED => Err(MigrationCause::DestinationFailed(Reason::decode(buf)?)),
        k => Err(MigrationCause::UnexpectedFrame { kind: k, context }),
    }
}

/// A frame's kind and length.
pub(super) fn read_head(r: &mut impl Read) -> Caused<[u8; 5]> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(io_err("reading"))?;
    if frame_len(head) > MAX_FRAME {
        return Err(MigrationCause::FrameTooLarge(frame_len(head)));
    }
    Ok(head)
}

pub(super) fn frame_len(head: [u8; 5]) -> usize {
    u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize
}

/// The rest of a frame whose head was read: its payload into `buf`, checksum verified.
pub(super) fn read_body(r: &mut impl Read, head: [u8; 5], buf: &mut Vec<u8>) -> Caused<u8> {
    buf.resize(frame_len(head), 0);
    r.read_exact(buf).map_err(io_err("reading"))?;
    check_sum(r, &[&head, buf])?;
    Ok(head[0])
}

/// Read a frame's checksum and compare it with that of `parts`.
pub(super) fn check_sum(r: &mut impl Read, parts: &[&[u8]]) -> Caused<()> {
    let mut sum = [0u8; 4];
    r.read_exact(&mut sum).map_err(io_err("reading"))?;
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        crc.update(p);
    }
    if crc.finalize() != u32::from_le_bytes(sum) {
        return Err(MigrationCause::Checksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameWriter::new(&mut out, None)
            .frame(kind, parts)
            .expect("frame");
        out
    }

    #[test]
    fn a_frame_reads_back_whole_and_a_damaged_or_cut_one_does_not() {
        let wire = framed(kind::SYNC, &[b"ab", b"", b"cde"]);
        assert_eq!(wire.len(), 5 + 5 + 4);
        let mut buf = Vec::new();
        let k = read_frame(&mut &wire[..], &mut buf).expect("read");
        assert_eq!((k, &buf[..]), (kind::SYNC, &b"abcde"[..]));
        let mut bad = wire.clone();
        bad[6] ^= 1;
        assert!(matches!(
            read_frame(&mut &bad[..], &mut buf),
            Err(MigrationCause::Checksum)
        ));
        let cut = &wire[..wire.len() - 1];
        let err = read_frame(&mut &cut[..], &mut buf).expect_err("cut");
        assert_eq!(
            err.to_string(),
            "reading: the other side closed the connection"
        );
    }

    #[test]
    fn a_frame_larger_than_allowed_is_refused_before_its_payload() {
        let mut head = vec![kind::PAGES];
        head.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        assert!(matches!(
            read_frame(&mut &head[..], &mut Vec::new()),
            Err(MigrationCause::FrameTooLarge(n)) if n == MAX_FRAME + 1
        ));
    }

    #[test]
    fn an_answer_is_the_frame_wanted_or_the_failure_reported() {
        let mut buf = Vec::new();
        let ok = framed(kind::SYNCED, &[]);
        read_answer(&mut &ok[..], &mut buf, kind::SYNCED, "instead of synced").expect("synced");
        let failed = framed(kind::FAILED, &[&Reason::encode("disk full")]);
        let err = read_answer(
            &mut &failed[..],
            &mut buf,
            kind::SYNCED,
            "instead of synced",
        )
        .expect_err("failed");
        assert_eq!(err.to_string(), "the destination failed: disk full");
        let other = framed(kind::GO, &[]);
        let err = read_answer(&mut &other[..], &mut buf, kind::SYNCED, "instead of synced")
            .expect_err("unexpected");
        assert_eq!(err.to_string(), "unexpected frame 8 instead of synced");
    }

    #[test]
    fn errors_are_charged_to_the_step_given() {
        let e: Error = Caused::<()>::Err(MigrationCause::ProgramEnded)
            .at(MigrationStep::PreCopy)
            .map_err(Error::from)
            .expect_err("failed");
        assert!(matches!(
            e,
            Error::Migration {
                step: MigrationStep::PreCopy,
                cause: MigrationCause::ProgramEnded
            }
        ));
        assert_eq!(
            e.to_string(),
            "migration: the program ended during the migration"
        );
    }
}
