//! A running controller: its configuration, its store and token, the API server and the
//! background passes (reconcile, rebalance).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tern_api::unix_ms as now_ms;
use tern_api::{NodeStatus, PlacementState};

use crate::http::router;
use crate::reconcile::reconcile;
use crate::shared::Shared;
use crate::store::Store;
use crate::{Error, Result};

/// How often the reconcile pass runs (silent nodes, stale migrations, drains, pending).
pub const RECONCILE_EVERY: Duration = Duration::from_millis(200);

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
                let mut every = tokio::time::interval(RECONCILE_EVERY);
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
