//! The source's side of a live migration, driven from the control socket: connect to the
//! destination, send the rounds, have the asker quiesce the gateways, and ask it whether to
//! commit (waiting, paused, for a restarted asker rather than guess).

use std::io::BufRead;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tern_api::{
    InstanceCommand, InstanceEvent, MigrationOutcome, MigrationStep, TransferOptions,
    TransferReport,
};
use tern_runtime::{Control, MigrateOptions};

use super::{send, Shared};

pub(super) fn migrate(
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
