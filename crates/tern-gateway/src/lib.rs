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

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tern_api::traffic::{TrafficReport, WorkloadTraffic, REPORT_INTERVAL_MS};
use tern_api::RouteTable;
use tokio::sync::watch;

type Body = BoxBody<Bytes, hyper::Error>;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The controller's base URL (`http://host:port`).
    pub controller: String,
    pub token: String,
    /// The region this gateway serves (where its clients are).
    pub region: String,
    /// How long a request may wait for its workload to run somewhere.
    pub hold_timeout: Duration,
    /// How many requests may wait at once; more get a 503 at once.
    pub max_held: usize,
    /// Largest request head (line and headers) accepted; larger gets a 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head (slow clients are cut off).
    pub header_timeout: Duration,
    /// A header that names the client's region, set by a trusted proxy in front (a CDN).
    pub region_header: Option<String>,
    /// Client address → region, for counting demand (after the header, before our region).
    pub region_cidrs: Vec<demand::Cidr>,
    /// How long a service may take to start its answer (then 504; it is not sent again).
    pub upstream_timeout: Duration,
    /// Made-up delays from this gateway's clients to the nodes (added to each request).
    pub delays: std::sync::Arc<tern_profile::DelayTable>,
}

impl Config {
    pub fn new(listen: SocketAddr, controller: &str, token: &str, region: &str) -> Config {
        Config {
            listen,
            controller: controller.trim_end_matches('/').to_string(),
            token: token.to_string(),
            region: region.to_string(),
            hold_timeout: Duration::from_secs(10),
            max_held: 1000,
            max_header_bytes: 16 << 10,
            header_timeout: Duration::from_secs(10),
            region_header: None,
            region_cidrs: Vec::new(),
            upstream_timeout: Duration::from_secs(30),
            delays: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct State {
    routes: watch::Receiver<Option<Arc<RouteTable>>>,
    client: Client<HttpConnector, Body>,
    config: Config,
    held: AtomicUsize,
    /// Requests sent to each workload and not yet answered in full.
    in_flight: Mutex<HashMap<String, usize>>,
    answered: tokio::sync::Notify,
    /// Counts since the last report to the controller, per workload.
    traffic: Mutex<HashMap<String, WorkloadTraffic>>,
    /// Endpoints that refused a connection: out of routing until a probe connects again.
    down: Mutex<HashSet<String>>,
    /// Bumped when an endpoint comes back, to wake the requests held for it.
    back: watch::Sender<u64>,
}

impl State {
    fn is_down(&self, endpoint: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(endpoint)
    }

    /// Take `endpoint` out of routing and probe it (a TCP connect every 250 ms) until it
    /// accepts again or no route names it any more.
    fn mark_down(self: &Arc<Self>, endpoint: &str) {
        if !self
            .down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.to_string())
        {
            return;
        }
        let s = self.clone();
        let endpoint = endpoint.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let named = s.routes.borrow().as_deref().is_some_and(|t| {
                    t.routes
                        .iter()
                        .any(|r| r.endpoint.as_deref() == Some(endpoint.as_str()))
                });
                let up = named
                    && tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(endpoint.as_str()),
                    )
                    .await
                    .is_ok_and(|c| c.is_ok());
                if up || !named {
                    s.down
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&endpoint);
                    s.back.send_modify(|v| *v += 1);
                    return;
                }
            }
        });
    }
}

/// One request in flight to a workload, until dropped (its response body is done).
struct InFlight {
    state: Arc<State>,
    workload: String,
}

impl InFlight {
    fn new(state: &Arc<State>, workload: &str) -> InFlight {
        *state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workload.to_string())
            .or_default() += 1;
        InFlight {
            state: state.clone(),
            workload: workload.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self
            .state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.workload) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.workload);
            }
        }
        drop(m);
        self.state.answered.notify_waiters();
    }
}

/// A response body that keeps its request counted in flight until it is done.
struct Tracked {
    inner: Incoming,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

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

/// Follow the controller's route stream for as long as the gateway runs, reconnecting when it
/// breaks or falls silent. The last table stays in use meanwhile (what ran keeps running).
async fn follow(
    config: Config,
    id: String,
    addr: SocketAddr,
    client: Client<HttpConnector, Body>,
    tx: watch::Sender<Option<Arc<RouteTable>>>,
) {
    let url = format!(
        "{}/v1/routes/watch?gateway={}&region={}&address={}",
        config.controller,
        query(&id),
        query(&config.region),
        query(&addr.to_string())
    );
    loop {
        let req = Request::get(url.as_str())
            .header("authorization", format!("Bearer {}", config.token))
            .body(empty());
        if let Ok(req) = req {
            if let Ok(resp) = client.request(req).await {
                if resp.status().is_success() {
                    let mut body = resp.into_body();
                    let mut buf = Vec::new();
                    // The controller repeats the table every 15 s: silence means it is gone.
                    while let Ok(Some(Ok(frame))) =
                        tokio::time::timeout(Duration::from_secs(40), body.frame()).await
                    {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        buf.extend_from_slice(&data);
                        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=i).collect();
                            if let Ok(t) = serde_json::from_slice::<RouteTable>(&line) {
                                tx.send_if_modified(|old| {
                                    let same = old.as_deref() == Some(&t);
                                    if !same {
                                        *old = Some(Arc::new(t));
                                    }
                                    !same
                                });
                            }
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Percent-encode a query value.
fn query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// For every migration the routes say is stopping a workload: once nothing is in flight to it
/// from here (new requests are held already), tell the controller, once.
async fn report_quiet(state: Arc<State>, id: String) {
    let mut routes = state.routes.clone();
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        let table = routes.borrow_and_update().clone();
        let moving: Vec<(String, String)> = table
            .iter()
            .flat_map(|t| t.routes.iter())
            .filter(|r| r.moving)
            .filter_map(|r| Some((r.workload.clone(), r.migration.clone()?)))
            .filter(|(_, m)| !reported.contains(m))
            .collect();
        for (workload, migration) in moving {
            reported.insert(migration.clone());
            let s = state.clone();
            let gateway = id.clone();
            tokio::spawn(async move {
                loop {
                    let notified = s.answered.notified();
                    let busy = s
                        .in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&workload)
                        .copied()
                        .unwrap_or(0);
                    if busy == 0 {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                }
                let url = format!(
                    "{}/v1/migrations/{}/quiet?gateway={}",
                    s.config.controller,
                    query(&migration),
                    query(&gateway)
                );
                if let Ok(req) = Request::post(url.as_str())
                    .header("authorization", format!("Bearer {}", s.config.token))
                    .body(empty())
                {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), s.client.request(req)).await;
                }
            });
        }
        if routes.changed().await.is_err() {
            return;
        }
    }
}

/// Send the counts to the controller every 2 s (what cannot be sent is dropped: it is about
/// the moment, and the next report carries on).
async fn report_traffic(state: Arc<State>, id: String) {
    let url = format!("{}/v1/traffic", state.config.controller);
    loop {
        tokio::time::sleep(Duration::from_millis(REPORT_INTERVAL_MS)).await;
        let counts = std::mem::take(&mut *state.traffic.lock().unwrap_or_else(|p| p.into_inner()));
        if counts.is_empty() {
            continue;
        }
        let report = TrafficReport {
            gateway: id.clone(),
            region: state.config.region.clone(),
            workloads: counts.into_values().collect(),
        };
        let Ok(body) = serde_json::to_vec(&report) else {
            continue;
        };
        if let Ok(req) = Request::post(url.as_str())
            .header("authorization", format!("Bearer {}", state.config.token))
            .header("content-type", "application/json")
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), state.client.request(req)).await;
        }
    }
}

/// The client's region: a trusted header, else the address table, else this gateway's.
fn client_region(config: &Config, headers: &hyper::HeaderMap, peer: SocketAddr) -> String {
    config
        .region_header
        .as_ref()
        .and_then(|h| headers.get(h.as_str()))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .or_else(|| demand::region_of(&config.region_cidrs, peer.ip()).map(str::to_string))
        .unwrap_or_else(|| config.region.clone())
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    r
}

/// Counts a request among the held ones while it waits.
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &hyper::header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, s: &Arc<State>) -> Response<Body> {
    let started = std::time::Instant::now();
    let region = client_region(&s.config, req.headers(), peer);
    let (resp, workload) = forward(req, peer, s).await;
    if let Some(w) = workload.filter(|w| w != "(any)") {
        let mut t = s.traffic.lock().unwrap_or_else(|p| p.into_inner());
        let e = t.entry(w.clone()).or_insert_with(|| WorkloadTraffic {
            workload: w,
            ..WorkloadTraffic::default()
        });
        *e.by_region.entry(region).or_insert(0) += 1;
        if resp.status().is_server_error() {
            e.errors += 1;
        }
        e.latency.record(started.elapsed().as_secs_f64() * 1e3);
    }
    resp
}

/// The response, and the workload the request was for (None when no route matched).
async fn forward(
    req: Request<Incoming>,
    peer: SocketAddr,
    s: &Arc<State>,
) -> (Response<Body>, Option<String>) {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    // A request without a body can be sent again when nothing reached the service.
    let replayable = !parts.headers.contains_key(hyper::header::TRANSFER_ENCODING)
        && parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    let mut body = Some(body);
    let deadline = tokio::time::Instant::now() + s.config.hold_timeout;
    let mut routes = s.routes.clone();
    let mut held: Option<Held<'_>> = None;
    loop {
        let table = routes.borrow_and_update().clone();
        let (workload, target, delay) = match &table {
            None => ("(any)".to_string(), None, Duration::ZERO),
            Some(t) => match routes::resolve(t, host.as_deref(), &path) {
                None => {
                    let msg = format!(
                        "tern gateway: no workload serves {}{path}\n",
                        host.as_deref().unwrap_or("")
                    );
                    return (text(StatusCode::NOT_FOUND, msg), None);
                }
                Some(r) => (
                    r.workload.clone(),
                    r.endpoint.clone().filter(|e| !r.moving && !s.is_down(e)),
                    s.config.delays.client_to_node(
                        tern_profile::End {
                            name: None,
                            region: &s.config.region,
                        },
                        tern_profile::End {
                            name: r.node.as_deref(),
                            region: r.node_region.as_deref().unwrap_or(""),
                        },
                    ),
                ),
            },
        };
        // Counted in flight first, then the route checked again: a gateway that reports the
        // workload quiet has either seen this request counted or it holds it.
        let in_flight = target.as_ref().map(|_| InFlight::new(s, &workload));
        let still = target.is_some() && {
            let now = routes.borrow().clone();
            now.as_deref()
                .and_then(|t| routes::resolve(t, host.as_deref(), &path))
                .is_some_and(|r| !r.moving && r.endpoint == target)
        };
        if let (Some(endpoint), true, Some(in_flight)) = (target, still, in_flight) {
            let b = match body.take() {
                Some(b) => b.boxed(),
                None => empty(),
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let sent = tokio::time::timeout(
                s.config.upstream_timeout,
                s.client.request(upstream(&parts, &endpoint, b, peer)),
            )
            .await;
            let Ok(sent) = sent else {
                let msg = format!(
                    "tern gateway: {workload} did not answer within {:?}\n",
                    s.config.upstream_timeout
                );
                return (text(StatusCode::GATEWAY_TIMEOUT, msg), Some(workload));
            };
            if matches!(&sent, Err(e) if e.is_connect()) {
                s.mark_down(&endpoint);
            }
            match sent {
                Ok(resp) => {
                    let resp = resp.map(|b| {
                        Tracked {
                            inner: b,
                            _in_flight: in_flight,
                        }
                        .boxed()
                    });
                    return (resp, Some(workload));
                }
                // Nothing reached the service: it stopped accepting (it moved, or is
                // moving). Wait for the route to change, then send it there.
                Err(e) if not_delivered(&e) && replayable => {}
                Err(e) if not_delivered(&e) => {
                    return (
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("tern gateway: {workload} does not accept connections\n"),
                        ),
                        Some(workload.clone()),
                    );
                }
                Err(e) => {
                    return (
                        text(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "tern gateway: {workload}: {}\n",
                                std::error::Error::source(&e)
                                    .map(|s| s.to_string())
                                    .unwrap_or_else(|| e.to_string())
                            ),
                        ),
                        Some(workload.clone()),
                    );
                }
            }
        }
        if held.is_none() {
            if s.held.fetch_add(1, Ordering::SeqCst) >= s.config.max_held {
                s.held.fetch_sub(1, Ordering::SeqCst);
                let msg =
                    format!("tern gateway: too many requests waiting; {workload} is not running\n");
                return (text(StatusCode::SERVICE_UNAVAILABLE, msg), Some(workload));
            }
            held = Some(Held(&s.held));
        }
        let mut back = s.back.subscribe();
        let changed = async {
            tokio::select! {
                r = routes.changed() => r.is_ok(),
                r = back.changed() => r.is_ok(),
            }
        };
        match tokio::time::timeout_at(deadline, changed).await {
            Ok(true) => continue,
            _ => {
                return (
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("tern gateway: {workload} has no running instance\n"),
                    ),
                    Some(workload.clone()),
                );
            }
        }
    }
}

/// The request never reached the service: no connection, or a kept-alive one that had closed
/// before it was written (hyper cancels it). Anything else may have been processed.
fn not_delivered(e: &hyper_util::client::legacy::Error) -> bool {
    e.is_connect()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(|h| h.is_canceled())
}

fn upstream(
    parts: &hyper::http::request::Parts,
    endpoint: &str,
    body: Body,
    peer: SocketAddr,
) -> Request<Body> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = format!("http://{endpoint}{pq}")
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            req.headers_mut().append(k, v.clone());
        }
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&peer.ip().to_string()) {
        req.headers_mut().append("x-forwarded-for", v);
    }
    req
}
