//! An instance's control socket (`--control PATH`): a Unix socket on which whoever runs the
//! instance (an agent, or `tern instance migrate`) asks it to move by live migration, answers
//! its commit question, or tells a receiving instance whose source went silent whether to run.
//! One JSON line per command, JSON lines back (`tern_api::InstanceCommand` and
//! `InstanceEvent`). The source's side of a migration is in `source.rs`.

mod source;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tern_api::{InstanceCommand, InstanceEvent, MigrationOutcome};
use tern_runtime::Control;

pub use source::migration_timeout;

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
            let report = source::migrate(
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
