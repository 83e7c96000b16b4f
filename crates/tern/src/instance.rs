//! An instance's control socket (`--control PATH`): a Unix socket on which whoever runs the
//! instance (an agent, or `tern instance migrate`) asks it to move by live migration, answers
//! its commit question, or tells a receiving instance whose source went silent whether to run.
//! One JSON line per command, JSON lines back (`tern_api::InstanceCommand` and
//! `InstanceEvent`). Also `tern receive`, the destination of a migration.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tern_api::{
    InstanceCommand, InstanceEvent, MigrationOutcome, MigrationStep, TransferOptions,
    TransferReport,
};
use tern_runtime::{Control, MigrateOptions};

/// What the control socket shares with the thread that runs the program.
pub struct Shared {
    /// A receiving instance's verdict, once someone gave it.
    decision: Mutex<Option<bool>>,
    /// Set once a committed migration's report went out: the process may end only then.
    reported: (Mutex<bool>, Condvar),
    /// Open `watch` connections (owners), and since when there has been none.
    owners: Mutex<(usize, std::time::Instant)>,
    /// A migration is under way (one at a time).
    migrating: std::sync::atomic::AtomicBool,
    /// The id of the migration under way, if its asker gave one.
    migration_id: Mutex<Option<String>>,
    /// Whoever drives the migration under way: its events go there and its commit answer comes
    /// from there. A restarted agent takes over by asking for the same migration again.
    asker: Mutex<Option<Asker>>,
    /// The migration waiting for a verdict its asker never gave, and the verdict once given.
    awaiting: Mutex<Option<String>>,
    verdict: Mutex<Option<(String, bool)>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            decision: Mutex::new(None),
            reported: (Mutex::new(false), Condvar::new()),
            owners: Mutex::new((0, std::time::Instant::now())),
            migrating: std::sync::atomic::AtomicBool::new(false),
            migration_id: Mutex::new(None),
            asker: Mutex::new(None),
            awaiting: Mutex::new(None),
            verdict: Mutex::new(None),
        }
    }
}

/// The connection of whoever drives a migration.
struct Asker {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Shared {
    /// Send an event to the migration's asker, if there is one now (progress is best effort).
    fn tell_asker(&self, e: &InstanceEvent) {
        if let Some(a) = self
            .asker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = send(&mut a.w, e);
        }
    }

    fn take_asker(&self) -> Option<Asker> {
        self.asker.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn decision(&self) -> Option<bool> {
        *self.decision.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait (briefly) until the report of the migration that moved the program is sent.
    pub fn wait_reported(&self) {
        let (lock, cv) = &self.reported;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(guard, Duration::from_secs(5), |done| !*done);
    }

    /// Stop the process once no owner has watched it for `timeout` (checked in a thread): an
    /// instance without its agent must not outlive the moment the controller gives its
    /// workload to another node.
    pub fn exit_when_orphaned(self: &Arc<Self>, timeout: Duration) {
        let s = self.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            let (n, since) = *s.owners.lock().unwrap_or_else(|p| p.into_inner());
            if n == 0 && since.elapsed() > timeout {
                eprintln!("tern: no agent for {timeout:?}; stopping");
                std::process::exit(137);
            }
        });
    }

    fn owner(&self, delta: isize) {
        let mut o = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        o.0 = o.0.saturating_add_signed(delta);
        o.1 = std::time::Instant::now();
    }

    fn set_reported(&self) {
        let (lock, cv) = &self.reported;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

/// Listen on `path` for commands to the program under `control`.
pub fn serve(path: &Path, control: Arc<Control>, shared: Arc<Shared>) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let control = control.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &control, &shared);
            });
        }
    });
    Ok(())
}

fn send(w: &mut impl Write, e: &InstanceEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

fn handle(conn: UnixStream, control: &Arc<Control>, shared: &Shared) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let cmd = match serde_json::from_str::<InstanceCommand>(&line) {
        Ok(c) => c,
        Err(e) => {
            return send(
                &mut w,
                &InstanceEvent::Error {
                    message: format!("bad command: {e}"),
                },
            )
        }
    };
    match cmd {
        InstanceCommand::Watch => {
            shared.owner(1);
            let sent = send(
                &mut w,
                &InstanceEvent::Watching {
                    pid: std::process::id(),
                    awaiting_verdict: shared
                        .awaiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                },
            );
            // Held until the owner goes away (its end closes, even when it is killed).
            let mut rest = String::new();
            while sent.is_ok() && matches!(r.read_line(&mut rest), Ok(n) if n > 0) {
                rest.clear();
            }
            shared.owner(-1);
            sent
        }
        InstanceCommand::Verdict { migration, commit } => {
            *shared.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some((migration, commit));
            send(&mut w, &InstanceEvent::Ok)
        }
        InstanceCommand::Decide { go } => {
            *shared.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(go);
            send(&mut w, &InstanceEvent::Ok)
        }
        InstanceCommand::Quiet => send(
            &mut w,
            &InstanceEvent::Error {
                message: "quiet answers a quiesce event of a migrate command".into(),
            },
        ),
        InstanceCommand::Commit { .. } => send(
            &mut w,
            &InstanceEvent::Error {
                message: "commit answers a ready event of a migrate command".into(),
            },
        ),
        InstanceCommand::Migrate {
            to,
            options,
            ask_commit,
            keep_running,
            id,
        } => {
            use std::sync::atomic::Ordering;
            if shared.migrating.swap(true, Ordering::SeqCst) {
                let same = id.is_some()
                    && *shared
                        .migration_id
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        == id;
                if same {
                    // The asker came back (a restarted agent): the migration goes on, and
                    // reports to it from now on.
                    *shared.asker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Asker { w, r });
                    return Ok(());
                }
                return send(
                    &mut w,
                    &InstanceEvent::Error {
                        message: "a migration of this instance is already under way".into(),
                    },
                );
            }
            *shared
                .migration_id
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = id.clone();
            *shared.asker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Asker { w, r });
            let report = migrate(
                control,
                &to,
                &options,
                (ask_commit, keep_running, id),
                shared,
            );
            let committed = report.outcome == MigrationOutcome::Committed && !keep_running;
            let asker = shared.take_asker();
            *shared
                .migration_id
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            shared.migrating.store(false, Ordering::SeqCst);
            let sent = match asker {
                Some(mut a) => send(&mut a.w, &InstanceEvent::Done { report }),
                None => Err(std::io::ErrorKind::NotConnected.into()),
            };
            if committed {
                shared.set_reported();
            }
            sent
        }
    }
}

fn migrate(
    control: &Arc<Control>,
    to: &str,
    options: &TransferOptions,
    (ask_commit, keep_running, id): (bool, bool, Option<String>),
    shared: &Shared,
) -> TransferReport {
    let failed = |reason: String| TransferReport {
        outcome: MigrationOutcome::Failed,
        failed_step: Some(MigrationStep::Connect),
        reason: Some(reason),
        ..TransferReport::default()
    };
    let addr = match to.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(e) => return failed(format!("destination {to:?}: {e}")),
    };
    let conn = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => return failed(format!("connecting to {to}: {e}")),
    };
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(migration_timeout()));
    let _ = conn.set_write_timeout(Some(migration_timeout()));
    let defaults = MigrateOptions::default();
    let opts = MigrateOptions {
        max_rounds: options.max_rounds.unwrap_or(defaults.max_rounds),
        bandwidth: options.bandwidth,
        force_hashing: options.force_hashing,
        keep_running,
        link_delay: Duration::from_millis(options.link_delay_ms),
        ..defaults
    };
    let mut progress = |p: &tern_runtime::Progress| {
        shared.tell_asker(&InstanceEvent::Progress {
            phase: p.phase,
            round: p.round,
            bytes: p.bytes,
        });
    };
    let mut commit = |report: &TransferReport| -> std::result::Result<bool, String> {
        if !ask_commit {
            return Ok(true);
        }
        let ready = InstanceEvent::Ready {
            report: report.clone(),
        };
        loop {
            // Ask whoever drives the migration now; keep the connection out of the shared
            // slot while waiting for its answer, so that a new asker can take the slot.
            if let Some(mut a) = shared.take_asker() {
                let mut line = String::new();
                let asked = send(&mut a.w, &ready).and_then(|_| a.r.read_line(&mut line));
                match asked {
                    Ok(n) if n > 0 => {
                        let answer = match serde_json::from_str::<InstanceCommand>(&line) {
                            Ok(InstanceCommand::Commit { commit }) => Ok(commit),
                            Ok(other) => Err(format!("expected a commit answer, got {other:?}")),
                            Err(e) => Err(format!("bad commit answer: {e}")),
                        };
                        let mut slot = shared.asker.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(a);
                        }
                        return answer;
                    }
                    // It went away: it may have committed before it did, so nobody here can
                    // guess.
                    _ => {}
                }
            }
            let Some(id) = id.clone() else {
                return Err("whoever asked for the migration went away".into());
            };
            // Wait, paused, for a new asker (a restarted agent takes the migration over) or
            // for a verdict brought by the next owner (without either, the orphan timeout
            // ends this process).
            *shared.awaiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
            loop {
                if let Some((m, commit)) = shared
                    .verdict
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    if m == id {
                        *shared.awaiting.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        return Ok(commit);
                    }
                }
                if shared
                    .asker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some()
                {
                    *shared.awaiting.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // Before the program stops, its asker (an agent) has the gateways hold its requests.
    let mut quiesce = || {
        if !ask_commit {
            return;
        }
        let Some(mut a) = shared.take_asker() else {
            return;
        };
        let mut line = String::new();
        let _ = a.r.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
        let _ = send(&mut a.w, &InstanceEvent::Quiesce).and_then(|_| a.r.read_line(&mut line));
        let _ = a.r.get_ref().set_read_timeout(None);
        let mut slot = shared.asker.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(a);
        }
    };
    tern_runtime::migrate_out(
        control,
        conn,
        &opts,
        &mut progress,
        &mut quiesce,
        &mut commit,
    )
}

/// How long a migration's connection may stay silent (nothing can be read, or nothing
/// written) before the migration fails at the step it is in: 30 s, or
/// `TERN_MIGRATION_TIMEOUT_MS`. Without it, a peer that vanished without closing (a network cut
/// that drops packets) would hold a migration, and a paused program, forever.
pub fn migration_timeout() -> Duration {
    std::env::var("TERN_MIGRATION_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(30))
}

/// `tern instance migrate`: ask the instance behind `socket` to move to `to` and report.
pub fn migrate_command(
    socket: &Path,
    to: &str,
    options: TransferOptions,
    json: bool,
) -> Result<ExitCode> {
    let conn = UnixStream::connect(socket)
        .with_context(|| format!("control socket {}", socket.display()))?;
    let mut w = conn.try_clone()?;
    let mut line = serde_json::to_vec(&InstanceCommand::Migrate {
        to: to.into(),
        options,
        ask_commit: false,
        keep_running: false,
        id: None,
    })?;
    line.push(b'\n');
    w.write_all(&line)?;
    let tty = std::io::stderr().is_terminal();
    for line in BufReader::new(conn).lines() {
        let line = line.context("reading from the instance")?;
        match serde_json::from_str::<InstanceEvent>(&line)? {
            InstanceEvent::Progress {
                phase,
                round,
                bytes,
            } if tty => {
                eprint!(
                    "\r{phase:<14} round {round:>3}  {:>10}",
                    tern_profile::format_size(bytes)
                );
            }
            InstanceEvent::Done { report } => {
                if tty {
                    eprintln!();
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_report(&report);
                }
                return Ok(if report.outcome == MigrationOutcome::Committed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            InstanceEvent::Error { message } => bail!("{message}"),
            _ => {}
        }
    }
    bail!("the instance closed its control socket without a report")
}

pub fn print_report(r: &TransferReport) {
    println!("outcome:   {}", r.outcome);
    if let Some(reason) = &r.reason {
        println!(
            "failed:    at {}: {reason}",
            r.failed_step.map_or("?", |s| s.as_str())
        );
    }
    println!(
        "rounds:    {} (written pages found by {})",
        r.rounds.len(),
        r.tracker
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  {:>3}  {:>10} raw  {:>10} wire  {:>8.1} ms{}",
            i,
            tern_profile::format_size(round.raw_bytes),
            tern_profile::format_size(round.wire_bytes),
            round.ms,
            if i + 1 == r.rounds.len() {
                "  (stop-and-copy)"
            } else {
                ""
            }
        );
    }
    println!("pause:     {:.2} ms", r.pause_ms);
    println!(
        "total:     {:.1} ms, {} on the wire ({:.0} MiB/s)",
        r.total_ms,
        tern_profile::format_size(r.bytes_wire),
        r.bandwidth_mib_s
    );
}

/// Write `text` to `path` so that a reader never sees it half written.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
