//! One request's path through the gateway, as small steps: find its route ([`pick`]), count
//! it in flight and check the route again, add the link's made-up delay, send it with a
//! deadline ([`send`]), and on the way back either stream the answer, hold the request until
//! the route changes ([`admit`], [`route_changes`]), or answer for the service with the
//! status that says what happened ([`failure`]). Only a request that cannot have reached the
//! service (no connection, or a kept-alive one cancelled before it was written) and has no
//! body is ever sent twice.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tern_api::traffic::WorkloadTraffic;
use tern_api::{Route, RouteTable};

use crate::response::{empty, text, Body};
use crate::state::{Held, InFlight, State, Tracked};
use crate::upstream::{not_delivered, upstream};
use crate::{demand, routes, Config};

/// Serve one request and count it for its workload.
pub(crate) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    s: &Arc<State>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let region = client_region(&s.config, req.headers(), peer);
    let (resp, workload) = forward(req, peer, s).await;
    if let Some(w) = workload {
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

/// Where a request goes, as far as the route table knows now.
#[derive(Debug, PartialEq)]
enum Pick<'a> {
    /// No table yet (the controller has not answered since the gateway started): wait.
    NoTable,
    /// Nobody serves this host and path.
    NotFound,
    /// The workload's route; `endpoint` is None while it must not be sent to (nothing runs
    /// it, a migration is stopping it, or its endpoint refused a connection).
    Route {
        route: &'a Route,
        endpoint: Option<&'a str>,
    },
}

fn pick<'a>(
    table: Option<&'a RouteTable>,
    host: Option<&str>,
    path: &str,
    is_down: impl Fn(&str) -> bool,
) -> Pick<'a> {
    let Some(table) = table else {
        return Pick::NoTable;
    };
    let Some(route) = routes::resolve(table, host, path) else {
        return Pick::NotFound;
    };
    let endpoint = route
        .endpoint
        .as_deref()
        .filter(|e| !route.moving && !is_down(e));
    Pick::Route { route, endpoint }
}

/// A request without a body can be sent again when nothing reached the service.
fn replayable(parts: &Parts) -> bool {
    !parts.headers.contains_key(hyper::header::TRANSFER_ENCODING)
        && parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// Why the gateway answers instead of the service.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    NotFound {
        host: String,
        path: String,
    },
    /// The service accepted but did not start its answer in time (it may have processed it).
    Timeout(Duration),
    /// It refuses connections and the request cannot wait for another place (it has a body).
    Refused,
    /// The connection broke after the request may have been delivered.
    Broken(String),
    /// The queue of held requests is full.
    TooManyHeld,
    /// The hold deadline passed with nothing running the workload.
    NoInstance,
}

fn failure(workload: &str, f: Failure) -> Response<Body> {
    let (status, msg) = match f {
        Failure::NotFound { host, path } => (
            StatusCode::NOT_FOUND,
            format!("tern gateway: no workload serves {host}{path}\n"),
        ),
        Failure::Timeout(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("tern gateway: {workload} did not answer within {after:?}\n"),
        ),
        Failure::Refused => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("tern gateway: {workload} does not accept connections\n"),
        ),
        Failure::Broken(why) => (
            StatusCode::BAD_GATEWAY,
            format!("tern gateway: {workload}: {why}\n"),
        ),
        Failure::TooManyHeld => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("tern gateway: too many requests waiting; {workload} is not running\n"),
        ),
        Failure::NoInstance => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("tern gateway: {workload} has no running instance\n"),
        ),
    };
    text(status, msg)
}

/// What sending to the service came to.
enum Sent {
    Answered(Response<Incoming>),
    /// It cannot have reached the service: it may be sent again.
    NotDelivered,
    Failed(Failure),
}

/// Send one request to `endpoint` (after the link's delay, within the upstream timeout); an
/// endpoint that refuses the connection leaves routing until a probe finds it back.
async fn send(
    s: &Arc<State>,
    parts: &Parts,
    endpoint: &str,
    body: Body,
    peer: SocketAddr,
    delay: Duration,
) -> Sent {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let timeout = s.config.upstream_timeout;
    let request = s.client.request(upstream(parts, endpoint, body, peer));
    let Ok(sent) = tokio::time::timeout(timeout, request).await else {
        return Sent::Failed(Failure::Timeout(timeout));
    };
    match sent {
        Ok(resp) => Sent::Answered(resp),
        Err(e) => {
            if e.is_connect() {
                s.mark_down(endpoint);
            }
            if not_delivered(&e) {
                Sent::NotDelivered
            } else {
                let why = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                Sent::Failed(Failure::Broken(why))
            }
        }
    }
}

/// The made-up delay of the link from this gateway's clients to the route's node.
fn link_delay(config: &Config, route: &Route) -> Duration {
    config.delays.client_to_node(
        tern_profile::End {
            name: None,
            region: &config.region,
        },
        tern_profile::End {
            name: route.node.as_deref(),
            region: route.node_region.as_deref().unwrap_or(""),
        },
    )
}

/// Count the request among the held ones, unless the queue is full.
fn admit(s: &State) -> Option<Held<'_>> {
    if s.held.fetch_add(1, Ordering::SeqCst) >= s.config.max_held {
        s.held.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    Some(Held(&s.held))
}

/// Wait until the routes change or an endpoint comes back; false at the deadline.
async fn route_changes(
    s: &State,
    routes: &mut tokio::sync::watch::Receiver<Option<Arc<RouteTable>>>,
    deadline: tokio::time::Instant,
) -> bool {
    let mut back = s.back.subscribe();
    let changed = async {
        tokio::select! {
            r = routes.changed() => r.is_ok(),
            r = back.changed() => r.is_ok(),
        }
    };
    matches!(tokio::time::timeout_at(deadline, changed).await, Ok(true))
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
    let replayable = replayable(&parts);
    let mut body = Some(body);
    let deadline = tokio::time::Instant::now() + s.config.hold_timeout;
    let mut routes = s.routes.clone();
    let mut held: Option<Held<'_>> = None;
    loop {
        let table = routes.borrow_and_update().clone();
        let (workload, target, delay) =
            match pick(table.as_deref(), host.as_deref(), &path, |e| s.is_down(e)) {
                Pick::NoTable => (None, None, Duration::ZERO),
                Pick::NotFound => {
                    let host = host.clone().unwrap_or_default();
                    let f = Failure::NotFound { host, path };
                    return (failure("", f), None);
                }
                Pick::Route { route, endpoint } => (
                    Some(route.workload.clone()),
                    endpoint.map(str::to_string),
                    link_delay(&s.config, route),
                ),
            };
        let name = workload.as_deref().unwrap_or("(any)");
        if let (Some(endpoint), Some(w)) = (target, &workload) {
            // Counted in flight first, then the route checked again: a gateway that reports
            // the workload quiet has either seen this request counted or it holds it.
            let in_flight = InFlight::new(s, w);
            let now = routes.borrow().clone();
            let still = matches!(
                pick(now.as_deref(), host.as_deref(), &path, |_| false),
                Pick::Route { endpoint: Some(e), .. } if e == endpoint
            );
            if still {
                let b = body.take().map_or_else(empty, |b| b.boxed());
                match send(s, &parts, &endpoint, b, peer, delay).await {
                    Sent::Answered(resp) => {
                        let resp = resp.map(|inner| {
                            let _in_flight = in_flight;
                            Tracked { inner, _in_flight }.boxed()
                        });
                        return (resp, workload);
                    }
                    // Nothing reached the service: it stopped accepting (it moved, or is
                    // moving). Wait for the route to change, then send it there.
                    Sent::NotDelivered if replayable => {}
                    Sent::NotDelivered => return (failure(w, Failure::Refused), workload),
                    Sent::Failed(f) => return (failure(w, f), workload),
                }
            }
        }
        if held.is_none() {
            held = admit(s);
            if held.is_none() {
                return (failure(name, Failure::TooManyHeld), workload);
            }
        }
        if !route_changes(s, &mut routes, deadline).await {
            return (failure(name, Failure::NoInstance), workload);
        }
    }
}

#[cfg(test)]
mod tests;
