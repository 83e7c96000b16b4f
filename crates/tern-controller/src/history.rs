//! A workload's history: the short record of what happened to it that `tern inspect` shows.

use tern_api::{Event, Workload};

/// Longest history kept: the log of a long-lived workload is not its history.
const HISTORY_LEN: usize = 100;

pub(crate) fn event(w: &mut Workload, now: u64, what: String) {
    w.history.push(Event { unix_ms: now, what });
    if w.history.len() > HISTORY_LEN {
        w.history.drain(..w.history.len() - HISTORY_LEN);
    }
}
