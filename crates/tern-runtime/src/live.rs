//! Live migration of a running program to another process, over one byte stream (TCP between
//! nodes). The source keeps running while its memory is sent; then only the pages it wrote
//! since the previous round, until what remains is small; then it stops at a safe point, sends
//! the last pages and its stack, globals and WASI state, and waits. The destination writes
//! every page straight into its own instance's memory (nothing is buffered whole), installs the
//! state and says it is ready, but runs only once told to go. Until then the source can still
//! continue where it stopped (rollback): the program is in exactly one place at any moment.
//!
//! Written pages are found by the kernel (userfaultfd write protection, see
//! [`crate::sys::WriteTracker`]); where that is unavailable, by hashing every page each round.
//!
//! Wire format: frames of `kind u8 | length u32 | payload | crc32 u32` (little endian; the
//! checksum covers kind, length and payload). Page frames carry `memory u32 | offset u64 |
//! length u32 | encoding u8 | data` with encoding 0 raw, 1 LZ4, 2 zero (no data).

use std::io::{IoSlice, Read, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tern_api::{MigrationOutcome, MigrationPhase, MigrationRound, MigrationStep, TransferReport};
use tern_snapshot::{Snapshot, PAGE};

use crate::control::{Control, LiveRequest};
use crate::fault::{self, Cuttable, Side};
use crate::{Error, Result};

/// Host page: the unit of dirty tracking and of page frames.
const HOST_PAGE: usize = 4096;
/// Bytes read and sent at a time; bounds the buffers on both sides.
const CHUNK: usize = 256 << 10;
/// Largest frame payload accepted, so that a hostile peer cannot make us allocate at will.
const MAX_FRAME: usize = 64 << 20;
const PROTOCOL_VERSION: u32 = 1;

mod kind {
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

mod enc {
    pub const RAW: u8 = 0;
    pub const LZ4: u8 = 1;
    pub const ZERO: u8 = 2;
}

/// How the source runs its rounds.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Stop pre-copying after this many rounds even if the program keeps writing.
    pub max_rounds: u32,
    /// Stop pre-copying once a round finds no more than this many written bytes.
    pub stop_below: u64,
    /// Bytes per second on the wire (None: as fast as the connection goes).
    pub bandwidth: Option<u64>,
    /// Compress pages with LZ4.
    pub compress: bool,
    /// Use page hashing even where the kernel can track writes (for comparison).
    pub force_hashing: bool,
    /// A clone: once committed, the program continues here as well as at the destination.
    pub keep_running: bool,
    /// Added to each of the protocol's round trips (hello, sync, ready): a link's made-up
    /// delay, so that a cluster on one machine moves workloads as a spread-out one would.
    pub link_delay: Duration,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            max_rounds: 30,
            stop_below: 256 << 10,
            bandwidth: None,
            compress: true,
            force_hashing: false,
            keep_running: false,
            link_delay: Duration::ZERO,
        }
    }
}

/// Progress, for a bar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub phase: MigrationPhase,
    pub round: u32,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    version: u32,
    module_digest: String,
    transform_version: u32,
    memories: Vec<u32>,
    /// Bytes of each memory when the migration starts, for the destination to prepare.
    #[serde(default)]
    sizes: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Reason {
    reason: String,
}

fn proto(what: impl std::fmt::Display) -> Error {
    Error::Migration(what.to_string())
}

fn io_err(step: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    use std::io::ErrorKind;
    move |e| match e.kind() {
        ErrorKind::UnexpectedEof => {
            Error::Migration(format!("{step}: the other side closed the connection"))
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Migration(format!(
            "{step}: the other side fell silent (connection timed out)"
        )),
        _ => Error::Migration(format!("{step}: {e}")),
    }
}

/// Writes frames, counting bytes and keeping to a bandwidth limit.
struct FrameWriter<W: Write> {
    w: W,
    bandwidth: Option<u64>,
    started: Instant,
    sent: u64,
}

impl<W: Write> FrameWriter<W> {
    fn new(w: W, bandwidth: Option<u64>) -> Self {
        FrameWriter {
            w,
            bandwidth,
            started: Instant::now(),
            sent: 0,
        }
    }

    fn frame(&mut self, kind: u8, parts: &[&[u8]]) -> std::io::Result<u64> {
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

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
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
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<u8> {
    let head = read_head(r)?;
    read_body(r, head, buf)
}

/// A frame's kind and length.
fn read_head(r: &mut impl Read) -> Result<[u8; 5]> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(io_err("reading"))?;
    if frame_len(head) > MAX_FRAME {
        return Err(proto(format!(
            "frame of {} bytes is larger than allowed",
            frame_len(head)
        )));
    }
    Ok(head)
}

fn frame_len(head: [u8; 5]) -> usize {
    u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize
}

/// The rest of a frame whose head was read: its payload into `buf`, checksum verified.
fn read_body(r: &mut impl Read, head: [u8; 5], buf: &mut Vec<u8>) -> Result<u8> {
    buf.resize(frame_len(head), 0);
    r.read_exact(buf).map_err(io_err("reading"))?;
    check_sum(r, &[&head, buf])?;
    Ok(head[0])
}

/// Read a frame's checksum and compare it with that of `parts`.
fn check_sum(r: &mut impl Read, parts: &[&[u8]]) -> Result<()> {
    let mut sum = [0u8; 4];
    r.read_exact(&mut sum).map_err(io_err("reading"))?;
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        crc.update(p);
    }
    if crc.finalize() != u32::from_le_bytes(sum) {
        return Err(proto("a frame failed its checksum"));
    }
    Ok(())
}

/// Finds the pages written since the last look.
enum Tracker {
    Kernel(crate::sys::WriteTracker),
    /// One hash per host page of the memory.
    Hashing(Vec<u64>),
}

struct SourceMemory {
    index: u32,
    base: usize,
    tracker: Tracker,
}

fn hash_page(page: &[u8]) -> u64 {
    // Two independent crc32s: a collision of both for a changed page is not a practical risk,
    // and crc32 runs at memory speed with the hardware instruction.
    let (a, b) = page.split_at(page.len() / 2);
    (u64::from(crc32fast::hash(a)) << 32) | u64::from(crc32fast::hash(b)) | 1
}

impl SourceMemory {
    fn start(index: u32, base: usize, force_hashing: bool) -> Result<SourceMemory> {
        // Only what is accessible now is tracked (write-protecting the whole 4 GiB reservation
        // costs tens of milliseconds); what the program grows into later is added then.
        let (size, _) = crate::sys::mapping_extent(base).map_err(io_err("memory map"))?;
        let tracker = if force_hashing {
            Tracker::Hashing(Vec::new())
        } else {
            match crate::sys::WriteTracker::new(base, size.max(HOST_PAGE)) {
                Ok(t) => Tracker::Kernel(t),
                Err(_) => Tracker::Hashing(Vec::new()),
            }
        };
        Ok(SourceMemory {
            index,
            base,
            tracker,
        })
    }

    fn tracker_name(&self) -> &'static str {
        match self.tracker {
            Tracker::Kernel(_) => "userfaultfd-wp",
            Tracker::Hashing(_) => "hashing",
        }
    }

    fn size(&self) -> Result<usize> {
        Ok(crate::sys::mapping_extent(self.base)
            .map_err(io_err("memory map"))?
            .0)
    }

    /// Byte ranges to send this round: everything on the first, then what was written.
    fn changed(
        &mut self,
        memories: &crate::sys::AttachedMemories,
        first: bool,
    ) -> Result<Vec<(usize, usize)>> {
        let size = self.size()?;
        match &mut self.tracker {
            Tracker::Kernel(t) => {
                let tracked = t.len();
                // Grown memory: tracked from now on, and sent whole this round.
                t.extend(size).map_err(io_err("tracking writes"))?;
                if first {
                    // Everything was write-protected when tracking began, just before: what is
                    // written from then on shows in the next round's scan.
                    return Ok(vec![(0, size)]);
                }
                let mut written = t
                    .take_written(tracked.min(size))
                    .map_err(io_err("tracking writes"))?;
                if size > tracked {
                    written.push((tracked, size - tracked));
                }
                Ok(written)
            }
            Tracker::Hashing(hashes) => {
                let pages = size / HOST_PAGE;
                let mut out: Vec<(usize, usize)> = Vec::new();
                let mut buf = vec![0u8; CHUNK];
                hashes.resize(pages, 0);
                let mut at = 0;
                while at < size {
                    let n = CHUNK.min(size - at);
                    memories
                        .read(self.base, at, &mut buf[..n])
                        .map_err(io_err("reading memory"))?;
                    for (k, page) in buf[..n].chunks(HOST_PAGE).enumerate() {
                        let p = at / HOST_PAGE + k;
                        let h = hash_page(page);
                        if first || hashes[p] != h {
                            hashes[p] = h;
                            let off = p * HOST_PAGE;
                            match out.last_mut() {
                                Some((s, l)) if *s + *l == off => *l += HOST_PAGE,
                                _ => out.push((off, HOST_PAGE)),
                            }
                        }
                    }
                    at += n;
                }
                Ok(out)
            }
        }
    }
}

/// Whether to try compressing: after a run that did not compress, the next few are sent raw
/// (random data would only cost CPU time for nothing).
#[derive(Default)]
struct Compressor {
    skip: u32,
}

fn is_zero(page: &[u8]) -> bool {
    // 64-byte blocks that the compiler vectorises, leaving at the first non-zero one.
    page.chunks(64)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Send the byte ranges of one memory; returns (raw, wire) bytes.
fn send_ranges<W: Write>(
    fw: &mut FrameWriter<W>,
    memories: &crate::sys::AttachedMemories,
    mem: &SourceMemory,
    ranges: &[(usize, usize)],
    compress: bool,
    buf: &mut Vec<u8>,
) -> Result<(u64, u64)> {
    let mut lz = Compressor::default();
    let (mut raw, mut wire) = (0u64, 0u64);
    buf.resize(CHUNK, 0);
    for &(start, len) in ranges {
        let mut at = start;
        while at < start + len {
            let n = CHUNK.min(start + len - at);
            memories
                .read(mem.base, at, &mut buf[..n])
                .map_err(io_err("reading memory"))?;
            // Runs of zero and non-zero host pages, so that empty memory costs nothing.
            let mut k = 0;
            while k < n {
                let zero = is_zero(&buf[k..k + HOST_PAGE.min(n - k)]);
                let mut e = k + HOST_PAGE.min(n - k);
                while e < n && is_zero(&buf[e..e + HOST_PAGE.min(n - e)]) == zero {
                    e += HOST_PAGE.min(n - e);
                }
                let off = (at + k) as u64;
                let run = &buf[k..e];
                let mut head = Vec::with_capacity(17);
                head.extend_from_slice(&mem.index.to_le_bytes());
                head.extend_from_slice(&off.to_le_bytes());
                head.extend_from_slice(&(run.len() as u32).to_le_bytes());
                let w = if zero {
                    head.push(enc::ZERO);
                    fw.frame(kind::PAGES, &[&head])
                } else if compress && lz.skip == 0 {
                    let packed = lz4_flex::block::compress(run);
                    if packed.len() < run.len() * 9 / 10 {
                        head.push(enc::LZ4);
                        fw.frame(kind::PAGES, &[&head, &packed])
                    } else {
                        lz.skip = 16;
                        head.push(enc::RAW);
                        fw.frame(kind::PAGES, &[&head, run])
                    }
                } else {
                    lz.skip = lz.skip.saturating_sub(1);
                    head.push(enc::RAW);
                    fw.frame(kind::PAGES, &[&head, run])
                }
                .map_err(io_err("sending pages"))?;
                raw += run.len() as u64;
                wire += w;
                k = e;
            }
            at += n;
        }
    }
    Ok((raw, wire))
}

/// Add a finished round to the report and tell the progress callback.
fn record_round(
    report: &mut TransferReport,
    raw: u64,
    wire: u64,
    started: Instant,
    phase: MigrationPhase,
    round: u32,
    progress: &mut dyn FnMut(&Progress),
) {
    report.rounds.push(MigrationRound {
        raw_bytes: raw,
        wire_bytes: wire,
        ms: started.elapsed().as_secs_f64() * 1e3,
    });
    report.bytes_raw += raw;
    report.bytes_wire += wire;
    progress(&Progress {
        phase,
        round,
        bytes: report.bytes_wire,
    });
}

/// The source's side, run on its own thread while the program runs under `control`.
/// `quiesce` is called once pre-copy is done, just before the program is stopped: a service's
/// traffic is held from then on, so that it stops with no request in progress. `commit` is
/// asked once the destination is ready: true commits (the destination goes and this program
/// ends), false or an error rolls back (the program continues here).
pub fn migrate_out<S: Read + Write>(
    control: &Arc<Control>,
    conn: S,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
    quiesce: &mut dyn FnMut(),
    commit: &mut dyn FnMut(&TransferReport) -> std::result::Result<bool, String>,
) -> TransferReport {
    let started = Instant::now();
    let mut report = TransferReport::default();
    let mut step = MigrationStep::Connect;
    let result = run_source(
        control,
        conn,
        options,
        progress,
        quiesce,
        commit,
        &mut report,
        &mut step,
    );
    report.total_ms = started.elapsed().as_secs_f64() * 1e3;
    report.bandwidth_mib_s = if report.total_ms > 0.0 {
        report.bytes_wire as f64 / (1 << 20) as f64 / (report.total_ms / 1e3)
    } else {
        0.0
    };
    match result {
        Ok(true) => report.outcome = MigrationOutcome::Committed,
        Ok(false) => {
            report.outcome = MigrationOutcome::RolledBack;
            report.failed_step = Some(MigrationStep::Commit);
            report
                .reason
                .get_or_insert_with(|| "the commit was refused".into());
        }
        Err(e) => {
            report.outcome = MigrationOutcome::Failed;
            report.failed_step = Some(step);
            report.reason = Some(e.to_string());
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn run_source<S: Read + Write>(
    control: &Arc<Control>,
    conn: S,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
    quiesce: &mut dyn FnMut(),
    commit: &mut dyn FnMut(&TransferReport) -> std::result::Result<bool, String>,
    report: &mut TransferReport,
    step: &mut MigrationStep,
) -> Result<bool> {
    let Some(live) = control.live_info() else {
        return Err(proto("no program is running"));
    };
    let mut conn = Cuttable::new(conn);
    *step = MigrationStep::Prepare;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        module_digest: live.module_digest.clone(),
        transform_version: tern_instrument::TRANSFORM_VERSION,
        memories: live.memories.iter().map(|m| m.0).collect(),
        sizes: live
            .memories
            .iter()
            .map(|m| {
                crate::sys::mapping_extent(m.1)
                    .map(|e| e.0 as u64)
                    .unwrap_or(0)
            })
            .collect(),
    };
    let mut rbuf = Vec::new();
    {
        let mut fw = FrameWriter::new(&mut conn, None);
        let body = serde_json::to_vec(&hello).map_err(proto)?;
        fw.frame(kind::HELLO, &[&body])
            .and_then(|_| fw.flush())
            .map_err(io_err("sending hello"))?;
    }
    if fault::at(Side::Source, "prepare") {
        conn.cut();
    }
    std::thread::sleep(options.link_delay);
    match read_frame(&mut conn, &mut rbuf)? {
        kind::ACCEPT => {}
        kind::REFUSE => {
            let r: Reason = serde_json::from_slice(&rbuf).map_err(proto)?;
            return Err(proto(format!("the destination refused: {}", r.reason)));
        }
        k => return Err(proto(format!("unexpected frame {k} instead of an answer"))),
    }

    let mut fw = FrameWriter::new(&mut conn, options.bandwidth);
    *step = MigrationStep::Volumes;
    if fault::at(Side::Source, "volumes") {
        fw.w.cut();
    }
    let mut seen = files::Seen::new();
    let (raw, wire) = files::send(&mut fw, &mut rbuf, &live.dirs, &mut seen)?;
    report.bytes_raw += raw;
    report.bytes_wire += wire;
    report.files_raw += raw;
    report.files_wire += wire;

    *step = MigrationStep::PreCopy;
    let mut mems = Vec::new();
    for &(index, base) in &live.memories {
        mems.push(SourceMemory::start(index, base, options.force_hashing)?);
    }
    report.tracker = mems
        .first()
        .map(|m| m.tracker_name())
        .unwrap_or("none")
        .into();
    let mut buf = Vec::new();
    let mut round = 0u32;
    loop {
        let t = Instant::now();
        let (mut raw, mut wire) = (0, 0);
        for m in &mut mems {
            if !control.running() {
                return Err(proto("the program ended during the migration"));
            }
            let ranges = m.changed(&control.memories, round == 0)?;
            let (r, w) = send_ranges(
                &mut fw,
                &control.memories,
                m,
                &ranges,
                options.compress,
                &mut buf,
            )?;
            raw += r;
            wire += w;
        }
        wire += fw
            .frame(kind::ROUND_END, &[&round.to_le_bytes()])
            .map_err(io_err("sending"))?;
        record_round(
            report,
            raw,
            wire,
            t,
            MigrationPhase::PreCopy,
            round,
            progress,
        );
        if fault::at(Side::Source, "pre-copy") {
            fw.w.cut();
        }
        round += 1;
        // Stop when what is left is small, when rounds stop shrinking (the program writes as
        // fast as we send: more rounds would not shorten the pause), or at the round limit.
        let shrinking = report.rounds.len() < 3
            || raw < report.rounds[report.rounds.len() - 2].raw_bytes * 9 / 10;
        if (round > 1 && raw <= options.stop_below) || !shrinking || round >= options.max_rounds {
            break;
        }
    }

    quiesce();
    // Wait until the destination has written everything sent so far: the pause must not
    // include the destination catching up with what sits in the socket buffers.
    fw.frame(kind::SYNC, &[])
        .and_then(|_| fw.flush())
        .map_err(io_err("sending"))?;
    std::thread::sleep(options.link_delay);
    match read_frame(&mut fw.w, &mut rbuf)? {
        kind::SYNCED => {}
        kind::FAILED => {
            let r: Reason = serde_json::from_slice(&rbuf).map_err(proto)?;
            return Err(proto(format!("the destination failed: {}", r.reason)));
        }
        k => return Err(proto(format!("unexpected frame {k} instead of synced"))),
    }

    *step = MigrationStep::StopAndCopy;
    let paused_at = Instant::now();
    let (paused_tx, paused_rx) = mpsc::sync_channel(1);
    let (verdict_tx, verdict_rx) = mpsc::channel();
    control.request_live(LiveRequest {
        paused: paused_tx,
        verdict: verdict_rx,
    });
    // The program thread stops at its next safe point and hands over its state; it may also
    // end first, and then there is nothing to move.
    let state = loop {
        match paused_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => break s,
            Err(mpsc::RecvTimeoutError::Timeout) if control.running() => continue,
            Err(_) => {
                control.cancel_live();
                return Err(proto("the program ended during the migration"));
            }
        }
    };
    // From here on the program waits for a verdict; every way out must give one.
    let decided = finish_source(
        &mut fw,
        (&mut mems, &control.memories),
        state,
        options,
        progress,
        commit,
        report,
        round,
        paused_at,
        step,
        &mut rbuf,
        (&live.dirs, &mut seen),
    );
    let moved_away = matches!(decided, Ok(true)) && !options.keep_running;
    let _ = verdict_tx.send(moved_away);
    // Ending write tracking makes the kernel walk every page of the memory again (tens of
    // milliseconds for hundreds of MiB): not part of the move, so not on its clock.
    std::thread::spawn(move || drop(mems));
    decided
}

#[allow(clippy::too_many_arguments)]
fn finish_source<S: Read + Write>(
    fw: &mut FrameWriter<&mut Cuttable<S>>,
    (mems, memories): (&mut [SourceMemory], &crate::sys::AttachedMemories),
    mut state: Snapshot,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
    commit: &mut dyn FnMut(&TransferReport) -> std::result::Result<bool, String>,
    report: &mut TransferReport,
    round: u32,
    paused_at: Instant,
    step: &mut MigrationStep,
    rbuf: &mut Vec<u8>,
    (dirs, seen): (&[(String, std::path::PathBuf)], &mut files::Seen),
) -> Result<bool> {
    if fault::at(Side::Source, "stop-and-copy") {
        fw.w.cut();
    }
    let t = Instant::now();
    let (mut raw, mut wire) = (0, 0);
    let mut buf = Vec::new();
    for m in mems.iter_mut() {
        let ranges = m.changed(memories, false)?;
        let (r, w) = send_ranges(fw, memories, m, &ranges, options.compress, &mut buf)?;
        raw += r;
        wire += w;
    }
    // What the program wrote to its files since the first pass.
    let (r, w) = files::send(fw, rbuf, dirs, seen)?;
    raw += r;
    wire += w;
    report.files_raw += r;
    report.files_wire += w;
    // The state itself: a snapshot without pages, whose memories give only their sizes.
    for image in &mut state.memories {
        image.chunks.clear();
    }
    let body = tern_snapshot::encode(&state, tern_snapshot::PageEncoding::Raw);
    wire += fw
        .frame(kind::FINAL, &[&body])
        .and_then(|n| fw.flush().map(|_| n))
        .map_err(io_err("sending state"))?;
    raw += body.len() as u64;
    record_round(
        report,
        raw,
        wire,
        t,
        MigrationPhase::StopAndCopy,
        round,
        progress,
    );
    *step = MigrationStep::Resume;
    if fault::at(Side::Source, "resume") {
        fw.w.cut();
    }
    std::thread::sleep(options.link_delay);
    match read_frame(&mut fw.w, rbuf)? {
        kind::READY => {}
        kind::FAILED => {
            let r: Reason = serde_json::from_slice(rbuf).map_err(proto)?;
            return Err(proto(format!("the destination failed: {}", r.reason)));
        }
        k => return Err(proto(format!("unexpected frame {k} instead of ready"))),
    }
    report.pause_ms = paused_at.elapsed().as_secs_f64() * 1e3;
    *step = MigrationStep::Commit;
    if fault::at(Side::Source, "commit") {
        fw.w.cut();
    }
    progress(&Progress {
        phase: MigrationPhase::Commit,
        round,
        bytes: report.bytes_wire,
    });
    let decided = match commit(report) {
        Ok(true) => {
            // Committed: the destination runs the program from now on, told by us or, should
            // this not arrive, by whoever recorded the commit.
            if fault::at(Side::Source, "committed") {
                fw.w.cut();
            }
            let _ = fw.frame(kind::GO, &[]).and_then(|_| fw.flush());
            Ok(true)
        }
        Ok(false) => {
            let _ = send_abort(fw, "the commit was refused");
            Ok(false)
        }
        Err(e) => {
            let _ = send_abort(fw, &e);
            Err(proto(format!("commit: {e}")))
        }
    };
    // The pause is what the program lives through: from the stop request until it may run
    // again, at the destination (go sent) or here.
    report.pause_ms = paused_at.elapsed().as_secs_f64() * 1e3;
    decided
}

fn send_abort<W: Write>(fw: &mut FrameWriter<W>, reason: &str) -> std::io::Result<()> {
    let body = serde_json::to_vec(&Reason {
        reason: reason.into(),
    })
    .unwrap_or_default();
    fw.frame(kind::ABORT, &[&body])?;
    fw.flush()
}

/// The destination's view of a migration while it receives.
pub(crate) struct Receiver<'a, S: Read + Write> {
    pub(crate) conn: &'a mut Cuttable<S>,
    pub(crate) buf: Vec<u8>,
    /// This side's preopened directories: (guest path, host path).
    pub(crate) dirs: Vec<(String, std::path::PathBuf)>,
}

/// What a destination does with the pages it receives.
pub(crate) trait PageSink {
    /// The memory `index`, grown to hold at least `end` bytes.
    fn memory(&mut self, index: u32, end: u64) -> Result<&mut [u8]>;
}

impl<S: Read + Write> Receiver<'_, S> {
    /// Answer the source's hello: refuse a different module or protocol, with the reason.
    /// Returns the sizes the source's memories have now.
    pub(crate) fn handshake(&mut self, module_digest: &str, memories: &[u32]) -> Result<Vec<u64>> {
        let k = read_frame(self.conn, &mut self.buf)?;
        if k != kind::HELLO {
            return Err(proto(format!("expected hello, got frame {k}")));
        }
        let hello: Hello = serde_json::from_slice(&self.buf).map_err(proto)?;
        if fault::at(Side::Destination, "prepare") {
            self.conn.cut();
        }
        let refusal = if hello.version != PROTOCOL_VERSION {
            Some(format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                hello.version
            ))
        } else if hello.module_digest != module_digest {
            Some(format!(
                "the program is module {}, this destination prepared {module_digest}",
                hello.module_digest
            ))
        } else if hello.transform_version != tern_instrument::TRANSFORM_VERSION {
            Some(format!(
                "instrumentation version {} (this node has {})",
                hello.transform_version,
                tern_instrument::TRANSFORM_VERSION
            ))
        } else if hello.memories != memories {
            Some("the program's memories differ from the module's".into())
        } else {
            None
        };
        let mut fw = FrameWriter::new(&mut *self.conn, None);
        match refusal {
            Some(reason) => {
                let body = serde_json::to_vec(&Reason {
                    reason: reason.clone(),
                })
                .map_err(proto)?;
                let _ = fw.frame(kind::REFUSE, &[&body]).and_then(|_| fw.flush());
                Err(proto(format!("refused: {reason}")))
            }
            None => fw
                .frame(kind::ACCEPT, &[])
                .and_then(|_| fw.flush())
                .map(|_| hello.sizes)
                .map_err(io_err("answering")),
        }
    }

    /// Write pages as they come until the final state arrives; return it.
    pub(crate) fn receive(&mut self, sink: &mut dyn PageSink) -> Result<Snapshot> {
        loop {
            let head = read_head(self.conn)?;
            if head[0] == kind::PAGES {
                receive_pages(self.conn, head, &mut self.buf, sink)?;
                continue;
            }
            match read_body(self.conn, head, &mut self.buf)? {
                kind::MANIFEST => {
                    let frame = std::mem::take(&mut self.buf);
                    files::receive(self.conn, &frame, &mut self.buf, &self.dirs)?;
                }
                kind::ROUND_END => {
                    if fault::at(Side::Destination, "pre-copy") {
                        self.conn.cut();
                    }
                }
                kind::SYNC => {
                    let mut fw = FrameWriter::new(&mut *self.conn, None);
                    fw.frame(kind::SYNCED, &[])
                        .and_then(|_| fw.flush())
                        .map_err(io_err("answering"))?;
                }
                kind::FINAL => return tern_snapshot::decode(&self.buf).map_err(Error::from),
                kind::ABORT => return Err(proto("the source aborted the migration")),
                k => return Err(proto(format!("unexpected frame {k} while receiving"))),
            }
        }
    }

    pub(crate) fn fail(&mut self, reason: &str) {
        let body = serde_json::to_vec(&Reason {
            reason: reason.into(),
        })
        .unwrap_or_default();
        let mut fw = FrameWriter::new(&mut *self.conn, None);
        let _ = fw.frame(kind::FAILED, &[&body]).and_then(|_| fw.flush());
    }

    /// Say ready; then wait for the verdict: Ok(true) go, Ok(false) abort, Err if the
    /// connection ended without one (someone else must decide).
    pub(crate) fn ready_then_verdict(&mut self) -> Result<bool> {
        if fault::at(Side::Destination, "resume") {
            self.conn.cut();
        }
        let mut fw = FrameWriter::new(&mut *self.conn, None);
        fw.frame(kind::READY, &[])
            .and_then(|_| fw.flush())
            .map_err(io_err("saying ready"))?;
        if fault::at(Side::Destination, "verdict") {
            self.conn.cut();
        }
        match read_frame(self.conn, &mut self.buf)? {
            kind::GO => Ok(true),
            kind::ABORT => Ok(false),
            k => Err(proto(format!("unexpected frame {k} instead of a verdict"))),
        }
    }
}

/// A page frame whose head was read. Raw pages are read from the connection straight into the
/// instance's memory, which the kernel backs beforehand in one call: no copy through a buffer
/// and no page fault per page. The checksum is verified after the write; that is safe because
/// the destination runs nothing before the migration is complete, and a bad frame fails it.
fn receive_pages(
    r: &mut impl Read,
    head: [u8; 5],
    buf: &mut Vec<u8>,
    sink: &mut dyn PageSink,
) -> Result<()> {
    let len = frame_len(head);
    if len < PAGE_HEADER {
        return Err(proto("short page frame"));
    }
    buf.resize(PAGE_HEADER, 0);
    r.read_exact(buf).map_err(io_err("reading"))?;
    let header = PageHeader::parse(buf)?;
    if header.encoding != enc::RAW || header.len != len - PAGE_HEADER {
        buf.resize(len, 0);
        r.read_exact(&mut buf[PAGE_HEADER..])
            .map_err(io_err("reading"))?;
        check_sum(r, &[&head, buf])?;
        return write_pages(buf, sink);
    }
    let dest = header.dest(sink)?;
    crate::sys::populate(dest);
    r.read_exact(dest).map_err(io_err("reading"))?;
    check_sum(r, &[&head, buf, dest])
}

const PAGE_HEADER: usize = 17;

/// `memory u32 | offset u64 | length u32 | encoding u8` at the start of a page frame.
struct PageHeader {
    index: u32,
    off: u64,
    len: usize,
    encoding: u8,
}

impl PageHeader {
    fn parse(frame: &[u8]) -> Result<PageHeader> {
        if frame.len() < PAGE_HEADER {
            return Err(proto("short page frame"));
        }
        let h = PageHeader {
            index: u32::from_le_bytes(frame[0..4].try_into().unwrap_or_default()),
            off: u64::from_le_bytes(frame[4..12].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(frame[12..16].try_into().unwrap_or_default()) as usize,
            encoding: frame[16],
        };
        if h.len > MAX_FRAME || !(h.off as usize).is_multiple_of(HOST_PAGE) {
            return Err(proto("page frame out of bounds"));
        }
        Ok(h)
    }

    /// The bytes of the instance's memory the frame covers (growing the memory if needed).
    fn dest<'m>(&self, sink: &'m mut dyn PageSink) -> Result<&'m mut [u8]> {
        let end = self
            .off
            .checked_add(self.len as u64)
            .filter(|e| *e <= 1 << 32)
            .ok_or_else(|| proto("page frame beyond a 32-bit memory"))?;
        sink.memory(self.index, end)?
            .get_mut(self.off as usize..end as usize)
            .ok_or_else(|| proto("page frame beyond the memory"))
    }
}

fn write_pages(frame: &[u8], sink: &mut dyn PageSink) -> Result<()> {
    let header = PageHeader::parse(frame)?;
    let (encoding, len, data) = (header.encoding, header.len, &frame[PAGE_HEADER..]);
    let dest = header.dest(sink)?;
    match encoding {
        enc::RAW if data.len() == len => dest.copy_from_slice(data),
        enc::LZ4 => {
            let n = lz4_flex::block::decompress_into(data, dest)
                .map_err(|e| proto(format!("bad compressed pages: {e}")))?;
            if n != len {
                return Err(proto("compressed pages of the wrong size"));
            }
        }
        enc::ZERO if data.is_empty() => {
            // Fresh memory reads as zero already, except the data segments' pages.
            if !is_zero(dest) {
                dest.fill(0);
            }
        }
        _ => return Err(proto("bad page frame")),
    }
    Ok(())
}

/// Grow a wasm memory so that `end` bytes fit (wasm pages are 64 KiB).
pub(crate) fn pages_for(end: u64) -> u64 {
    end.div_ceil(PAGE as u64)
}

/// The program's preopened directories move with it: before the memory rounds and again while
/// it is paused, the source lists every file and directory under each preopen (by guest path),
/// the destination answers with what it lacks (for a file it already has, the hashes of its
/// 64 KiB blocks, so that only changed blocks travel), and removes what the source no longer
/// has. The second pass only looks again at files whose size or time changed.
mod files {
    use std::collections::HashMap;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Component, Path, PathBuf};

    use serde::{Deserialize, Serialize};

    use super::{io_err, kind, proto, read_frame, FrameWriter};
    use crate::Result;

    pub(super) const BLOCK: usize = 64 << 10;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub(super) struct Entry {
        /// The preopen's guest path.
        pub(super) dir: String,
        /// Relative path below it, '/'-separated.
        pub(super) path: String,
        pub(super) is_dir: bool,
        pub(super) size: u64,
        /// Changed since the previous pass (or no previous pass): the destination looks at it.
        pub(super) changed: bool,
        /// A symbolic link, and what it points to (as written, not resolved).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) link: Option<String>,
    }

    /// One pass's list: each directory's identity on the source's machine, then its entries.
    #[derive(Debug, Serialize, Deserialize)]
    struct Manifest {
        /// (guest path, device, inode) of each directory: a destination that finds the very
        /// same directory (both on one machine) leaves it alone.
        roots: Vec<(String, u64, u64)>,
        entries: Vec<Entry>,
    }

    fn identity(p: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).ok()?;
        Some((m.dev(), m.ino()))
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Need {
        pub(super) dir: String,
        pub(super) path: String,
        /// Hashes of the destination's blocks; None: send everything.
        pub(super) blocks: Option<Vec<u64>>,
    }

    /// (size, modification time) of each file the source listed, to find what changed since.
    pub(super) type Seen = HashMap<(String, String), (u64, i128)>;

    fn stamp(m: &std::fs::Metadata) -> i128 {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(-1)
    }

    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let r = rel.join(e.file_name());
            if m.is_dir() {
                out.push((r.clone(), m));
                walk(root, &r, out);
            } else if m.is_file() || m.file_type().is_symlink() {
                out.push((r, m));
            }
            // Special files (sockets, fifos, devices) stay behind.
        }
    }

    fn rel_string(p: &Path) -> Option<String> {
        let parts: Option<Vec<&str>> = p
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        parts.map(|v| v.join("/"))
    }

    /// A relative path from the wire, refused unless it stays inside its directory.
    fn safe(root: &Path, rel: &str) -> Result<PathBuf> {
        let p = Path::new(rel);
        if rel.is_empty()
            || rel.contains('\0')
            || !p.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(proto(format!(
                "file path {rel:?} is not a plain relative path"
            )));
        }
        Ok(root.join(p))
    }

    /// As `safe`, for a path this side reads or writes: no part of it may be a symbolic link
    /// (a link the volume holds must not lead a read or a write outside it). The last part
    /// may be one if `link_ok` (a link being mirrored).
    fn no_links(root: &Path, rel: &str, link_ok: bool) -> Result<PathBuf> {
        let full = safe(root, rel)?;
        let mut at = root.to_path_buf();
        let parts: Vec<_> = Path::new(rel).components().collect();
        let check = if link_ok {
            parts.len() - 1
        } else {
            parts.len()
        };
        for c in &parts[..check] {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(proto(format!(
                        "file path {rel:?} goes through a symbolic link"
                    )))
                }
                Ok(_) => {}
                Err(_) => break, // nothing there yet, nor below
            }
        }
        Ok(full)
    }

    fn link_target(p: &Path) -> Option<String> {
        std::fs::read_link(p)
            .ok()
            .and_then(|t| t.to_str().map(str::to_string))
    }

    pub(super) fn block_hashes(path: &Path) -> Option<Vec<u64>> {
        let mut f = std::fs::File::open(path).ok()?;
        let mut buf = vec![0u8; BLOCK];
        let mut out = Vec::new();
        loop {
            let mut n = 0;
            while n < BLOCK {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return None,
                }
            }
            if n == 0 {
                return Some(out);
            }
            out.push(super::hash_page(&buf[..n]));
            if n < BLOCK {
                return Some(out);
            }
        }
    }

    /// The source's side of one pass.
    pub(super) fn send<S: Read + Write>(
        fw: &mut FrameWriter<&mut S>,
        rbuf: &mut Vec<u8>,
        dirs: &[(String, PathBuf)],
        seen: &mut Seen,
    ) -> Result<(u64, u64)> {
        let mut entries = Vec::new();
        let mut now = Seen::new();
        for (guest, host) in dirs {
            let mut found = Vec::new();
            walk(host, Path::new(""), &mut found);
            for (rel, m) in found {
                let Some(path) = rel_string(&rel) else {
                    continue;
                };
                let key = (guest.clone(), path.clone());
                let s = (m.len(), stamp(&m));
                let link = if m.file_type().is_symlink() {
                    match link_target(&host.join(&rel)) {
                        Some(t) => Some(t),
                        None => continue, // not UTF-8, or gone meanwhile
                    }
                } else {
                    None
                };
                let changed = m.is_file() && seen.get(&key) != Some(&s);
                now.insert(key, s);
                entries.push(Entry {
                    dir: guest.clone(),
                    path,
                    is_dir: m.is_dir(),
                    size: if link.is_some() { 0 } else { m.len() },
                    changed,
                    link,
                });
            }
        }
        let roots = dirs
            .iter()
            .filter_map(|(g, h)| identity(h).map(|(d, i)| (g.clone(), d, i)))
            .collect();
        let body = serde_json::to_vec(&Manifest { roots, entries }).map_err(proto)?;
        let mut wire = fw
            .frame(kind::MANIFEST, &[&body])
            .and_then(|n| fw.flush().map(|_| n))
            .map_err(io_err("sending the file list"))?;
        let mut raw = 0u64;
        let needs: Vec<Need> = match read_frame(&mut fw.w, rbuf)? {
            kind::NEEDS => serde_json::from_slice(rbuf).map_err(proto)?,
            kind::FAILED => {
                let r: super::Reason = serde_json::from_slice(rbuf).map_err(proto)?;
                return Err(proto(format!("the destination failed: {}", r.reason)));
            }
            k => {
                return Err(proto(format!(
                    "unexpected frame {k} instead of the files needed"
                )))
            }
        };
        let mut buf = vec![0u8; BLOCK];
        for need in needs {
            let Some((_, host)) = dirs.iter().find(|(g, _)| *g == need.dir) else {
                continue;
            };
            let path = no_links(host, &need.path, false)?;
            // Not through a link swapped in since the check, either.
            let Ok(mut f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            else {
                continue; // gone meanwhile: the next pass deletes it there
            };
            let mut block = 0usize;
            loop {
                let mut n = 0;
                while n < BLOCK {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => return Err(io_err("reading a file")(e)),
                    }
                }
                if n == 0 {
                    break;
                }
                let same = need
                    .blocks
                    .as_ref()
                    .and_then(|b| b.get(block))
                    .is_some_and(|h| *h == super::hash_page(&buf[..n]));
                if !same {
                    let head = serde_json::to_vec(&(&need.dir, &need.path, block * BLOCK))
                        .map_err(proto)?;
                    let packed = lz4_flex::block::compress(&buf[..n]);
                    let len = (head.len() as u32).to_le_bytes();
                    let raw_len = (n as u32).to_le_bytes();
                    wire += fw
                        .frame(kind::FILE_DATA, &[&len, &head, &raw_len, &packed])
                        .map_err(io_err("sending a file"))?;
                    raw += n as u64;
                }
                block += 1;
                if n < BLOCK {
                    break;
                }
            }
        }
        wire += fw
            .frame(kind::FILES_DONE, &[])
            .and_then(|n| fw.flush().map(|_| n))
            .map_err(io_err("sending"))?;
        match read_frame(&mut fw.w, rbuf)? {
            kind::FILES_SYNCED => {}
            kind::FAILED => {
                let r: super::Reason = serde_json::from_slice(rbuf).map_err(proto)?;
                return Err(proto(format!("the destination failed: {}", r.reason)));
            }
            k => {
                return Err(proto(format!(
                    "unexpected frame {k} instead of files synced"
                )))
            }
        }
        *seen = now;
        Ok((raw, wire))
    }

    /// The destination's side of one pass, after the manifest frame (in `frame`) arrived.
    pub(super) fn receive<S: Read + Write>(
        conn: &mut S,
        frame: &[u8],
        buf: &mut Vec<u8>,
        dirs: &[(String, PathBuf)],
    ) -> Result<()> {
        let manifest: Manifest = serde_json::from_slice(frame).map_err(proto)?;
        // Directories this side shares with the source (one machine) need nothing.
        let shared: Vec<&str> = dirs
            .iter()
            .filter(|(g, h)| {
                identity(h).is_some_and(|(d, i)| manifest.roots.contains(&(g.clone(), d, i)))
            })
            .map(|(g, _)| g.as_str())
            .collect();
        let entries: Vec<Entry> = manifest
            .entries
            .into_iter()
            .filter(|e| !shared.contains(&e.dir.as_str()))
            .collect();
        let dirs: Vec<(String, PathBuf)> = dirs
            .iter()
            .filter(|(g, _)| !shared.contains(&g.as_str()))
            .cloned()
            .collect();
        let dirs = &dirs[..];
        let root = |dir: &str| -> Result<&PathBuf> {
            dirs.iter()
                .find(|(g, _)| g == dir)
                .map(|(_, h)| h)
                .ok_or_else(|| {
                    proto(format!(
                        "the program has directory {dir:?}, this destination was not given it"
                    ))
                })
        };
        // Mirror: what the source no longer has goes (deepest first), files the source lists
        // as directories and the other way round are replaced, and links that point elsewhere.
        for (guest, host) in dirs {
            let mut local = Vec::new();
            walk(host, Path::new(""), &mut local);
            for (rel, m) in local.iter().rev() {
                let Some(path) = rel_string(rel) else {
                    continue;
                };
                let wanted = entries
                    .iter()
                    .find(|e| e.dir == *guest && e.path == path)
                    .map(|e| (e.is_dir, e.link.clone()));
                let have = (
                    m.is_dir(),
                    if m.file_type().is_symlink() {
                        link_target(&host.join(rel))
                    } else {
                        None
                    },
                );
                if wanted != Some(have) {
                    let p = host.join(rel);
                    let _ = if m.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        let mut needs = Vec::new();
        for e in &entries {
            let path = no_links(root(&e.dir)?, &e.path, e.link.is_some())?;
            if let Some(target) = &e.link {
                if std::fs::symlink_metadata(&path).is_err() {
                    std::os::unix::fs::symlink(target, &path)
                        .map_err(io_err("creating a symbolic link"))?;
                }
            } else if e.is_dir {
                std::fs::create_dir_all(&path).map_err(io_err("creating a directory"))?;
            } else if e.changed {
                needs.push(Need {
                    dir: e.dir.clone(),
                    path: e.path.clone(),
                    blocks: block_hashes(&path),
                });
            }
        }
        let body = serde_json::to_vec(&needs).map_err(proto)?;
        let mut fw = FrameWriter::new(&mut *conn, None);
        fw.frame(kind::NEEDS, &[&body])
            .and_then(|_| fw.flush())
            .map_err(io_err("answering"))?;
        let mut touched: Vec<(PathBuf, u64)> = needs
            .iter()
            .filter_map(|n| {
                let e = entries
                    .iter()
                    .find(|e| e.dir == n.dir && e.path == n.path)?;
                Some((no_links(root(&n.dir).ok()?, &n.path, false).ok()?, e.size))
            })
            .collect();
        loop {
            match read_frame(conn, buf)? {
                kind::FILE_DATA => {
                    let hl = u32::from_le_bytes(
                        buf.get(..4)
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or_default(),
                    ) as usize;
                    let head = buf
                        .get(4..4 + hl)
                        .ok_or_else(|| proto("short file frame"))?;
                    let (dir, path, offset): (String, String, u64) =
                        serde_json::from_slice(head).map_err(proto)?;
                    let rest = &buf[4 + hl..];
                    let raw_len = u32::from_le_bytes(
                        rest.get(..4)
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or_default(),
                    ) as usize;
                    if raw_len > BLOCK {
                        return Err(proto("file block too large"));
                    }
                    let data = lz4_flex::block::decompress(&rest[4..], raw_len)
                        .map_err(|e| proto(format!("bad compressed file data: {e}")))?;
                    let p = no_links(root(&dir)?, &path, false)?;
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(io_err("creating a directory"))?;
                    }
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&p)
                        .map_err(io_err("writing a file"))?;
                    f.seek(SeekFrom::Start(offset))
                        .and_then(|_| f.write_all(&data))
                        .map_err(io_err("writing a file"))?;
                }
                kind::FILES_DONE => break,
                k => return Err(proto(format!("unexpected frame {k} while receiving files"))),
            }
        }
        // Every file the source listed as changed has its size (new, shrunk or unchanged).
        for (p, size) in touched.drain(..) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(io_err("writing a file"))?;
            f.set_len(size).map_err(io_err("writing a file"))?;
        }
        let mut fw = FrameWriter::new(&mut *conn, None);
        fw.frame(kind::FILES_SYNCED, &[])
            .and_then(|_| fw.flush())
            .map_err(io_err("answering"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecSink(Vec<u8>);

    impl PageSink for VecSink {
        fn memory(&mut self, _index: u32, end: u64) -> Result<&mut [u8]> {
            if end as usize > self.0.len() {
                self.0.resize(end as usize, 0);
            }
            Ok(&mut self.0)
        }
    }

    fn page_frame(off: u64, encoding: u8, run_len: usize, data: &[u8]) -> Vec<u8> {
        let mut head = Vec::new();
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&off.to_le_bytes());
        head.extend_from_slice(&(run_len as u32).to_le_bytes());
        head.push(encoding);
        let mut out = Vec::new();
        FrameWriter::new(&mut out, None)
            .frame(kind::PAGES, &[&head, data])
            .expect("frame");
        out
    }

    fn receive(wire: &[u8], sink: &mut VecSink) -> Result<()> {
        let mut r = std::io::Cursor::new(wire);
        let head = read_head(&mut r)?;
        assert_eq!(head[0], kind::PAGES);
        receive_pages(&mut r, head, &mut Vec::new(), sink)
    }

    #[test]
    fn page_frames_land_in_memory_and_a_damaged_one_is_refused() {
        let data: Vec<u8> = (0..2 * HOST_PAGE).map(|i| (i % 253) as u8).collect();
        let mut sink = VecSink(vec![0; 4 * HOST_PAGE]);
        // Raw: straight into memory.
        receive(&page_frame(4096, enc::RAW, data.len(), &data), &mut sink).expect("raw");
        assert_eq!(sink.0[4096..4096 + data.len()], data[..]);
        // Compressed and zero runs go through the buffer.
        let packed = lz4_flex::block::compress(&data);
        let mut other = VecSink(vec![0; 4 * HOST_PAGE]);
        receive(&page_frame(0, enc::LZ4, data.len(), &packed), &mut other).expect("lz4");
        assert_eq!(other.0[..data.len()], data[..]);
        receive(&page_frame(0, enc::ZERO, HOST_PAGE, &[]), &mut other).expect("zero");
        assert!(other.0[..HOST_PAGE].iter().all(|&b| b == 0));
        // One flipped bit anywhere in a frame fails its checksum.
        let good = page_frame(0, enc::RAW, data.len(), &data);
        for at in [7, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(receive(&bad, &mut VecSink(vec![0; 4 * HOST_PAGE])).is_err());
        }
        // A frame claiming memory beyond 4 GiB or an unaligned offset is refused.
        assert!(receive(
            &page_frame(u64::MAX - 4095, enc::RAW, 4096, &data[..4096]),
            &mut sink
        )
        .is_err());
        assert!(receive(&page_frame(100, enc::RAW, 4096, &data[..4096]), &mut sink).is_err());
    }
}

#[cfg(test)]
mod file_tests {
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    use super::*;

    /// One pass of the file sync between two directories, over a socket pair.
    fn sync(from: &Path, to: &Path) -> Result<()> {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let to = to.to_path_buf();
        let dest = std::thread::spawn(move || -> Result<()> {
            let mut buf = Vec::new();
            let k = read_frame(&mut b, &mut buf)?;
            assert_eq!(k, kind::MANIFEST);
            let frame = std::mem::take(&mut buf);
            files::receive(&mut b, &frame, &mut buf, &[("/data".into(), to)])
        });
        let mut fw = FrameWriter::new(&mut a, None);
        let sent = files::send(
            &mut fw,
            &mut Vec::new(),
            &[("/data".into(), from.to_path_buf())],
            &mut files::Seen::new(),
        );
        dest.join().expect("destination")?;
        sent.map(|_| ())
    }

    #[test]
    fn files_directories_and_symbolic_links_are_mirrored() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(from.path().join("sub")).expect("mkdir");
        std::fs::write(from.path().join("sub/a.txt"), b"hello").expect("write");
        std::os::unix::fs::symlink("sub/a.txt", from.path().join("link")).expect("link");
        std::os::unix::fs::symlink("/nowhere/at/all", from.path().join("dangling")).expect("link");
        // Stale things at the destination: a link to elsewhere and a file the source lacks.
        std::os::unix::fs::symlink("other", to.path().join("link")).expect("link");
        std::fs::write(to.path().join("gone.txt"), b"x").expect("write");
        sync(from.path(), to.path()).expect("sync");
        assert_eq!(
            std::fs::read(to.path().join("sub/a.txt")).expect("read"),
            b"hello"
        );
        for (name, target) in [("link", "sub/a.txt"), ("dangling", "/nowhere/at/all")] {
            assert_eq!(
                std::fs::read_link(to.path().join(name)).expect("a link"),
                Path::new(target)
            );
        }
        assert!(!to.path().join("gone.txt").exists());
    }

    /// Talks the source's side of the protocol as a hostile peer would.
    struct Scripted {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_link_in_the_volume_never_leads_a_write_outside_it() {
        let volume = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        // The source lists a link to a directory outside, then sends data "through" it.
        let manifest = serde_json::json!({
            "roots": [],
            "entries": [{
                "dir": "/data", "path": "evil", "is_dir": false, "size": 0,
                "changed": false, "link": outside.path().to_str().expect("utf-8"),
            }],
        });
        let head = serde_json::to_vec(&("/data", "evil/x", 0u64)).expect("json");
        let data = b"owned";
        let packed = lz4_flex::block::compress(data);
        let mut input = Vec::new();
        FrameWriter::new(&mut input, None)
            .frame(
                kind::FILE_DATA,
                &[
                    &(head.len() as u32).to_le_bytes(),
                    &head,
                    &(data.len() as u32).to_le_bytes(),
                    &packed,
                ],
            )
            .expect("frame");
        let mut conn = Scripted {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };
        let body = serde_json::to_vec(&manifest).expect("json");
        let got = files::receive(
            &mut conn,
            &body,
            &mut Vec::new(),
            &[("/data".into(), volume.path().to_path_buf())],
        );
        let err = got.expect_err("refused").to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!outside.path().join("x").exists());
    }
}
