//! Nodes: registration, listing, drain and undrain.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use tern_api::unix_ms as now_ms;
use tern_api::{Node, NodeStatus, RegisterRequest, Usage};

use super::{bad, blocking, not_found, valid_name, ApiError, ApiResult};
use crate::shared::Shared;

pub(super) async fn register(
    State(s): State<Arc<Shared>>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Json<Node>> {
    if !valid_name(&req.name) {
        return Err(bad(format!(
            "node name {:?} must be 1-63 characters of a-z, 0-9 and '-'",
            req.name
        )));
    }
    if req.capacity.cpus.is_nan() || req.capacity.cpus <= 0.0 || req.capacity.memory == 0 {
        return Err(bad("capacity needs cpus > 0 and memory > 0"));
    }
    blocking(&s, move |s| {
        let now = now_ms();
        Ok(Json(s.store.write(|tx| {
            let old = tx.node(&req.name)?;
            if let Some(old) = &old {
                if old.status == NodeStatus::Up && old.session != req.session {
                    return Ok(Err(ApiError(
                        StatusCode::CONFLICT,
                        format!(
                            "a node named {:?} is already registered and up; choose another name or stop that agent",
                            req.name
                        ),
                    )));
                }
            }
            let node = Node {
                name: req.name.clone(),
                labels: req.labels.clone(),
                capacity: req.capacity.clone(),
                capabilities: req.capabilities.clone(),
                address: req.address.clone(),
                probe: req.probe.clone(),
                links: Vec::new(),
                status: NodeStatus::Up,
                usage: Usage::default(),
                registered_unix_ms: now,
                last_heartbeat_unix_ms: now,
                session: req.session.clone(),
                instances: Vec::new(),
                // A drained node stays drained across agent restarts.
                schedulable: old.as_ref().is_none_or(|o| o.schedulable),
                draining: old.as_ref().is_some_and(|o| o.draining),
                down_after_ms: s.down_after.as_millis() as u64,
            };
            tx.put_node(&node)?;
            Ok(Ok(node))
        })??))
    })
    .await
}

pub(super) async fn list_nodes(State(s): State<Arc<Shared>>) -> ApiResult<Json<Vec<Node>>> {
    blocking(&s, |s| Ok(Json(s.store.nodes()?))).await
}

pub(super) async fn get_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Node>> {
    blocking(&s, move |s| {
        s.store
            .node(&name)?
            .map(Json)
            .ok_or_else(|| not_found("node", &name))
    })
    .await
}

pub(super) async fn drain_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Node>> {
    set_drain(s, name, true).await
}

pub(super) async fn undrain_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Node>> {
    set_drain(s, name, false).await
}

pub(super) async fn set_drain(s: Arc<Shared>, name: String, drain: bool) -> ApiResult<Json<Node>> {
    blocking(&s, move |s| {
        let node = s.store.write(|tx| {
            let Some(mut n) = tx.node(&name)? else {
                return Ok(None);
            };
            n.schedulable = !drain;
            n.draining = drain;
            tx.put_node(&n)?;
            if drain {
                crate::migration::drain(tx, s.limits, now_ms())?;
            }
            Ok(Some(n))
        })?;
        s.changed();
        node.map(Json).ok_or_else(|| not_found("node", &name))
    })
    .await
}
