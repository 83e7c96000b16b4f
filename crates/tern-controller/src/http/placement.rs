//! Traffic reports, `tern inspect`'s traffic summary, `tern explain`, the network matrix and
//! pausing automatic placement.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use tern_api::traffic::REPORT_INTERVAL_MS;
use tern_api::traffic::{TrafficReport, TrafficSummary, WorkloadTraffic};
use tern_api::unix_ms as now_ms;
use tern_api::{ExplainReply, NetworkReply, NodeLinks, PlacementState};

use super::{blocking, not_found, ApiResult};
use crate::shared::{Shared, TRAFFIC_WINDOW_MS};
use crate::Result;

pub(super) async fn report_traffic(
    State(s): State<Arc<Shared>>,
    Json(r): Json<TrafficReport>,
) -> StatusCode {
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
pub(super) async fn workload_traffic(
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
        .map(|(at, _)| now.saturating_sub(*at) + REPORT_INTERVAL_MS)
        .unwrap_or(TRAFFIC_WINDOW_MS)
        .clamp(REPORT_INTERVAL_MS, TRAFFIC_WINDOW_MS);
    Json(tern_api::traffic::summarize(
        recent.into_iter().map(|(_, w)| w),
        span_ms as f64 / 1e3,
    ))
}

/// Why a workload runs where it does, term by term.
pub(super) async fn explain_workload(
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

pub(super) async fn network(State(s): State<Arc<Shared>>) -> ApiResult<Json<NetworkReply>> {
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

pub(super) async fn placement_state(
    State(s): State<Arc<Shared>>,
) -> ApiResult<Json<PlacementState>> {
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

pub(super) async fn pause_placement(
    State(s): State<Arc<Shared>>,
) -> ApiResult<Json<PlacementState>> {
    set_paused(&s, true).await?;
    placement_state(State(s)).await
}

pub(super) async fn resume_placement(
    State(s): State<Arc<Shared>>,
) -> ApiResult<Json<PlacementState>> {
    set_paused(&s, false).await?;
    placement_state(State(s)).await
}

pub(super) async fn set_paused(s: &Arc<Shared>, paused: bool) -> ApiResult<()> {
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
