//! Signals: how the long-running commands learn they should stop, and how the listing
//! commands end when their reader goes away.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

/// Let SIGPIPE end the process, as it does for C programs (Rust ignores it by default, which
/// turns a closed pipe into a panic in `println!`).
#[allow(unsafe_code)]
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A flag that SIGINT or SIGTERM sets, for loops that check it.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Wait for SIGINT or SIGTERM (only SIGINT where SIGTERM cannot be watched).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
