//! The reconcile pass: mark silent nodes down (their workloads go back to pending), fail
//! stale migrations, drive drains, and place pending workloads.

use tern_api::unix_ms as now_ms;
use tern_api::{NodeStatus, WorkloadStatus};

use crate::history::event;
use crate::shared::Shared;
use crate::store::Tx;
use crate::Result;

/// One pass: mark silent nodes down (their workloads go back to pending), then place every
/// pending workload whose backoff has passed.
pub(crate) fn reconcile(s: &Shared) -> Result<()> {
    let now = now_ms();
    let changed = s.store.write(|tx| {
        let mut down = Vec::new();
        for mut n in tx.nodes()? {
            if n.status == NodeStatus::Up
                && now.saturating_sub(n.last_heartbeat_unix_ms) > s.down_after.as_millis() as u64
            {
                n.status = NodeStatus::Down;
                down.push(n.name.clone());
                tx.put_node(&n)?;
            }
        }
        if !down.is_empty() {
            for mut w in tx.workloads()? {
                let Some(node) = w.node.clone() else { continue };
                if down.contains(&node)
                    && matches!(w.status, WorkloadStatus::Starting | WorkloadStatus::Running)
                {
                    w.status = WorkloadStatus::Pending;
                    w.node = None;
                    w.endpoints.clear();
                    w.reason = Some(format!("node {node} is down; starting elsewhere"));
                    w.updated_unix_ms = now;
                    event(&mut w, now, format!("node {node} went down"));
                    tx.put_workload(&w)?;
                }
            }
        }
        let expired = crate::migration::expire(tx, now)?;
        let drained = crate::migration::drain(tx, s.limits, now)?;
        Ok(place_pending(tx, now)? || !down.is_empty() || expired || drained)
    })?;
    if changed {
        s.changed();
    }
    Ok(())
}

/// Place what can be placed (the best-scoring node that fits); true if anything was.
pub(crate) fn place_pending(tx: &mut Tx, now: u64) -> Result<bool> {
    let mut placed = false;
    let mut workloads = tx.workloads()?;
    if !workloads
        .iter()
        .any(|w| w.status == WorkloadStatus::Pending && w.start_after_unix_ms <= now)
    {
        return Ok(false);
    }
    let nodes = tx.nodes()?;
    let migrations = tx.migrations()?;
    let mut sched =
        tern_scheduler::Scheduler::new(crate::view::at_rest(&nodes, &workloads, &migrations, now));
    for w in workloads.iter_mut() {
        if w.status != WorkloadStatus::Pending || w.start_after_unix_ms > now {
            continue;
        }
        let Some(index) = sched.workload_index(&w.name) else {
            continue;
        };
        match sched.place(index) {
            Ok(node) => {
                w.generation += 1;
                w.instance = Some(format!("{}-{}", w.name, w.generation));
                w.endpoints.clear();
                w.status = WorkloadStatus::Starting;
                w.reason = None;
                w.updated_unix_ms = now;
                event(w, now, format!("placed on {node}"));
                w.node = Some(node);
                tx.put_workload(w)?;
                placed = true;
            }
            Err(reason) => {
                if w.reason.as_deref() != Some(reason.as_str()) {
                    w.reason = Some(reason);
                    w.updated_unix_ms = now;
                    tx.put_workload(w)?;
                }
            }
        }
    }
    Ok(placed)
}
