//! The node's part in live migrations. As destination it starts a `tern receive` instance and
//! reports where it listens; once the controller has committed (the instance becomes the
//! node's assignment) it makes sure the instance runs even if the source died before saying
//! go. As source it asks the instance, through its control socket, to move to the destination;
//! when the destination holds everything it asks the controller to commit, sending the
//! instance's last output with the request, and passes the answer on. Only the controller
//! commits: if it cannot be reached the program waits, paused, rather than risk running twice.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_api::{
    CommitReply, CommitRequest, InstanceCommand, InstanceEvent, MigrationFailure, MigrationNews,
    MigrationOrder, MigrationPhase, MigrationStep, MigrationUpdate, QuiesceReply,
};

use crate::client::Client;

/// The node's part in one migration.
pub(crate) struct Part {
    pub(crate) order: MigrationOrder,
    /// What the next heartbeat says about it.
    pub(crate) update: Arc<Mutex<MigrationUpdate>>,
    /// The source's thread, once started.
    pub(crate) worker: Option<std::thread::JoinHandle<()>>,
    /// The outcome (a report or a failure) reached the controller: the part can be forgotten.
    pub(crate) final_sent: bool,
}

impl Part {
    pub(crate) fn new(order: MigrationOrder) -> Part {
        let update = MigrationUpdate {
            id: order.id.clone(),
            ..MigrationUpdate::default()
        };
        Part {
            order,
            update: Arc::new(Mutex::new(update)),
            worker: None,
            final_sent: false,
        }
    }

    pub(crate) fn update(&self) -> MigrationUpdate {
        self.update
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, f: impl FnOnce(&mut MigrationUpdate)) {
        f(&mut self.update.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn working(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Whether the controller still has to hear from this part.
    pub(crate) fn pending(&self) -> bool {
        self.working() || (self.worker.is_some() && !self.final_sent)
    }
}

/// Everything the source's thread needs.
pub(crate) struct Source {
    pub(crate) client: Client,
    pub(crate) socket: PathBuf,
    pub(crate) instance_dir: PathBuf,
    pub(crate) acked: Arc<[AtomicU64; 2]>,
    pub(crate) to: String,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) node: String,
}

fn line(w: &mut impl Write, cmd: &InstanceCommand) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(cmd).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()
}

/// Drive the source side of `order` to its end, recording what happens in `update`.
pub(crate) fn run_source(src: Source, order: MigrationOrder, update: Arc<Mutex<MigrationUpdate>>) {
    drive_source(&src, &order, &update);
    // The outcome goes to the controller at once (the next heartbeat may be held a while);
    // the heartbeat repeats it in case this is lost.
    let news = MigrationNews {
        node: src.node.clone(),
        update: update.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let _ = src
        .client
        .post::<_, serde_json::Value>(&format!("/v1/migrations/{}/news", order.id), &news);
}

fn drive_source(src: &Source, order: &MigrationOrder, update: &Arc<Mutex<MigrationUpdate>>) {
    let set =
        |f: &dyn Fn(&mut MigrationUpdate)| f(&mut update.lock().unwrap_or_else(|p| p.into_inner()));
    let fail = |step: MigrationStep, reason: String| {
        set(&|u| {
            u.failed = Some(MigrationFailure {
                step,
                reason: reason.clone(),
            })
        });
    };
    // The instance may have just started: its socket appears when it listens.
    let mut conn = None;
    for _ in 0..100 {
        match UnixStream::connect(&src.socket) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let Some(conn) = conn else {
        return fail(
            MigrationStep::Prepare,
            "the instance's control socket does not answer".into(),
        );
    };
    let Ok(mut w) = conn.try_clone() else {
        return fail(
            MigrationStep::Prepare,
            "cannot write to the instance's control socket".into(),
        );
    };
    let cmd = InstanceCommand::Migrate {
        to: src.to.clone(),
        options: order.options.clone(),
        ask_commit: true,
        keep_running: order.keep_running,
        id: Some(order.id.clone()),
    };
    if let Err(e) = line(&mut w, &cmd) {
        return fail(
            MigrationStep::Prepare,
            format!("asking the instance to move: {e}"),
        );
    }
    for l in BufReader::new(conn).lines() {
        let Ok(l) = l else { break };
        let Ok(event) = serde_json::from_str::<InstanceEvent>(&l) else {
            continue;
        };
        match event {
            InstanceEvent::Progress {
                phase,
                round,
                bytes,
            } => set(&|u| {
                u.phase = Some(phase);
                u.round = round;
                u.bytes = bytes;
            }),
            InstanceEvent::Ready { report } => {
                set(&|u| u.phase = Some(MigrationPhase::Commit));
                let tail = crate::instance::output_tail(
                    &src.instance_dir,
                    &order.instance,
                    &order.workload,
                    &src.acked,
                );
                let commit = ask_controller(src, &order.id, CommitRequest { report, tail });
                if line(&mut w, &InstanceCommand::Commit { commit }).is_err() {
                    // The instance is gone; what it would have done cannot be known here, and
                    // the controller's record (and the destination's) is what counts.
                    break;
                }
            }
            InstanceEvent::Done { report } => {
                set(&|u| u.report = Some(report.clone()));
                return;
            }
            InstanceEvent::Error { message } => return fail(MigrationStep::Prepare, message),
            InstanceEvent::Quiesce => {
                // The gateways hold the workload's requests before it pauses; whatever the
                // controller says (or if it cannot be reached), the instance goes on.
                let path = format!("/v1/migrations/{}/quiesce", order.id);
                let _ = src
                    .client
                    .post::<_, QuiesceReply>(&path, &serde_json::json!({}));
                if line(&mut w, &InstanceCommand::Quiet).is_err() {
                    break;
                }
            }
            InstanceEvent::Ok | InstanceEvent::Watching { .. } => {}
        }
    }
    fail(
        MigrationStep::StopAndCopy,
        "the instance ended during the migration".into(),
    );
}

/// The controller's decision, asked until it answers (or the agent stops): guessing either
/// way could run the program twice or not at all.
fn ask_controller(src: &Source, id: &str, req: CommitRequest) -> bool {
    let path = format!("/v1/migrations/{id}/commit");
    loop {
        match src.client.post::<_, CommitReply>(&path, &req) {
            Ok(reply) => return reply.commit,
            Err(_) if src.stop.load(Ordering::SeqCst) => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Send one command to the instance behind `socket`; true once it answered.
fn tell(socket: &std::path::Path, cmd: &InstanceCommand) -> bool {
    let Ok(conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(mut w) = conn.try_clone() else {
        return false;
    };
    if line(&mut w, cmd).is_err() {
        return false;
    }
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).is_ok()
}

/// Tell a receiving instance to run (it got no go from its source); true once it heard.
pub(crate) fn tell_go(socket: &std::path::Path) -> bool {
    tell(socket, &InstanceCommand::Decide { go: true })
}

/// The controller's verdict on a migration whose source agent died while its instance waited
/// for the commit answer: committed stays committed; anything undecided is failed first (the
/// controller serializes this against a commit), so the answer is final.
pub(crate) fn settle(client: &Client, node: &str, id: &str) -> bool {
    use tern_api::{Migration, MigrationOutcome};
    loop {
        if let Ok(m) = client.get::<Migration>(&format!("/v1/migrations/{id}")) {
            match m.outcome {
                Some(MigrationOutcome::Committed) => return true,
                Some(_) => return false,
                None => {
                    let news = MigrationNews {
                        node: node.to_string(),
                        update: MigrationUpdate {
                            id: id.to_string(),
                            failed: Some(MigrationFailure {
                                step: MigrationStep::Commit,
                                reason: "the source's agent restarted before the answer".into(),
                            }),
                            ..MigrationUpdate::default()
                        },
                    };
                    let _ = client
                        .post::<_, serde_json::Value>(&format!("/v1/migrations/{id}/news"), &news);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Give a waiting instance its verdict.
pub(crate) fn tell_verdict(socket: &std::path::Path, id: &str, commit: bool) -> bool {
    tell(
        socket,
        &InstanceCommand::Verdict {
            migration: id.to_string(),
            commit,
        },
    )
}
