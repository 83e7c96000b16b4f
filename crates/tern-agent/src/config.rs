//! How an agent runs, and how long its instances outlive it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tern_api::Capacity;

use crate::CpuMeasure;

#[derive(Debug, Clone)]
pub struct Config {
    pub controller: String,
    pub token: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data_dir: PathBuf,
    /// Where other nodes reach this one.
    pub address: String,
    /// The `tern` executable that runs instances.
    pub tern_exe: PathBuf,
    /// Defaults: all CPUs and all memory of the machine.
    pub capacity: Option<Capacity>,
    pub heartbeat: Duration,
    /// Made-up delays of the links to other nodes (empty: none).
    pub delays: Arc<tern_profile::DelayTable>,
    pub cpu_measure: CpuMeasure,
}

/// How long an instance outlives its agent: half the controller's down timeout, so that it has
/// stopped before the controller starts its workload elsewhere.
pub(crate) fn orphan_timeout(down_after_ms: u64) -> Duration {
    Duration::from_millis(
        if down_after_ms == 0 {
            2500
        } else {
            down_after_ms / 2
        }
        .max(100),
    )
}
