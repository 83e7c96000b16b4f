//! The gateways' routes: the table, the route stream that is also a gateway's
//! registration, and the list of gateways.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use tern_api::unix_ms as now_ms;
use tern_api::{GatewayInfo, MigrationPhase, Route, RouteTable, WorkloadStatus, ROUTES_REPEAT};

use super::{blocking, ApiResult};
use crate::shared::Shared;
use crate::store::Store;
use crate::Result;

/// The gateways' view: every workload with an `[http]` table, where it runs, and whether a
/// migration is stopping it.
pub(super) fn route_table(store: &Store) -> Result<RouteTable> {
    let migrations = store.migrations()?;
    let nodes = store.nodes()?;
    let mut routes = Vec::new();
    for w in store.workloads()? {
        let http = &w.spec.profile.http;
        if http.host.is_none() && http.path_prefix.is_none() {
            continue;
        }
        let endpoint = (w.status == WorkloadStatus::Running)
            .then(|| w.endpoints.first().map(|e| e.address.clone()))
            .flatten();
        let moving = migrations.iter().find(|m| {
            m.outcome.is_none()
                && m.workload == w.name
                && (m.quiesce
                    || matches!(
                        m.phase,
                        MigrationPhase::StopAndCopy | MigrationPhase::Commit
                    ))
        });
        let node = endpoint.as_ref().and(w.node.clone());
        let node_region = node.as_ref().and_then(|n| {
            nodes
                .iter()
                .find(|x| &x.name == n)
                .and_then(|x| x.labels.get("region").cloned())
        });
        routes.push(Route {
            workload: w.name.clone(),
            host: http.host.clone(),
            path_prefix: http.path_prefix.clone(),
            endpoint,
            node,
            node_region,
            moving: moving.is_some(),
            migration: moving.map(|m| m.id.clone()),
        });
    }
    Ok(RouteTable { routes })
}

pub(super) async fn get_routes(State(s): State<Arc<Shared>>) -> ApiResult<Json<RouteTable>> {
    blocking(&s, |s| Ok(Json(route_table(&s.store)?))).await
}

/// Who follows the route stream (a gateway says so in the query).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Follower {
    gateway: Option<String>,
    region: Option<String>,
    address: Option<String>,
}

/// Keeps a gateway listed for as long as its route stream is open.
pub(super) struct Listed {
    s: Arc<Shared>,
    id: Option<String>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.s
                .gateways
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
            self.s.quiet.send_modify(|v| *v += 1);
        }
    }
}

/// The route table as a stream of JSON lines: now, after each change, and every 15 s.
pub(super) async fn watch_routes(
    State(s): State<Arc<Shared>>,
    axum::extract::Query(f): axum::extract::Query<Follower>,
) -> axum::response::Response {
    struct Watch {
        s: Arc<Shared>,
        rx: tokio::sync::watch::Receiver<u64>,
        last: Option<Vec<u8>>,
        _listed: Listed,
    }
    if let Some(id) = &f.gateway {
        let info = GatewayInfo {
            id: id.clone(),
            region: f.region.clone().unwrap_or_default(),
            address: f.address.clone().unwrap_or_default(),
            connected_unix_ms: now_ms(),
        };
        s.gateways
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (info, HashSet::new()));
    }
    let w = Watch {
        rx: s.version.subscribe(),
        _listed: Listed {
            s: s.clone(),
            id: f.gateway.clone(),
        },
        s,
        last: None,
    };
    let stream = futures_util::stream::unfold(w, |mut w| async move {
        loop {
            let quiet = if w.last.is_some() {
                match tokio::time::timeout(ROUTES_REPEAT, w.rx.changed()).await {
                    Ok(Ok(())) => false,
                    Ok(Err(_)) => return None,
                    Err(_) => true,
                }
            } else {
                false
            };
            let table = blocking(&w.s, |s| Ok(route_table(&s.store)?)).await.ok()?;
            let mut line = serde_json::to_vec(&table).ok()?;
            line.push(b'\n');
            if quiet || w.last.as_ref() != Some(&line) {
                w.last = Some(line.clone());
                let chunk: std::result::Result<bytes::Bytes, std::convert::Infallible> =
                    Ok(bytes::Bytes::from(line));
                return Some((chunk, w));
            }
        }
    });
    axum::response::Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_default()
}

pub(super) async fn list_gateways(State(s): State<Arc<Shared>>) -> Json<Vec<GatewayInfo>> {
    let mut list: Vec<GatewayInfo> = s
        .gateways
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|(g, _)| g.clone())
        .collect();
    list.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
    Json(list)
}
