//! The HTTP API: the router, bearer-token auth, errors as JSON, and one module per
//! resource.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use tern_api::ErrorReply;

use crate::shared::Shared;
use crate::Error;

mod blobs;
mod heartbeat;
mod migrations;
mod nodes;
mod placement;
mod routes;
mod workloads;

use blobs::*;
use heartbeat::*;
use migrations::*;
use nodes::*;
use placement::*;
use routes::*;
use workloads::*;

/// Every route of the API: its path and its handlers. `/openapi.json` is checked against
/// this list (paths and methods) by a test, so that the document cannot drift from it.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("/openapi.json", get(openapi)),
        ("/v1/profile-schema", get(profile_schema)),
        ("/v1/nodes", post(register).get(list_nodes)),
        ("/v1/nodes/{name}", get(get_node)),
        ("/v1/nodes/{name}/heartbeat", post(heartbeat)),
        ("/v1/nodes/{name}/drain", post(drain_node)),
        ("/v1/nodes/{name}/undrain", post(undrain_node)),
        ("/v1/blobs/{digest}", put(put_blob).get(get_blob)),
        ("/v1/workloads", post(deploy).get(list_workloads)),
        (
            "/v1/workloads/{name}",
            get(get_workload).delete(remove_workload),
        ),
        ("/v1/workloads/{name}/stop", post(stop_workload)),
        ("/v1/workloads/{name}/logs", get(logs)),
        ("/v1/workloads/{name}/migrate", post(migrate_workload)),
        ("/v1/workloads/{name}/clone", post(clone_workload)),
        ("/v1/routes", get(get_routes)),
        ("/v1/routes/watch", get(watch_routes)),
        ("/v1/migrations", get(list_migrations)),
        ("/v1/migrations/{id}", get(get_migration)),
        ("/v1/migrations/{id}/commit", post(commit_migration)),
        ("/v1/migrations/{id}/news", post(migration_news)),
        ("/v1/migrations/{id}/quiesce", post(quiesce_migration)),
        ("/v1/migrations/{id}/quiet", post(quiet_migration)),
        ("/v1/gateways", get(list_gateways)),
        ("/v1/traffic", post(report_traffic)),
        ("/v1/workloads/{name}/traffic", get(workload_traffic)),
        ("/v1/workloads/{name}/explain", get(explain_workload)),
        ("/v1/placement", get(placement_state)),
        ("/v1/network", get(network)),
        ("/v1/placement/pause", post(pause_placement)),
        ("/v1/placement/resume", post(resume_placement)),
    ]
}

/// The paths the API serves (`/openapi.json` must document exactly these).
pub fn paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

pub(crate) fn router(shared: Arc<Shared>, max_blob: usize) -> Router {
    let mut router = Router::new();
    for (path, handlers) in routes() {
        router = router.route(path, handlers);
    }
    router
        .layer(DefaultBodyLimit::max(max_blob))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

/// An API error: a status and a message, as `{"error": ...}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no {what} named {name:?}"))
}

async fn auth(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), s.token.as_bytes()));
    if !ok {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (see <controller data>/token)".into(),
        )
        .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Run a store operation off the async threads (redb commits wait for the disk).
async fn blocking<R: Send + 'static>(
    s: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> ApiResult<R> + Send + 'static,
) -> ApiResult<R> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn profile_schema() -> Json<serde_json::Value> {
    Json(tern_profile::json_schema())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
