//! The agents' heartbeat: measurements, instance states and output in; what the node should
//! run, its migration orders and its peers out (held until something changes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use tern_api::unix_ms as now_ms;
use tern_api::{
    Assignment, Endpoint, Heartbeat, HeartbeatReply, InstanceReport, InstanceStatus, NodeStatus,
    Peer, Workload, WorkloadStatus,
};

use super::{blocking, not_found, ApiError, ApiResult};
use crate::history::event;
use crate::shared::Shared;
use crate::store::Tx;
use crate::Result;

/// Longest a heartbeat reply is held while nothing changes for its node.
const MAX_HELD_MS: u64 = 5_000;

pub(super) async fn heartbeat(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    // Subscribe before reading, so that a change made meanwhile is not missed.
    let mut version = s.version.subscribe();
    version.borrow_and_update();
    let running: Vec<String> = hb.instances.iter().map(|i| i.id.clone()).collect();
    // Never hold a heartbeat so long that the node would look silent.
    let wait = Duration::from_millis(hb.wait_ms.min(MAX_HELD_MS)).min(s.down_after / 2);
    let node = name.clone();
    let reply = blocking(&s, move |s| {
        let reply = s.store.write(|tx| {
            let Some(mut node) = tx.node(&name)? else {
                return Ok(Err(not_found("node", &name)));
            };
            if node.session != hb.session {
                return Ok(Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("node {name:?} was registered by another agent"),
                )));
            }
            let now = now_ms();
            if node.status == NodeStatus::Down {
                // Its workloads were already started elsewhere; it comes back empty.
                node.status = NodeStatus::Up;
            }
            node.last_heartbeat_unix_ms = now;
            node.usage = hb.usage.clone();
            node.instances = hb.instances.clone();
            node.links = hb.links.clone();
            tx.put_node(&node)?;
            let mut reported = false;
            for r in &hb.instances {
                reported |= apply_report(tx, &name, r, now)?;
            }
            crate::migration::store_output(tx, &hb.logs)?;
            let mut others_must_know = reported;
            for u in &hb.migrations {
                others_must_know |= crate::migration::apply_update(tx, &name, u, now)?;
            }
            Ok(Ok((
                HeartbeatReply {
                    assignments: assignments(tx.workloads()?, &name),
                    migrations: crate::migration::orders_for(tx, &name)?,
                    peers: peers(tx, &name)?,
                },
                others_must_know,
            )))
        })??;
        if reply.1 {
            s.changed();
        }
        Ok(reply.0)
    })
    .await?;
    let same = {
        let mut a: Vec<&str> = reply
            .assignments
            .iter()
            .map(|a| a.instance.as_str())
            .collect();
        let mut b: Vec<&str> = running.iter().map(String::as_str).collect();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    };
    if wait.is_zero() || !same {
        return Ok(Json(reply));
    }
    if tokio::time::timeout(wait, version.changed()).await.is_err() {
        return Ok(Json(reply));
    }
    blocking(&s, move |s| {
        let (assignments, migrations, peers) = s.store.write(|tx| {
            Ok((
                assignments(tx.workloads()?, &node),
                crate::migration::orders_for(tx, &node)?,
                peers(tx, &node)?,
            ))
        })?;
        Ok(Json(HeartbeatReply {
            assignments,
            migrations,
            peers,
        }))
    })
    .await
}

/// The other nodes that are up and answer probes.
pub(super) fn peers(tx: &Tx, me: &str) -> Result<Vec<Peer>> {
    Ok(tx
        .nodes()?
        .into_iter()
        .filter(|n| n.name != me && n.status == NodeStatus::Up)
        .filter_map(|n| {
            Some(Peer {
                region: n.labels.get("region").cloned().unwrap_or_default(),
                probe: n.probe.clone()?,
                name: n.name,
            })
        })
        .collect())
}

/// The instances `node` should run.
pub(super) fn assignments(workloads: Vec<Workload>, node: &str) -> Vec<Assignment> {
    workloads
        .into_iter()
        .filter(|w| {
            w.node.as_deref() == Some(node)
                && matches!(w.status, WorkloadStatus::Starting | WorkloadStatus::Running)
        })
        .filter_map(|w| {
            Some(Assignment {
                instance: w.instance?,
                workload: w.name,
                spec: w.spec,
            })
        })
        .collect()
}

/// Where an instance of `w` listens, port by port of its profile, as its agent reported.
pub(super) fn endpoints_of(w: &Workload, r: &InstanceReport) -> Vec<Endpoint> {
    w.spec
        .profile
        .ports
        .iter()
        .zip(&r.endpoints)
        .map(|(&port, address)| Endpoint {
            port,
            address: address.clone(),
        })
        .collect()
}

/// Fold one instance report into its workload (reports of instances that are no longer the
/// workload's current one are ignored: the workload moved on). True if the workload changed.
pub(super) fn apply_report(tx: &mut Tx, node: &str, r: &InstanceReport, now: u64) -> Result<bool> {
    let Some(mut w) = tx.workload(&r.workload)? else {
        return Ok(false);
    };
    if w.instance.as_deref() != Some(r.id.as_str()) || w.node.as_deref() != Some(node) {
        // A migration's destination, listening already: remembered for its commit.
        if !r.endpoints.is_empty() {
            for mut m in tx.migrations()? {
                if m.outcome.is_none() && m.to_instance == r.id && m.to == node {
                    let eps = endpoints_of(&w, r);
                    if m.to_endpoints != eps {
                        m.to_endpoints = eps;
                        tx.put_migration(&m)?;
                    }
                }
            }
        }
        return Ok(false);
    }
    let endpoints = endpoints_of(&w, r);
    let listening = matches!(r.status, InstanceStatus::Starting | InstanceStatus::Running)
        && endpoints != w.endpoints;
    if listening {
        w.endpoints = endpoints;
    }
    match r.status {
        InstanceStatus::Starting if !listening => return Ok(false),
        InstanceStatus::Starting => {}
        InstanceStatus::Running => {
            if w.status == WorkloadStatus::Starting {
                w.status = WorkloadStatus::Running;
                w.reason = None;
                event(&mut w, now, format!("running on {node}"));
            } else if !listening {
                return Ok(false);
            }
        }
        InstanceStatus::Exited | InstanceStatus::Failed => {
            w.endpoints.clear();
            if !matches!(w.status, WorkloadStatus::Starting | WorkloadStatus::Running) {
                return Ok(false);
            }
            let failed = r.status == InstanceStatus::Failed || r.exit_code != Some(0);
            w.exit_code = r.exit_code;
            let what = match (&r.error, r.exit_code) {
                (Some(e), _) => format!("failed on {node}: {e}"),
                (None, Some(c)) => format!("exited on {node} with code {c}"),
                (None, None) => format!("ended on {node}"),
            };
            event(&mut w, now, what.clone());
            let restart = &w.spec.profile.restart;
            let again = match restart.policy {
                tern_profile::RestartPolicy::Never => false,
                tern_profile::RestartPolicy::OnFailure => failed,
                tern_profile::RestartPolicy::Always => true,
            };
            if again {
                let backoff = restart
                    .backoff
                    .saturating_mul(1u32 << w.restarts.min(16))
                    .min(restart.max_backoff.max(restart.backoff));
                w.restarts += 1;
                w.status = WorkloadStatus::Pending;
                w.node = None;
                w.endpoints.clear();
                w.reason = Some(format!(
                    "{what}; restarting in {} ms (restart {})",
                    backoff.as_millis(),
                    w.restarts
                ));
                w.start_after_unix_ms = now + backoff.as_millis() as u64;
            } else {
                w.status = if failed {
                    WorkloadStatus::Failed
                } else {
                    WorkloadStatus::Exited
                };
                w.reason = Some(what);
            }
        }
    }
    w.updated_unix_ms = now;
    tx.put_workload(&w)?;
    Ok(true)
}
