//! The controller's side of live migration: it checks a request, records the migration, tells
//! the two nodes their parts through heartbeat replies, and is the one place where a migration
//! commits. The bytes flow between the nodes; the controller only decides. Because the commit
//! is one store transaction that moves the workload to the destination's instance, a workload
//! runs in exactly one place: before it, the source runs it (and resumes it on any failure);
//! after it, the destination does.

use std::collections::HashMap;

use machine::{CommitDecision, Event, Side};

use crate::store::Tx;

mod drain;
mod machine;
use crate::Result;
use tern_api::{
    CommitReply, CommitRequest, LogChunk, MigrateRequest, Migration, MigrationKind, MigrationOrder,
    MigrationPhase, MigrationUpdate, NodeStatus, Role, StoredLog, Workload, WorkloadStatus,
};

/// A migration that has not found its destination listening by then has failed.
const PREPARE_TIMEOUT_MS: u64 = 60_000;

/// How many migrations may be under way at once: per node (as source or destination), and in
/// the whole cluster. They keep a drain from flooding the network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) per_node: usize,
    pub(crate) total: usize,
}

/// Why no further migration may start between `from` and `to` now, if so.
fn over_limits(migrations: &[Migration], from: &str, to: &str, limits: Limits) -> Option<String> {
    let active: Vec<&Migration> = migrations.iter().filter(|m| m.outcome.is_none()).collect();
    if active.len() >= limits.total {
        return Some(format!(
            "{} migrations are under way, the cluster's limit",
            active.len()
        ));
    }
    for node in [from, to] {
        let n = active
            .iter()
            .filter(|m| m.from == node || m.to == node)
            .count();
        if n >= limits.per_node {
            return Some(format!(
                "node {node} takes part in {n} migrations, its limit"
            ));
        }
    }
    None
}

/// Check a request and record the migration; Err(reason) refuses it with nothing changed.
pub(crate) fn start(
    tx: &mut Tx,
    name: &str,
    req: &MigrateRequest,
    kind: MigrationKind,
    why: &str,
    limits: Limits,
    now: u64,
) -> Result<std::result::Result<Migration, String>> {
    let Some(w) = tx.workload(name)? else {
        return Ok(Err(format!("no workload named {name:?}")));
    };
    let (Some(from), Some(from_instance)) = (w.node.clone(), w.instance.clone()) else {
        return Ok(Err(format!("workload {name:?} is not running")));
    };
    if w.status != WorkloadStatus::Running {
        return Ok(Err(format!(
            "workload {name:?} is {:?}, not running",
            w.status
        )));
    }
    if !w.spec.profile.migration.live {
        return Ok(Err(format!(
            "the profile of {name:?} does not allow live migration ([migration] live = false)"
        )));
    }
    if let Some(m) = tx
        .migrations()?
        .into_iter()
        .find(|m| m.outcome.is_none() && (m.workload == name || m.target_workload == name))
    {
        return Ok(Err(format!(
            "workload {name:?} is already migrating ({} to {})",
            m.from, m.to
        )));
    }
    let target_workload = match kind {
        MigrationKind::Move => name.to_string(),
        MigrationKind::Clone => {
            let Some(new) = req.name.clone() else {
                return Ok(Err("a clone needs a name for the new workload".into()));
            };
            if tx.workload(&new)?.is_some() {
                return Ok(Err(format!("a workload named {new:?} exists already")));
            }
            new
        }
    };
    if kind == MigrationKind::Move && req.to == from {
        return Ok(Err(format!("workload {name:?} already runs on {from}")));
    }
    let nodes = tx.nodes()?;
    let Some(target) = nodes.iter().find(|n| n.name == req.to) else {
        return Ok(Err(format!("no node named {:?}", req.to)));
    };
    if target.status != NodeStatus::Up {
        return Ok(Err(format!("node {} is down", req.to)));
    }
    if !target.schedulable {
        return Ok(Err(format!("node {} is drained", req.to)));
    }
    if let Some(why) = over_limits(&tx.migrations()?, &from, &req.to, limits) {
        return Ok(Err(format!("not now: {why}")));
    }
    // The destination must satisfy the workload's constraints and have room for it.
    let node = crate::view::node_view(
        target,
        committed(&tx.workloads()?, &tx.migrations()?, &req.to, Some(name)),
    );
    let mut workload = crate::view::unplaced(&w);
    // Nodes the scheduler avoids are its own business: a user may still choose one.
    workload.avoid.clear();
    if let Err(reason) = tern_scheduler::feasible(&workload, &node) {
        return Ok(Err(format!(
            "node {} cannot take {name:?}: {reason}",
            req.to
        )));
    }
    let id = format!("m{}", tx.next("migration")? + 1);
    let generation = match kind {
        MigrationKind::Move => w.generation + 1,
        MigrationKind::Clone => 1,
    };
    let m = Migration {
        id: id.clone(),
        kind,
        workload: name.to_string(),
        target_workload: target_workload.clone(),
        from,
        to: req.to.clone(),
        from_instance,
        to_instance: format!("{target_workload}-{generation}"),
        phase: MigrationPhase::Prepare,
        outcome: None,
        failed_step: None,
        reason: None,
        why: why.to_string(),
        to_address: None,
        options: req.options.clone(),
        round: 0,
        bytes: 0,
        bytes_raw: 0,
        rounds: Vec::new(),
        pause_ms: 0.0,
        total_ms: 0.0,
        bandwidth_mib_s: 0.0,
        tracker: String::new(),
        files_bytes: 0,
        quiesce: false,
        to_endpoints: Vec::new(),
        requested_unix_ms: now,
        finished_unix_ms: None,
        auto: false,
        baseline_p50_ms: None,
        regression: None,
    };
    tx.put_migration(&m)?;
    Ok(Ok(m))
}

/// Memory and CPU promised on `node` to running workloads (but `except`).
/// Memory and CPU promised on `node` to running workloads (but `except`), and to those a
/// migration under way is bringing there.
pub(crate) fn committed(
    workloads: &[Workload],
    migrations: &[Migration],
    node: &str,
    except: Option<&str>,
) -> (u64, f64) {
    let arriving: Vec<&str> = migrations
        .iter()
        .filter(|m| m.outcome.is_none() && m.to == node)
        .map(|m| m.workload.as_str())
        .collect();
    let mut out = (0u64, 0.0);
    for w in workloads {
        if Some(w.name.as_str()) == except {
            continue;
        }
        let here = w.node.as_deref() == Some(node)
            && matches!(w.status, WorkloadStatus::Starting | WorkloadStatus::Running);
        if here || arriving.contains(&w.name.as_str()) {
            out.0 = out
                .0
                .saturating_add(w.spec.profile.limits.memory.unwrap_or(0));
            out.1 += w.spec.profile.limits.cpu.unwrap_or(0.0);
        }
    }
    out
}

/// What `node` has to do in the migrations under way.
pub(crate) fn orders_for(tx: &Tx, node: &str) -> Result<Vec<MigrationOrder>> {
    let mut out = Vec::new();
    let workloads: HashMap<String, Workload> = tx
        .workloads()?
        .into_iter()
        .map(|w| (w.name.clone(), w))
        .collect();
    let regions: HashMap<String, String> = tx
        .nodes()?
        .into_iter()
        .map(|n| {
            let r = n.labels.get("region").cloned().unwrap_or_default();
            (n.name, r)
        })
        .collect();
    let region = |n: &str| regions.get(n).cloned().unwrap_or_default();
    for m in tx.migrations()? {
        if m.outcome.is_some() {
            continue;
        }
        let Some(w) = workloads.get(&m.workload) else {
            continue;
        };
        let mut spec = w.spec.clone();
        if m.kind == MigrationKind::Clone {
            spec.profile.name = m.target_workload.clone();
        }
        if m.from == node {
            out.push(MigrationOrder {
                id: m.id.clone(),
                workload: m.workload.clone(),
                role: Role::Source,
                instance: m.from_instance.clone(),
                spec: spec.clone(),
                to_address: m.to_address.clone(),
                options: m.options.clone(),
                keep_running: m.kind == MigrationKind::Clone,
                peer: m.to.clone(),
                peer_region: region(&m.to),
            });
        }
        if m.to == node {
            out.push(MigrationOrder {
                id: m.id.clone(),
                workload: m.target_workload.clone(),
                role: Role::Destination,
                instance: m.to_instance.clone(),
                spec,
                to_address: None,
                options: m.options.clone(),
                keep_running: false,
                peer: m.from.clone(),
                peer_region: region(&m.from),
            });
        }
    }
    Ok(out)
}

/// Fold a node's news into its migration; true if anything changed that the other node must
/// hear of.
pub(crate) fn apply_update(tx: &mut Tx, node: &str, u: &MigrationUpdate, now: u64) -> Result<bool> {
    let Some(mut m) = tx.migration(&u.id)? else {
        return Ok(false);
    };
    let before = m.clone();
    let news = machine::apply(&mut m, Event::News { node, update: u }, now);
    if m != before {
        tx.put_migration(&m)?;
    }
    Ok(news)
}

/// The commit: the workload's instance becomes the destination's, in the same transaction as
/// the source's last output.
pub(crate) fn commit(tx: &mut Tx, id: &str, req: &CommitRequest, now: u64) -> Result<CommitReply> {
    let Some(mut m) = tx.migration(id)? else {
        return Ok(CommitReply {
            commit: false,
            reason: Some(format!("no migration {id}")),
        });
    };
    let w = tx.workload(&m.workload)?;
    let reason = match (machine::decide_commit(&mut m, w.as_ref(), now), w) {
        (CommitDecision::AlreadyCommitted, _) => None,
        (CommitDecision::Refuse(reason), _) => Some(reason),
        (CommitDecision::Commit, None) => Some("the workload was removed".to_string()),
        (CommitDecision::Commit, Some(w)) => {
            store_output(tx, &req.tail)?;
            let changed = machine::commit(&mut m, &w, req.report.pause_ms, now);
            tx.put_workload(&changed)?;
            None
        }
    };
    tx.put_migration(&m)?;
    Ok(CommitReply {
        commit: reason.is_none(),
        reason,
    })
}

/// Store output chunks (from heartbeats or a commit's tail), each once.
pub(crate) fn store_output(tx: &mut Tx, chunks: &[LogChunk]) -> Result<()> {
    for chunk in chunks {
        if tx.workload(&chunk.workload)?.is_some() {
            tx.append_output(
                &chunk.workload,
                StoredLog {
                    seq: 0,
                    instance: chunk.instance.clone(),
                    stream: chunk.stream,
                    data: chunk.data.clone(),
                },
                chunk.offset,
                chunk.end,
            )?;
        }
    }
    Ok(())
}

/// Fail migrations whose nodes went down or whose destination never got ready; true if any.
pub(crate) fn expire(tx: &mut Tx, now: u64) -> Result<bool> {
    let down: Vec<String> = tx
        .nodes()?
        .into_iter()
        .filter(|n| n.status == NodeStatus::Down)
        .map(|n| n.name)
        .collect();
    let mut changed = false;
    for mut m in tx.migrations()? {
        if m.outcome.is_some() {
            continue;
        }
        let down_side = if down.contains(&m.from) {
            Some((Side::Source, m.from.clone()))
        } else if down.contains(&m.to) {
            Some((Side::Destination, m.to.clone()))
        } else {
            None
        };
        let event = match &down_side {
            Some((side, node)) => Event::NodeDown { side: *side, node },
            None if m.to_address.is_none()
                && now.saturating_sub(m.requested_unix_ms) > PREPARE_TIMEOUT_MS =>
            {
                Event::PrepareTimedOut
            }
            None => continue,
        };
        if machine::apply(&mut m, event, now) {
            tx.put_migration(&m)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// One pass of every drain: start moving the workloads of draining nodes elsewhere, within
/// the limits. A workload whose profile forbids live migration is restarted elsewhere instead.
/// True if anything changed.
pub(crate) fn drain(tx: &mut Tx, limits: Limits, now: u64) -> Result<bool> {
    let nodes = tx.nodes()?;
    if !nodes.iter().any(|n| n.draining) {
        return Ok(false);
    }
    let workloads = tx.workloads()?;
    let mut migrations = tx.migrations()?;
    let mut changed = false;
    let mut movers = Vec::new();
    for step in drain::steps(&nodes, &workloads, &migrations) {
        match step {
            drain::Step::Restart { workload, node } => {
                if let Some(mut w) = tx.workload(&workload)? {
                    drain::restart_off(&mut w, &node, now);
                    tx.put_workload(&w)?;
                    changed = true;
                }
            }
            drain::Step::Move { workload, node } => movers.push((workload, node)),
        }
    }
    if movers.is_empty() {
        return Ok(changed);
    }
    // Each goes where it would be placed afresh (a drained node takes nothing new), its
    // reservation leaving with it; one scheduler for all, so each choice sees the ones before.
    let mut cluster = crate::view::at_rest(&nodes, &workloads, &migrations, now);
    for (name, node) in &movers {
        let Some(v) = cluster.workloads.iter_mut().find(|x| &x.name == name) else {
            continue;
        };
        v.node = None;
        if let Some(n) = cluster.nodes.iter_mut().find(|n| &n.name == node) {
            n.committed_memory = n.committed_memory.saturating_sub(v.memory);
            n.committed_cpu = (n.committed_cpu - v.cpu).max(0.0);
        }
    }
    let mut sched = tern_scheduler::Scheduler::new(cluster);
    for (name, node) in movers {
        let Some(Ok(to)) = sched.workload_index(&name).map(|i| sched.place(i)) else {
            continue;
        };
        if over_limits(&migrations, &node, &to, limits).is_some() {
            continue;
        }
        let req = MigrateRequest {
            to,
            ..MigrateRequest::default()
        };
        let why = format!("drain of {node}");
        if let Ok(Ok(m)) = start(tx, &name, &req, MigrationKind::Move, &why, limits, now) {
            migrations.push(m);
            changed = true;
        }
    }
    Ok(changed)
}
