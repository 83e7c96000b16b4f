//! What a gateway's connections share: the route table it follows, the pooled client, the
//! requests held and in flight per workload, the endpoints out of routing, the traffic counts.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tern_api::traffic::WorkloadTraffic;
use tern_api::RouteTable;
use tokio::sync::watch;

use crate::response::Body;
use crate::Config;

/// How often an endpoint that refused a connection is tried again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct State {
    pub(crate) routes: watch::Receiver<Option<Arc<RouteTable>>>,
    pub(crate) client: Client<HttpConnector, Body>,
    pub(crate) config: Config,
    pub(crate) held: AtomicUsize,
    /// Requests sent to each workload and not yet answered in full.
    pub(crate) in_flight: Mutex<HashMap<String, usize>>,
    pub(crate) answered: tokio::sync::Notify,
    /// Counts since the last report to the controller, per workload.
    pub(crate) traffic: Mutex<HashMap<String, WorkloadTraffic>>,
    /// Endpoints that refused a connection: out of routing until a probe connects again.
    pub(crate) down: Mutex<HashSet<String>>,
    /// Bumped when an endpoint comes back, to wake the requests held for it.
    pub(crate) back: watch::Sender<u64>,
}

impl State {
    pub(crate) fn is_down(&self, endpoint: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(endpoint)
    }

    /// Take `endpoint` out of routing and probe it (a TCP connect every 250 ms) until it
    /// accepts again or no route names it any more.
    pub(crate) fn mark_down(self: &Arc<Self>, endpoint: &str) {
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
                tokio::time::sleep(PROBE_EVERY).await;
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
pub(crate) struct InFlight {
    state: Arc<State>,
    workload: String,
}

impl InFlight {
    pub(crate) fn new(state: &Arc<State>, workload: &str) -> InFlight {
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
pub(crate) struct Tracked {
    pub(crate) inner: Incoming,
    pub(crate) _in_flight: InFlight,
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

/// Counts a request among the held ones while it waits.
pub(crate) struct Held<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
