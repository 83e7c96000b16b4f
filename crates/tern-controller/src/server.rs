//! The HTTP API and the reconcile loop that marks silent nodes down and places pending
//! workloads.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::store::{Store, Tx};
use tern_api::traffic::{TrafficReport, TrafficSummary, WorkloadTraffic};
use tern_api::unix_ms as now_ms;

use crate::history::event;
use tern_api::*;
use tern_snapshot::digest;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// A node that has not sent a heartbeat for this long is marked down.
    pub down_after: Duration,
    /// Largest blob accepted.
    pub max_blob_bytes: usize,
    /// Migrations under way at once, per node (as source or destination) and in all.
    pub max_migrations_per_node: usize,
    pub max_migrations: usize,
    /// Start with automatic moves paused (the store keeps the state across restarts).
    pub placement_paused: bool,
    /// How often the rebalancer runs.
    pub rebalance_every: Duration,
    /// Passes in a row a better node must stay better before a workload moves there.
    pub confirm_passes: u32,
    /// Noise multiplied into every metric the scheduler sees (±fraction; testing knob).
    pub metric_noise: f64,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen,
            down_after: Duration::from_secs(5),
            max_blob_bytes: 256 << 20,
            max_migrations_per_node: 2,
            max_migrations: 4,
            placement_paused: false,
            rebalance_every: Duration::from_secs(2),
            confirm_passes: 2,
            metric_noise: 0.0,
        }
    }
}

struct Shared {
    store: Store,
    token: String,
    down_after: Duration,
    limits: crate::migration::Limits,
    /// Bumped whenever assignments may have changed; held heartbeats wait on it.
    version: tokio::sync::watch::Sender<u64>,
    /// Gateways following the route stream now, and the migrations each has reported quiet.
    gateways: std::sync::Mutex<HashMap<String, (GatewayInfo, HashSet<String>)>>,
    /// Bumped when a gateway reports quiet.
    quiet: tokio::sync::watch::Sender<u64>,
    /// The gateways' traffic reports of the last minute, per workload (not stored: it is
    /// only ever about now).
    traffic: std::sync::Mutex<crate::rebalance::TrafficLog>,
    auto: crate::rebalance::Auto,
}

/// How far back traffic summaries look.
const TRAFFIC_WINDOW_MS: u64 = 60_000;
/// How often gateways report.
pub const TRAFFIC_INTERVAL_MS: u64 = 2_000;

impl Shared {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// A running controller.
pub struct Controller {
    pub addr: SocketAddr,
    pub token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Controller {
    /// Open (or create) the store and token, bind, and serve in the background of the current
    /// tokio runtime.
    pub async fn start(config: Config) -> Result<Controller> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
        let token = load_or_create_token(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join("controller.redb"))?;
        // Nodes get a full grace period after a controller restart: their instances kept
        // running while it was away.
        let now = now_ms();
        store.write(|tx| {
            for mut n in tx.nodes()? {
                if n.status == NodeStatus::Up {
                    n.last_heartbeat_unix_ms = n.last_heartbeat_unix_ms.max(now);
                    tx.put_node(&n)?;
                }
            }
            Ok(())
        })?;
        let shared = Arc::new(Shared {
            store,
            token: token.clone(),
            down_after: config.down_after,
            limits: crate::migration::Limits {
                per_node: config.max_migrations_per_node.max(1),
                total: config.max_migrations.max(1),
            },
            version: tokio::sync::watch::channel(0).0,
            gateways: Default::default(),
            quiet: tokio::sync::watch::channel(0).0,
            traffic: Default::default(),
            auto: crate::rebalance::Auto {
                hysteresis: std::sync::Mutex::new(tern_scheduler::Hysteresis::new(
                    config.confirm_passes.max(1),
                )),
                state: std::sync::Mutex::new(PlacementState {
                    rebalance_every_ms: config.rebalance_every.as_millis() as u64,
                    confirm_passes: config.confirm_passes.max(1),
                    ..Default::default()
                }),
                noise: config.metric_noise,
            },
        });
        if config.placement_paused {
            shared
                .store
                .write(|tx| tx.set_counter(crate::rebalance::PAUSED, 1))?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(io(&config.data_dir))?;
        let addr = listener.local_addr().map_err(io(&config.data_dir))?;
        let app = router(shared.clone(), config.max_blob_bytes);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ticker = shared.clone();
        let rebalancer = shared.clone();
        let rebalance_every = config.rebalance_every.max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            let rebalance = tokio::spawn(async move {
                let mut every = tokio::time::interval(rebalance_every);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let s = rebalancer.clone();
                    let started = tokio::task::spawn_blocking(move || {
                        let traffic = s.traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        crate::rebalance::pass(&s.store, &traffic, &s.auto, s.limits, now_ms())
                    })
                    .await;
                    if matches!(started, Ok(Ok(true))) {
                        rebalancer.changed();
                    }
                }
            });
            let reconcile = tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(200));
                loop {
                    every.tick().await;
                    let s = ticker.clone();
                    // A failed pass is retried on the next tick; the store is unchanged.
                    let _ = tokio::task::spawn_blocking(move || reconcile(&s)).await;
                }
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            reconcile.abort();
            rebalance.abort();
        });
        Ok(Controller {
            addr,
            token,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait until the server has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn load_or_create_token(dir: &Path) -> Result<String> {
    let path = dir.join("token");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token = hex::encode(raw);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)?;
    Ok(token)
}

fn router(shared: Arc<Shared>, max_blob: usize) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/profile-schema", get(profile_schema))
        .route("/v1/nodes", post(register).get(list_nodes))
        .route("/v1/nodes/{name}", get(get_node))
        .route("/v1/nodes/{name}/heartbeat", post(heartbeat))
        .route("/v1/nodes/{name}/drain", post(drain_node))
        .route("/v1/nodes/{name}/undrain", post(undrain_node))
        .route("/v1/blobs/{digest}", put(put_blob).get(get_blob))
        .route("/v1/workloads", post(deploy).get(list_workloads))
        .route(
            "/v1/workloads/{name}",
            get(get_workload).delete(remove_workload),
        )
        .route("/v1/workloads/{name}/stop", post(stop_workload))
        .route("/v1/workloads/{name}/logs", get(logs))
        .route("/v1/workloads/{name}/migrate", post(migrate_workload))
        .route("/v1/workloads/{name}/clone", post(clone_workload))
        .route("/v1/routes", get(get_routes))
        .route("/v1/routes/watch", get(watch_routes))
        .route("/v1/migrations", get(list_migrations))
        .route("/v1/migrations/{id}", get(get_migration))
        .route("/v1/migrations/{id}/commit", post(commit_migration))
        .route("/v1/migrations/{id}/news", post(migration_news))
        .route("/v1/migrations/{id}/quiesce", post(quiesce_migration))
        .route("/v1/migrations/{id}/quiet", post(quiet_migration))
        .route("/v1/gateways", get(list_gateways))
        .route("/v1/traffic", post(report_traffic))
        .route("/v1/workloads/{name}/traffic", get(workload_traffic))
        .route("/v1/workloads/{name}/explain", get(explain_workload))
        .route("/v1/placement", get(placement_state))
        .route("/v1/network", get(network))
        .route("/v1/placement/pause", post(pause_placement))
        .route("/v1/placement/resume", post(resume_placement))
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

async fn register(
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

async fn list_nodes(State(s): State<Arc<Shared>>) -> ApiResult<Json<Vec<Node>>> {
    blocking(&s, |s| Ok(Json(s.store.nodes()?))).await
}

async fn get_node(
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

async fn heartbeat(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    // Subscribe before reading, so that a change made meanwhile is not missed.
    let mut version = s.version.subscribe();
    version.borrow_and_update();
    let running: Vec<String> = hb.instances.iter().map(|i| i.id.clone()).collect();
    // Never hold a heartbeat so long that the node would look silent.
    let wait = Duration::from_millis(hb.wait_ms.min(5000)).min(s.down_after / 2);
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
fn peers(tx: &Tx, me: &str) -> Result<Vec<Peer>> {
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

async fn migrate_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<(StatusCode, Json<Migration>)> {
    start_migration(s, name, req, MigrationKind::Move).await
}

async fn clone_workload(
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

async fn start_migration(
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

async fn drain_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Node>> {
    set_drain(s, name, true).await
}

async fn undrain_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Node>> {
    set_drain(s, name, false).await
}

async fn set_drain(s: Arc<Shared>, name: String, drain: bool) -> ApiResult<Json<Node>> {
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

async fn list_migrations(State(s): State<Arc<Shared>>) -> ApiResult<Json<Vec<Migration>>> {
    blocking(&s, |s| Ok(Json(s.store.migrations()?))).await
}

async fn get_migration(
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

async fn migration_news(
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

async fn commit_migration(
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

/// The instances `node` should run.
fn assignments(workloads: Vec<Workload>, node: &str) -> Vec<Assignment> {
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
fn endpoints_of(w: &Workload, r: &InstanceReport) -> Vec<Endpoint> {
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
fn apply_report(tx: &mut Tx, node: &str, r: &InstanceReport, now: u64) -> Result<bool> {
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

/// The gateways' view: every workload with an `[http]` table, where it runs, and whether a
/// migration is stopping it.
fn route_table(store: &Store) -> Result<RouteTable> {
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

async fn get_routes(State(s): State<Arc<Shared>>) -> ApiResult<Json<RouteTable>> {
    blocking(&s, |s| Ok(Json(route_table(&s.store)?))).await
}

/// Who follows the route stream (a gateway says so in the query).
#[derive(Debug, Default, Deserialize)]
struct Follower {
    gateway: Option<String>,
    region: Option<String>,
    address: Option<String>,
}

/// Keeps a gateway listed for as long as its route stream is open.
struct Listed {
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
async fn watch_routes(
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
                match tokio::time::timeout(Duration::from_secs(15), w.rx.changed()).await {
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

async fn report_traffic(State(s): State<Arc<Shared>>, Json(r): Json<TrafficReport>) -> StatusCode {
    let now = now_ms();
    let mut t = s.traffic.lock().unwrap_or_else(|p| p.into_inner());
    for w in r.workloads {
        let q = t.entry(w.workload.clone()).or_default();
        q.push_back((now, w));
        while q
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > TRAFFIC_WINDOW_MS)
        {
            q.pop_front();
        }
    }
    StatusCode::NO_CONTENT
}

/// The workload's traffic over the last minute (or since the first report, if later).
async fn workload_traffic(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> Json<TrafficSummary> {
    let now = now_ms();
    let t = s.traffic.lock().unwrap_or_else(|p| p.into_inner());
    let recent: Vec<&(u64, WorkloadTraffic)> = t
        .get(&name)
        .map(|q| {
            q.iter()
                .filter(|(at, _)| now.saturating_sub(*at) <= TRAFFIC_WINDOW_MS)
                .collect()
        })
        .unwrap_or_default();
    let span_ms = recent
        .first()
        .map(|(at, _)| now.saturating_sub(*at) + TRAFFIC_INTERVAL_MS)
        .unwrap_or(TRAFFIC_WINDOW_MS)
        .clamp(TRAFFIC_INTERVAL_MS, TRAFFIC_WINDOW_MS);
    Json(tern_api::traffic::summarize(
        recent.into_iter().map(|(_, w)| w),
        span_ms as f64 / 1e3,
    ))
}

/// Why a workload runs where it does, term by term.
async fn explain_workload(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<ExplainReply>> {
    let traffic = s.traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
    blocking(&s, move |s| {
        let now = now_ms();
        let reply = (|| -> Result<Option<ExplainReply>> {
            let records = crate::rebalance::Records::read(&s.store)?;
            let paused = s.store.counter(crate::rebalance::PAUSED)? != 0;
            let Some(w) = records.workloads.iter().find(|w| w.name == name).cloned() else {
                return Ok(None);
            };
            let sched = crate::rebalance::live(&records, &traffic, now, 0.0);
            let explanation = match sched.workload_index(&name) {
                Some(i) => sched.explain(i, 5),
                None => tern_scheduler::Explanation {
                    workload: name.clone(),
                    current: None,
                    alternatives: Vec::new(),
                    infeasible: Vec::new(),
                    verdict: tern_scheduler::Verdict::Stay {
                        reason: format!(
                            "it is {}: only running and pending workloads are placed",
                            format!("{:?}", w.status).to_lowercase()
                        ),
                    },
                },
            };
            Ok(Some(ExplainReply {
                workload: name.clone(),
                node: w.node.clone(),
                paused,
                explanation,
                avoid: w
                    .avoid
                    .into_iter()
                    .filter(|a| a.until_unix_ms > now)
                    .collect(),
            }))
        })()?;
        reply.map(Json).ok_or_else(|| not_found("workload", &name))
    })
    .await
}

async fn network(State(s): State<Arc<Shared>>) -> ApiResult<Json<NetworkReply>> {
    blocking(&s, |s| {
        let nodes = s.store.nodes()?;
        Ok(Json(NetworkReply {
            regions: crate::view::network(&nodes, now_ms(), &mut |x| x),
            nodes: nodes
                .into_iter()
                .map(|n| NodeLinks {
                    region: n.labels.get("region").cloned().unwrap_or_default(),
                    node: n.name,
                    links: n.links,
                })
                .collect(),
        }))
    })
    .await
}

async fn placement_state(State(s): State<Arc<Shared>>) -> ApiResult<Json<PlacementState>> {
    blocking(&s, |s| {
        let paused = s.store.counter(crate::rebalance::PAUSED)? != 0;
        let mut st = s
            .auto
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        st.paused = paused;
        Ok(Json(st))
    })
    .await
}

async fn pause_placement(State(s): State<Arc<Shared>>) -> ApiResult<Json<PlacementState>> {
    set_paused(&s, true).await?;
    placement_state(State(s)).await
}

async fn resume_placement(State(s): State<Arc<Shared>>) -> ApiResult<Json<PlacementState>> {
    set_paused(&s, false).await?;
    placement_state(State(s)).await
}

async fn set_paused(s: &Arc<Shared>, paused: bool) -> ApiResult<()> {
    blocking(s, move |s| {
        s.store
            .write(|tx| tx.set_counter(crate::rebalance::PAUSED, paused as u64))?;
        // Confirmations gathered before a pause say nothing about the world after it.
        let mut h = s.auto.hysteresis.lock().unwrap_or_else(|p| p.into_inner());
        *h = tern_scheduler::Hysteresis::new(h.confirm_passes);
        Ok(())
    })
    .await
}

async fn list_gateways(State(s): State<Arc<Shared>>) -> Json<Vec<GatewayInfo>> {
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

#[derive(Debug, Deserialize)]
struct QuietQuery {
    gateway: String,
}

/// A gateway holds the migration's workload's requests and has none in flight.
async fn quiet_migration(
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
async fn quiesce_migration(
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
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

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn put_blob(
    State(s): State<Arc<Shared>>,
    UrlPath(d): UrlPath<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if !is_digest(&d) {
        return Err(bad(format!(
            "{d:?} is not a digest (sha256:<64 hex digits>)"
        )));
    }
    let got = digest(&body);
    if got != d {
        return Err(bad(format!("body has digest {got}, not {d}")));
    }
    blocking(&s, move |s| {
        if s.store.has_blob(&d)? {
            return Ok(StatusCode::OK);
        }
        s.store.write(|tx| tx.put_blob(&d, &body))?;
        Ok(StatusCode::CREATED)
    })
    .await
}

async fn get_blob(
    State(s): State<Arc<Shared>>,
    UrlPath(d): UrlPath<String>,
) -> ApiResult<Response> {
    blocking(&s, move |s| {
        let bytes = s
            .store
            .blob(&d)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no blob {d}")))?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    })
    .await
}

fn spec_digest(spec: &WorkloadSpec) -> String {
    digest(&serde_json::to_vec(spec).unwrap_or_default())
}

async fn deploy(
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

async fn list_workloads(State(s): State<Arc<Shared>>) -> ApiResult<Json<Vec<Workload>>> {
    blocking(&s, |s| Ok(Json(s.store.workloads()?))).await
}

async fn get_workload(
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

async fn stop_workload(
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

async fn remove_workload(
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
struct LogsQuery {
    #[serde(default)]
    from: u64,
}

async fn logs(
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

/// One pass: mark silent nodes down (their workloads go back to pending), then place every
/// pending workload whose backoff has passed.
fn reconcile(s: &Shared) -> Result<()> {
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
fn place_pending(tx: &mut Tx, now: u64) -> Result<bool> {
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
