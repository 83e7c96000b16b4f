//! Migrations: starting a move or a clone, listing them, the nodes' news, the commit, and
//! the quiesce handshake with the gateways.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tern_api::unix_ms as now_ms;
use tern_api::{
    CommitReply, CommitRequest, MigrateRequest, Migration, MigrationKind, MigrationNews,
    QuiesceReply,
};

use super::{bad, blocking, not_found, valid_name, ApiError, ApiResult};
use crate::shared::Shared;

/// Longest the quiesce question waits for the gateways to report quiet; the source pauses
/// then anyway (a gateway that cannot answer must not hold a migration).
const QUIESCE_WAIT: Duration = Duration::from_secs(2);

pub(super) async fn migrate_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    start_migration(s, name, req, MigrationKind::Move).await
}

pub(super) async fn clone_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    if let Some(new) = &req.name {
        if !valid_name(new) {
            return Err(bad(format!("workload name {new:?} is not valid")));
        }
    }
    start_migration(s, name, req, MigrationKind::Clone).await
}

pub(super) async fn start_migration(
    s: Arc<Shared>,
    name: String,
    req: MigrateRequest,
    kind: MigrationKind,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    blocking(&s, move |s| {
        let exists = s.store.workload(&name)?.is_some();
        let m = s.store.write(|tx| {
            crate::migration::start(tx, &name, &req, kind, "requested", s.limits, now_ms())
        })?;
        match m {
            Ok(m) => {
                s.changed();
                Ok((StatusCode::CREATED, Json(m)))
            }
            Err(reason) if !exists => Err(ApiError(StatusCode::NOT_FOUND, reason)),
            Err(reason) => Err(ApiError(StatusCode::CONFLICT, reason)),
        }
    })
    .await
}

pub(super) async fn list_migrations(
    State(s): State<Arc<Shared>>,
) -> ApiResult<Json<Vec<Migration>>> {
    blocking(&s, |s| Ok(Json(s.store.migrations()?))).await
}

pub(super) async fn get_migration(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Migration>> {
    blocking(&s, move |s| {
        s.store
            .migration(&id)?
            .map(Json)
            .ok_or_else(|| not_found("migration", &id))
    })
    .await
}

pub(super) async fn migration_news(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    Json(mut news): Json<MigrationNews>,
) -> ApiResult<StatusCode> {
    news.update.id = id;
    blocking(&s, move |s| {
        let changed = s
            .store
            .write(|tx| crate::migration::apply_update(tx, &news.node, &news.update, now_ms()))?;
        if changed {
            s.changed();
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub(super) async fn commit_migration(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    Json(req): Json<CommitRequest>,
) -> ApiResult<Json<CommitReply>> {
    blocking(&s, move |s| {
        let reply = s
            .store
            .write(|tx| crate::migration::commit(tx, &id, &req, now_ms()))?;
        s.changed();
        Ok(Json(reply))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct QuietQuery {
    gateway: String,
}

/// A gateway holds the migration's workload's requests and has none in flight.
pub(super) async fn quiet_migration(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<QuietQuery>,
) -> StatusCode {
    let known = match s
        .gateways
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&q.gateway)
    {
        Some((_, quiet)) => {
            quiet.insert(id);
            true
        }
        None => false,
    };
    s.quiet.send_modify(|v| *v += 1);
    if known {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// The source is about to pause: have the gateways hold its workload's requests, and answer
/// once every connected gateway says it has none in flight (or after 2 s: a gateway that
/// does not answer must not hold a migration up; its requests may then fail).
pub(super) async fn quiesce_migration(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<QuiesceReply>> {
    let mid = id.clone();
    let active = blocking(&s, move |s| {
        let found = s.store.write(|tx| {
            let Some(mut m) = tx.migration(&mid)? else {
                return Ok(None);
            };
            // Only a workload the gateways route to has requests to hold.
            let routed = tx.workload(&m.workload)?.is_some_and(|w| {
                let http = &w.spec.profile.http;
                http.host.is_some() || http.path_prefix.is_some()
            });
            if !routed {
                return Ok(Some(false));
            }
            if m.outcome.is_none() && !m.quiesce {
                m.quiesce = true;
                tx.put_migration(&m)?;
            }
            Ok(Some(m.outcome.is_none()))
        })?;
        found.ok_or_else(|| not_found("migration", &mid))
    })
    .await?;
    if !active {
        return Ok(Json(QuiesceReply::default()));
    }
    s.changed();
    let mut rx = s.quiet.subscribe();
    let deadline = tokio::time::Instant::now() + QUIESCE_WAIT;
    loop {
        let (all, n) = {
            let g = s.gateways.lock().unwrap_or_else(|p| p.into_inner());
            (g.values().all(|(_, q)| q.contains(&id)), g.len())
        };
        if all {
            return Ok(Json(QuiesceReply {
                quiet: true,
                gateways: n,
            }));
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Ok(Json(QuiesceReply {
                quiet: false,
                gateways: n,
            }));
        }
    }
}
