//! The gateway's side of the controller: following the route stream, reporting a moving
//! workload quiet, sending traffic counts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tern_api::traffic::{TrafficReport, REPORT_INTERVAL_MS};
use tern_api::{RouteTable, ROUTES_REPEAT};

/// A route stream silent this long (two repeats missed, and some) is dead: reconnect.
const ROUTES_SILENCE: Duration = Duration::from_secs(2 * ROUTES_REPEAT.as_secs() + 10);
use tokio::sync::watch;

use crate::response::{empty, Body};
use crate::state::State;
use crate::Config;

/// Follow the controller's route stream for as long as the gateway runs, reconnecting when it
/// breaks or falls silent. The last table stays in use meanwhile (what ran keeps running).
pub(crate) async fn follow(
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
                    while let Ok(Some(Ok(frame))) =
                        tokio::time::timeout(ROUTES_SILENCE, body.frame()).await
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
pub(crate) fn query(v: &str) -> String {
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
pub(crate) async fn report_quiet(state: Arc<State>, id: String) {
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
pub(crate) async fn report_traffic(state: Arc<State>, id: String) {
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
