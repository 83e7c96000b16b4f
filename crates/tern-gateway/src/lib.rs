//! Tern's gateway: an HTTP/1.1 reverse proxy in front of the fleet's services. Each request
//! goes to the node that runs its workload now (by host name or path prefix, from the
//! profiles' `[http]` tables), straight to that instance's socket, over kept-alive
//! connections; bodies stream through. Where things run it learns from the controller's
//! route stream (`/v1/routes/watch`: pushed at every change), never by polling. A request for
//! a workload that is being stopped for a move, or has no running instance yet, is held
//! (bounded queue and deadline) until it runs somewhere, then sent there; past the deadline it
//! gets a 503 with `Retry-After`. A host or path nobody serves gets a 404 that says so.
//!
//! Moves without errors: just before a migration stops its program, the controller marks the
//! route moving; from then on this gateway sends nothing new to it, waits until the requests
//! it has in flight there are answered, and reports the workload quiet, so that the program
//! stops with no request in progress. Once it runs at its destination the held requests go
//! there. `routes.rs` is the pure part (matching); this file does the I/O.

pub mod demand;
pub mod routes;

mod config;
mod controller;
mod forward;
mod response;
mod state;
mod upstream;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

pub use config::{Config, Error};
use controller::{follow, report_quiet, report_traffic};
use forward::handle;
use state::State;

/// A running gateway; it stops when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Bind and serve in the background of the current Tokio runtime.
pub async fn start(config: Config) -> Result<Gateway, Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let (tx, rx) = watch::channel(None);
    let id = format!("{}@{addr}", config.region);
    let follow = tokio::spawn(follow(config.clone(), id.clone(), addr, client.clone(), tx));
    let state = Arc::new(State {
        routes: rx,
        client,
        config,
        held: AtomicUsize::new(0),
        in_flight: Mutex::new(HashMap::new()),
        answered: tokio::sync::Notify::new(),
        traffic: Mutex::new(HashMap::new()),
        down: Mutex::new(HashSet::new()),
        back: watch::channel(0).0,
    });
    let quiet = tokio::spawn(report_quiet(state.clone(), id.clone()));
    let traffic = tokio::spawn(report_traffic(state.clone(), id));
    let serve = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // Out of descriptors or the like: let others finish, then go on.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let s = state.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(handle(req, peer, &s).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(state.config.header_timeout)
                    .max_buf_size(state.config.max_header_bytes.max(8192))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Gateway {
        addr,
        tasks: vec![serve, follow, quiet, traffic],
    })
}
