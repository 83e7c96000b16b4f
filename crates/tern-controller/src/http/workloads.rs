//! Workloads: deploy, list, inspect, stop, remove, logs.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tern_api::unix_ms as now_ms;
use tern_api::{DeployReply, Event, LogsReply, Workload, WorkloadSpec, WorkloadStatus};
use tern_snapshot::digest;

use super::{bad, blocking, not_found, valid_name, ApiResult};
use crate::history::event;
use crate::reconcile::place_pending;
use crate::shared::Shared;

pub(super) fn spec_digest(spec: &WorkloadSpec) -> String {
    digest(&serde_json::to_vec(spec).unwrap_or_default())
}

pub(super) async fn deploy(
    State(s): State<Arc<Shared>>,
    Json(spec): Json<WorkloadSpec>,
) -> ApiResult<(StatusCode, Json<DeployReply>)> {
    let name = spec.profile.name.clone();
    if !valid_name(&name) {
        return Err(bad(format!("workload name {name:?} is not valid")));
    }
    blocking(&s, move |s| {
        for d in std::iter::once(&spec.module).chain(spec.files.iter().map(|f| &f.digest)) {
            if !s.store.has_blob(d)? {
                return Err(bad(format!(
                    "blob {d} has not been uploaded (PUT /v1/blobs/{d} first)"
                )));
            }
        }
        let sd = spec_digest(&spec);
        let now = now_ms();
        let reply = s.store.write(|tx| {
            let existing = tx.workload(&name)?;
            if let Some(w) = &existing {
                if w.spec_digest == sd && w.status != WorkloadStatus::Stopped {
                    return Ok(DeployReply {
                        workload: w.clone(),
                        changed: false,
                    });
                }
            }
            let mut w = match existing {
                Some(mut w) => {
                    // A changed profile (or a stopped workload) replaces the running instance:
                    // the node stops what is no longer assigned to it.
                    event(&mut w, now, "redeployed".into());
                    w.spec = spec.clone();
                    w.spec_digest = sd.clone();
                    w.restarts = 0;
                    w.exit_code = None;
                    w
                }
                None => Workload {
                    name: name.clone(),
                    status: WorkloadStatus::Pending,
                    node: None,
                    reason: None,
                    instance: None,
                    generation: 0,
                    restarts: 0,
                    exit_code: None,
                    spec: spec.clone(),
                    endpoints: Vec::new(),
                    spec_digest: sd.clone(),
                    created_unix_ms: now,
                    updated_unix_ms: now,
                    start_after_unix_ms: 0,
                    history: vec![Event {
                        unix_ms: now,
                        what: "deployed".into(),
                    }],
                    avoid: Vec::new(),
                },
            };
            w.status = WorkloadStatus::Pending;
            w.node = None;
            w.endpoints.clear();
            w.instance = None;
            w.reason = Some("waiting for placement".into());
            w.start_after_unix_ms = 0;
            w.updated_unix_ms = now;
            tx.put_workload(&w)?;
            place_pending(tx, now)?;
            let w = tx.workload(&name)?.unwrap_or(w);
            Ok(DeployReply {
                workload: w,
                changed: true,
            })
        })?;
        let status = if reply.changed {
            s.changed();
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(reply)))
    })
    .await
}

pub(super) async fn list_workloads(State(s): State<Arc<Shared>>) -> ApiResult<Json<Vec<Workload>>> {
    blocking(&s, |s| Ok(Json(s.store.workloads()?))).await
}

pub(super) async fn get_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Workload>> {
    blocking(&s, move |s| {
        s.store
            .workload(&name)?
            .map(Json)
            .ok_or_else(|| not_found("workload", &name))
    })
    .await
}

pub(super) async fn stop_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Workload>> {
    blocking(&s, move |s| {
        let w = s.store.write(|tx| {
            let Some(mut w) = tx.workload(&name)? else {
                return Ok(None);
            };
            if w.status != WorkloadStatus::Stopped {
                let now = now_ms();
                w.status = WorkloadStatus::Stopped;
                w.reason = Some("stopped by request".into());
                w.node = None;
                w.endpoints.clear();
                w.updated_unix_ms = now;
                event(&mut w, now, "stopped".into());
                tx.put_workload(&w)?;
            }
            Ok(Some(w))
        })?;
        s.changed();
        w.map(Json).ok_or_else(|| not_found("workload", &name))
    })
    .await
}

pub(super) async fn remove_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |s| {
        if s.store.write(|tx| tx.delete_workload(&name))? {
            s.changed();
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(not_found("workload", &name))
        }
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    #[serde(default)]
    from: u64,
}

pub(super) async fn logs(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<LogsReply>> {
    blocking(&s, move |s| {
        if s.store.workload(&name)?.is_none() {
            return Err(not_found("workload", &name));
        }
        let chunks = s.store.logs(&name, q.from, 1000)?;
        let next = chunks.last().map(|c| c.seq + 1).unwrap_or(q.from);
        Ok(Json(LogsReply { chunks, next }))
    })
    .await
}
