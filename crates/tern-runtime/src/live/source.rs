//! The source's side, on its own thread while the program runs: the hello, the files, the
//! pre-copy rounds until the [stopping rule](super::policy) says enough, then the program
//! stopped at a safe point, the last pages, files and state, and the commit. Each step's
//! failure is charged to it ([`At`]), which is what the report's `failed_step` says.

use std::io::{Read, Write};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tern_api::{MigrationOutcome, MigrationPhase, MigrationRound, MigrationStep, TransferReport};
use tern_snapshot::Snapshot;

use super::delay::Delayed;
use super::files;
use super::frame::{
    io_err, kind, proto, read_answer, read_frame, At, Caused, Failed, FrameWriter, Hello, Reason,
    PROTOCOL_VERSION,
};
use super::memory::{send_ranges, SourceMemory};
use super::policy::PreCopy;
use crate::control::{Control, LiveInfo, LiveRequest};
use crate::fault::{self, Cuttable, Side};
use crate::{Error, MigrationCause};

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

/// The source's connection: cut by a fault, delayed by the link.
type Link<S> = Delayed<Cuttable<S>>;

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
    let result = run(
        control,
        conn,
        options,
        progress,
        quiesce,
        commit,
        &mut report,
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
        Err(Failed { step, cause }) => {
            report.outcome = MigrationOutcome::Failed;
            report.failed_step = Some(step);
            report.reason = Some(Error::Migration { step, cause }.to_string());
        }
    }
    report
}

fn run<S: Read + Write>(
    control: &Arc<Control>,
    conn: S,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
    quiesce: &mut dyn FnMut(),
    commit: &mut dyn FnMut(&TransferReport) -> std::result::Result<bool, String>,
    report: &mut TransferReport,
) -> Result<bool, Failed> {
    use MigrationStep::{Connect, PreCopy, Prepare, StopAndCopy, Volumes};
    let live = control
        .live_info()
        .ok_or(MigrationCause::NotRunning)
        .at(Connect)?;
    let mut conn = Delayed::new(Cuttable::new(conn), options.link_delay);
    let mut rbuf = Vec::new();
    hello(&mut conn, &live, &mut rbuf).at(Prepare)?;
    let mut src = Source {
        fw: FrameWriter::new(&mut conn, options.bandwidth),
        rbuf,
        pages: Vec::new(),
        control,
        options,
        progress,
        report,
        live,
        seen: files::Seen::new(),
        mems: Vec::new(),
        round: 0,
    };
    src.volumes().at(Volumes)?;
    src.pre_copy().at(PreCopy)?;
    quiesce();
    src.sync().at(PreCopy)?;
    let paused_at = Instant::now();
    let (state, verdict) = stop(control).at(StopAndCopy)?;
    // From here on the program waits for a verdict; every way out must give one.
    let decided = src.finish(state, paused_at, commit);
    let moved_away = matches!(decided, Ok(true)) && !options.keep_running;
    let _ = verdict.send(moved_away);
    // Ending write tracking makes the kernel walk every page of the memory again (tens of
    // milliseconds for hundreds of MiB): not part of the move, so not on its clock.
    let mems = std::mem::take(&mut src.mems);
    std::thread::spawn(move || drop(mems));
    decided
}

/// Offer the program; the destination accepts or refuses it.
fn hello<S: Read + Write>(conn: &mut Link<S>, live: &LiveInfo, rbuf: &mut Vec<u8>) -> Caused<()> {
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
    let body = serde_json::to_vec(&hello).map_err(proto)?;
    FrameWriter::new(&mut *conn, None)
        .send(kind::HELLO, &[&body])
        .map_err(io_err("sending hello"))?;
    if fault::at(Side::Source, "prepare") {
        conn.get_mut().cut();
    }
    match read_frame(conn, rbuf)? {
        kind::ACCEPT => Ok(()),
        kind::REFUSE => Err(MigrationCause::Refused(Reason::decode(rbuf)?)),
        k => Err(MigrationCause::UnexpectedFrame {
            kind: k,
            context: "instead of an answer",
        }),
    }
}

/// Stop the program at its next safe point and take its state, and the channel for the
/// verdict it then waits for. It may also end first, and then there is nothing to move.
fn stop(control: &Control) -> Caused<(Snapshot, mpsc::Sender<bool>)> {
    let (paused_tx, paused_rx) = mpsc::sync_channel(1);
    let (verdict_tx, verdict_rx) = mpsc::channel();
    control.request_live(LiveRequest {
        paused: paused_tx,
        verdict: verdict_rx,
    });
    loop {
        match paused_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => return Ok((s, verdict_tx)),
            Err(mpsc::RecvTimeoutError::Timeout) if control.running() => continue,
            Err(_) => {
                control.cancel_live();
                return Err(MigrationCause::ProgramEnded);
            }
        }
    }
}

/// What the source's steps after the hello share.
struct Source<'a, S: Read + Write> {
    fw: FrameWriter<&'a mut Link<S>>,
    /// Answers from the destination.
    rbuf: Vec<u8>,
    /// Pages on their way, a chunk at a time.
    pages: Vec<u8>,
    control: &'a Control,
    options: &'a MigrateOptions,
    progress: &'a mut dyn FnMut(&Progress),
    report: &'a mut TransferReport,
    live: LiveInfo,
    /// The files as the last pass found them.
    seen: files::Seen,
    mems: Vec<SourceMemory>,
    /// Pre-copy rounds done; the stop-and-copy round's number.
    round: u32,
}

impl<S: Read + Write> Source<'_, S> {
    fn cut(&mut self) {
        self.fw.w.get_mut().cut();
    }

    /// The first pass over the program's files.
    fn volumes(&mut self) -> Caused<()> {
        if fault::at(Side::Source, "volumes") {
            self.cut();
        }
        let (raw, wire) = self.send_files()?;
        self.report.bytes_raw += raw;
        self.report.bytes_wire += wire;
        self.report.files_raw += raw;
        self.report.files_wire += wire;
        Ok(())
    }

    /// One pass of the file sync. Its two round trips are not charged the link's delay (see
    /// `delay`).
    fn send_files(&mut self) -> Caused<(u64, u64)> {
        self.fw.w.suspend(true);
        let sent = files::send(
            &mut self.fw,
            &mut self.rbuf,
            &self.live.dirs,
            &mut self.seen,
        );
        self.fw.w.suspend(false);
        sent
    }

    /// Send all of memory, then what was written meanwhile, round after round, until the
    /// stopping rule says enough.
    fn pre_copy(&mut self) -> Caused<()> {
        for &(index, base) in &self.live.memories {
            let m = SourceMemory::start(index, base, self.options.force_hashing)?;
            self.mems.push(m);
        }
        self.report.tracker = self
            .mems
            .first()
            .map(|m| m.tracker_name())
            .unwrap_or("none")
            .into();
        let rule = PreCopy {
            stop_below: self.options.stop_below,
            max_rounds: self.options.max_rounds,
        };
        let mut sizes = Vec::new();
        loop {
            let t = Instant::now();
            let (raw, mut wire) = self.send_changed(self.round == 0, true)?;
            wire += self
                .fw
                .frame(kind::ROUND_END, &[&self.round.to_le_bytes()])
                .map_err(io_err("sending"))?;
            self.record(raw, wire, t, MigrationPhase::PreCopy);
            if fault::at(Side::Source, "pre-copy") {
                self.cut();
            }
            self.round += 1;
            sizes.push(raw);
            if rule.after(&sizes).is_some() {
                return Ok(());
            }
        }
    }

    /// Wait until the destination has written everything sent so far: the pause must not
    /// include the destination catching up with what sits in the socket buffers.
    fn sync(&mut self) -> Caused<()> {
        self.fw.send(kind::SYNC, &[]).map_err(io_err("sending"))?;
        read_answer(
            &mut self.fw.w,
            &mut self.rbuf,
            kind::SYNCED,
            "instead of synced",
        )
    }

    /// With the program stopped: the rest, the destination's ready, and the commit.
    fn finish(
        &mut self,
        state: Snapshot,
        paused_at: Instant,
        commit: &mut dyn FnMut(&TransferReport) -> std::result::Result<bool, String>,
    ) -> Result<bool, Failed> {
        self.stop_and_copy(state).at(MigrationStep::StopAndCopy)?;
        if fault::at(Side::Source, "resume") {
            self.cut();
        }
        read_answer(
            &mut self.fw.w,
            &mut self.rbuf,
            kind::READY,
            "instead of ready",
        )
        .at(MigrationStep::Resume)?;
        self.report.pause_ms = paused_at.elapsed().as_secs_f64() * 1e3;
        if fault::at(Side::Source, "commit") {
            self.cut();
        }
        (self.progress)(&Progress {
            phase: MigrationPhase::Commit,
            round: self.round,
            bytes: self.report.bytes_wire,
        });
        let decided = match commit(&*self.report) {
            Ok(true) => {
                // Committed: the destination runs the program from now on, told by us or,
                // should this not arrive, by whoever recorded the commit.
                if fault::at(Side::Source, "committed") {
                    self.cut();
                }
                let _ = self.fw.send(kind::GO, &[]);
                Ok(true)
            }
            Ok(false) => {
                self.abort("the commit was refused");
                Ok(false)
            }
            Err(e) => {
                self.abort(&e);
                Err(MigrationCause::Commit(e)).at(MigrationStep::Commit)
            }
        };
        // The pause is what the program lives through: from the stop request until it may run
        // again, at the destination (go sent) or here.
        self.report.pause_ms = paused_at.elapsed().as_secs_f64() * 1e3;
        decided
    }

    /// The pages written since the last round, the files changed since the first pass, and
    /// the state itself: a snapshot without pages, whose memories give only their sizes.
    fn stop_and_copy(&mut self, mut state: Snapshot) -> Caused<()> {
        if fault::at(Side::Source, "stop-and-copy") {
            self.cut();
        }
        let t = Instant::now();
        let (mut raw, mut wire) = self.send_changed(false, false)?;
        let (r, w) = self.send_files()?;
        raw += r;
        wire += w;
        self.report.files_raw += r;
        self.report.files_wire += w;
        for image in &mut state.memories {
            image.chunks.clear();
        }
        let body = tern_snapshot::encode(&state, tern_snapshot::PageEncoding::Raw);
        wire += self
            .fw
            .send(kind::FINAL, &[&body])
            .map_err(io_err("sending state"))?;
        raw += body.len() as u64;
        self.record(raw, wire, t, MigrationPhase::StopAndCopy);
        Ok(())
    }

    /// Tell the destination the program stays here (best effort: it may be gone).
    /// Send every memory's pages written since the last round (all of them with `all`);
    /// returns the raw and wire bytes. While the program runs (`running`), its end fails the
    /// migration.
    fn send_changed(&mut self, all: bool, running: bool) -> Caused<(u64, u64)> {
        let (mut raw, mut wire) = (0, 0);
        for m in &mut self.mems {
            if running && !self.control.running() {
                return Err(MigrationCause::ProgramEnded);
            }
            let memories = &self.control.memories;
            let ranges = m.changed(memories, all)?;
            let compress = self.options.compress;
            let (r, w) = send_ranges(
                &mut self.fw,
                memories,
                m,
                &ranges,
                compress,
                &mut self.pages,
            )?;
            raw += r;
            wire += w;
        }
        Ok((raw, wire))
    }

    fn abort(&mut self, reason: &str) {
        let _ = self.fw.send(kind::ABORT, &[&Reason::encode(reason)]);
    }

    /// Add a finished round to the report and tell the progress callback.
    fn record(&mut self, raw: u64, wire: u64, started: Instant, phase: MigrationPhase) {
        self.report.rounds.push(MigrationRound {
            raw_bytes: raw,
            wire_bytes: wire,
            ms: started.elapsed().as_secs_f64() * 1e3,
        });
        self.report.bytes_raw += raw;
        self.report.bytes_wire += wire;
        (self.progress)(&Progress {
            phase,
            round: self.round,
            bytes: self.report.bytes_wire,
        });
    }
}
