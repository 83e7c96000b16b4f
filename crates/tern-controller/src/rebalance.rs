//! Automatic placement: every pass scores every running workload on every node (through
//! `tern_scheduler`) and starts the moves that clear their threshold, with hysteresis, the
//! workloads' cooldowns and the migration limits. Each automatic migration records why.
//!
//! After a move the pass also checks that the workload's clients are not worse off: when the
//! median latency the gateways measured after the move is clearly worse than before it, the
//! workload goes back where it was and is kept off that node for a while. The scheduler's
//! model cannot know everything (a node's route to the clients, a program that runs slower
//! there); the measurement after the fact catches what the model missed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use tern_api::traffic::{WorkloadTraffic, REPORT_INTERVAL_MS};
use tern_api::{Avoid, MigrateRequest, MigrationKind, MigrationOutcome, PlacementState, Workload};

use crate::history::event;
use crate::migration::Limits;
use crate::store::{Store, Tx};
use crate::Result;

/// The gateways' reports of the last minute, per workload (kept by the server).
pub(crate) type TrafficLog = HashMap<String, VecDeque<(u64, WorkloadTraffic)>>;

/// How far back demand is read.
const DEMAND_WINDOW_MS: u64 = 20_000;
/// Requests needed on each side of a move to compare latencies.
const MIN_REQUESTS: u64 = 20;
/// A move is judged this long after it committed at the latest (then: not enough traffic).
const JUDGE_WITHIN_MS: u64 = 60_000;
/// Gateway reports received this soon after a commit may hold requests that waited through
/// the move (their latency is the pause's, not the new place's): the first one is skipped.
const AFTER_COMMIT_MS: u64 = 2 * REPORT_INTERVAL_MS + 100;
/// A node where a move made latency worse is avoided this long.
const AVOID_MS: u64 = 10 * 60_000;
/// After a migration commits, its two nodes' measurements take this long to show it (the
/// destination's instance is measured over half a second, then reported with the next
/// heartbeat); no automatic move starts from or to them meanwhile.
const SETTLE_MS: u64 = 3_000;
/// A move made latency worse when the median after is both this many times and this many ms
/// above the one before (either alone is noise: a fast service doubling 1 ms, a slow one
/// gaining 5 ms).
const REGRESSION_RATIO: f64 = 1.5;
const REGRESSION_MIN_MS: f64 = 5.0;
/// Store counter that holds whether automatic placement is paused.
pub(crate) const PAUSED: &str = "placement_paused";

/// What the rebalancer keeps between passes (in memory: a restart only resets hysteresis).
pub(crate) struct Auto {
    pub(crate) hysteresis: Mutex<tern_scheduler::Hysteresis>,
    pub(crate) state: Mutex<PlacementState>,
    pub(crate) noise: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests per second by client region over the last window, per workload.
pub(crate) fn demand(traffic: &TrafficLog, now: u64) -> HashMap<String, BTreeMap<String, f64>> {
    let mut out = HashMap::new();
    for (w, reports) in traffic {
        let recent: Vec<&(u64, WorkloadTraffic)> = reports
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) <= DEMAND_WINDOW_MS)
            .collect();
        let Some(first) = recent.first() else {
            continue;
        };
        let span_s =
            (now.saturating_sub(first.0) + REPORT_INTERVAL_MS).min(DEMAND_WINDOW_MS) as f64 / 1e3;
        let mut by_region: BTreeMap<String, f64> = BTreeMap::new();
        for (_, r) in recent {
            for (region, n) in &r.by_region {
                *by_region.entry(region.clone()).or_default() += *n as f64 / span_s;
            }
        }
        out.insert(w.clone(), by_region);
    }
    out
}

/// Median latency and request count of the reports received within `[from, to]`.
fn latency(traffic: &TrafficLog, workload: &str, from: u64, to: u64) -> (Option<f64>, u64) {
    let reports = traffic.get(workload);
    let s = tern_api::traffic::summarize(
        reports
            .into_iter()
            .flatten()
            .filter(|(at, _)| (from..=to).contains(at))
            .map(|(_, r)| r),
        1.0,
    );
    (s.p50_ms, s.requests)
}

/// One pass; true if it started anything. The scheduler works on a snapshot read outside
/// any write transaction (heartbeats must not wait for it); each decision is then checked
/// again by `migration::start` in a short one.
pub(crate) fn pass(
    store: &Store,
    traffic: &TrafficLog,
    auto: &Auto,
    limits: Limits,
    now: u64,
) -> Result<bool> {
    let started_at = std::time::Instant::now();
    let paused = store.counter(PAUSED)? != 0;
    let (mut candidates, mut started) = (0, 0);
    if !paused {
        started += store.write(|tx| judge_moves(tx, traffic, limits, now))?;
        let records = Records::read(store)?;
        let migrations = &records.migrations;
        let mut sched = live(&records, traffic, now, auto.noise);
        let decisions = sched.rebalance(
            &scheduler_limits(migrations, limits, now),
            &mut lock(&auto.hysteresis),
        );
        candidates = sched.last_pass().candidates;
        if !decisions.is_empty() {
            started += store.write(|tx| {
                let mut n = 0;
                for d in &decisions {
                    let req = MigrateRequest {
                        to: d.to.clone(),
                        ..MigrateRequest::default()
                    };
                    let why = format!("placement: {}", d.reason);
                    let kind = MigrationKind::Move;
                    if let Ok(mut m) =
                        crate::migration::start(tx, &d.workload, &req, kind, &why, limits, now)?
                    {
                        m.auto = true;
                        m.baseline_p50_ms = baseline(traffic, migrations, &d.workload, now);
                        tx.put_migration(&m)?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
    }
    let mut st = lock(&auto.state);
    st.last_pass_unix_ms = Some(now);
    st.last_pass_ms = started_at.elapsed().as_secs_f64() * 1e3;
    st.candidates = candidates;
    st.started = started;
    Ok(started > 0)
}

/// What one look at the cluster reads from the store (outside any write transaction:
/// heartbeats must not wait for the scheduler).
pub(crate) struct Records {
    pub(crate) nodes: Vec<tern_api::Node>,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) migrations: Vec<tern_api::Migration>,
}

impl Records {
    pub(crate) fn read(store: &Store) -> Result<Records> {
        Ok(Records {
            nodes: store.nodes()?,
            workloads: store.workloads()?,
            migrations: store.migrations()?,
        })
    }
}

/// The scheduler on the cluster as it runs now, with the gateways' demand, for the
/// rebalance pass and `tern explain` (which see the same view but for the pass's noise).
pub(crate) fn live(
    r: &Records,
    traffic: &TrafficLog,
    now: u64,
    noise: f64,
) -> tern_scheduler::Scheduler {
    tern_scheduler::Scheduler::new(crate::view::cluster(&crate::view::Inputs {
        nodes: &r.nodes,
        workloads: &r.workloads,
        migrations: &r.migrations,
        demand: &demand(traffic, now),
        now,
        noise,
        avoid: true,
    }))
}

/// The limits as the scheduler takes them: the migrations under way, and the nodes still
/// settling — those of a move under way or committed in the last [`SETTLE_MS`], whose
/// measurements do not show it yet.
fn scheduler_limits(
    migrations: &[tern_api::Migration],
    limits: Limits,
    now: u64,
) -> tern_scheduler::Limits {
    let active: Vec<(String, String)> = migrations
        .iter()
        .filter(|m| m.outcome.is_none())
        .map(|m| (m.from.clone(), m.to.clone()))
        .collect();
    let settling = migrations
        .iter()
        .filter(|m| {
            m.outcome.is_none()
                || m.outcome == Some(MigrationOutcome::Committed)
                    && m.finished_unix_ms
                        .is_some_and(|t| now.saturating_sub(t) < SETTLE_MS)
        })
        .flat_map(|m| [m.from.clone(), m.to.clone()])
        .collect();
    tern_scheduler::Limits {
        per_node: limits.per_node,
        total: limits.total,
        active,
        settling,
    }
}

/// The median latency of the workload's requests before a move, if enough were answered
/// since its previous move had settled (the gateways' reports wholly after it).
fn baseline(
    traffic: &TrafficLog,
    migrations: &[tern_api::Migration],
    workload: &str,
    now: u64,
) -> Option<f64> {
    let previous = migrations
        .iter()
        .filter(|m| m.workload == workload && m.outcome == Some(MigrationOutcome::Committed))
        .filter_map(|m| m.finished_unix_ms)
        .max()
        .map_or(0, |t| t + AFTER_COMMIT_MS);
    let from = now.saturating_sub(DEMAND_WINDOW_MS).max(previous);
    match latency(traffic, workload, from, now) {
        (Some(p50), n) if n >= MIN_REQUESTS => Some(p50),
        _ => None,
    }
}

/// Compare latency before and after each recent automatic move; move back the ones that made
/// it worse. Returns how many migrations it started.
fn judge_moves(tx: &mut Tx, traffic: &TrafficLog, limits: Limits, now: u64) -> Result<usize> {
    let mut started = 0;
    for mut m in tx.migrations()? {
        let (Some(baseline), None, Some(done)) =
            (m.baseline_p50_ms, &m.regression, m.finished_unix_ms)
        else {
            continue;
        };
        if !m.auto || m.outcome != Some(MigrationOutcome::Committed) {
            continue;
        }
        let late = now.saturating_sub(done) > JUDGE_WITHIN_MS;
        let (after, requests) = latency(
            traffic,
            &m.workload,
            done + AFTER_COMMIT_MS,
            now.min(done + JUDGE_WITHIN_MS),
        );
        let after = match after {
            Some(after) if requests >= MIN_REQUESTS => after,
            _ if late => {
                m.regression = Some("not judged: too little traffic after the move".into());
                tx.put_migration(&m)?;
                continue;
            }
            _ => continue,
        };
        if after <= baseline * REGRESSION_RATIO || after - baseline <= REGRESSION_MIN_MS {
            m.regression = Some(format!(
                "no regression: median latency {baseline:.1} ms before, {after:.1} ms after"
            ));
            tx.put_migration(&m)?;
            continue;
        }
        let reason = format!(
            "regression: median latency {baseline:.1} ms on {} before the move, {after:.1} ms on {} after",
            m.from, m.to
        );
        let Some(mut w) = tx.workload(&m.workload)? else {
            m.regression = Some(format!("{reason}; the workload is gone"));
            tx.put_migration(&m)?;
            continue;
        };
        if w.node.as_deref() != Some(m.to.as_str()) {
            // It has moved on since: nothing to take back.
            m.regression = Some(format!("{reason}; it had moved on already"));
            tx.put_migration(&m)?;
            continue;
        }
        let req = MigrateRequest {
            to: m.from.clone(),
            ..MigrateRequest::default()
        };
        let why = format!("placement: {reason}; moving back to {}", m.from);
        let kind = MigrationKind::Move;
        match crate::migration::start(tx, &m.workload, &req, kind, &why, limits, now)? {
            Ok(mut back) => {
                back.auto = true;
                tx.put_migration(&back)?;
                m.regression = Some(format!("{reason}; moved back ({})", back.id));
                started += 1;
                // Kept off the node it left only once it leaves, so that a move back held
                // up by the limits does not note the same thing every pass.
                if let Some(fresh) = tx.workload(&m.workload)? {
                    w = fresh;
                }
                avoid(&mut w, &m.to, now, &reason);
                tx.put_workload(&w)?;
            }
            // Over the limits now: the next pass tries again.
            Err(e) if e.starts_with("not now") => continue,
            Err(e) => {
                m.regression = Some(format!("{reason}; cannot move back: {e}"));
                avoid(&mut w, &m.to, now, &reason);
                tx.put_workload(&w)?;
            }
        }
        tx.put_migration(&m)?;
    }
    Ok(started)
}

fn avoid(w: &mut Workload, node: &str, now: u64, reason: &str) {
    w.avoid.retain(|a| a.node != node && a.until_unix_ms > now);
    w.avoid.push(Avoid {
        node: node.to_string(),
        until_unix_ms: now + AVOID_MS,
        reason: reason.to_string(),
    });
    event(w, now, format!("keeping off {node}: {reason}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(region: &str, n: u64, ms: f64) -> WorkloadTraffic {
        let mut t = WorkloadTraffic {
            workload: "w".into(),
            ..Default::default()
        };
        t.by_region.insert(region.into(), n);
        for _ in 0..n {
            t.latency.record(ms);
        }
        t
    }

    #[test]
    fn demand_is_a_rate_over_the_recent_window_only() {
        let mut log = TrafficLog::new();
        let now = 100_000;
        log.insert(
            "w".into(),
            [
                // Older than the window: not demand any more.
                (now - DEMAND_WINDOW_MS - 1, report("eu-west", 1000, 1.0)),
                (now - 8_000, report("ap-south", 100, 1.0)),
                (now, report("ap-south", 100, 1.0)),
            ]
            .into(),
        );
        let d = demand(&log, now);
        // 200 requests over the 8 s since the first report plus one report period.
        let rate = d["w"]["ap-south"];
        assert!((rate - 20.0).abs() < 1e-9, "{rate}");
        assert!(!d["w"].contains_key("eu-west"));
    }

    #[test]
    fn latency_counts_only_reports_in_the_span() {
        let mut log = TrafficLog::new();
        log.insert(
            "w".into(),
            [
                (1_000, report("eu-west", 30, 1.0)),
                (5_000, report("eu-west", 30, 60.0)),
            ]
            .into(),
        );
        let (before, n) = latency(&log, "w", 0, 2_000);
        assert_eq!(n, 30);
        assert!(
            before.is_some_and(|p| (1.0..1.3).contains(&p)),
            "{before:?}"
        );
        let (after, n) = latency(&log, "w", 2_001, 9_000);
        assert_eq!(n, 30);
        assert!(
            after.is_some_and(|p| (60.0..73.0).contains(&p)),
            "{after:?}"
        );
        assert_eq!(latency(&log, "nobody", 0, 9_000), (None, 0));
    }

    fn migration(
        id: &str,
        outcome: Option<MigrationOutcome>,
        finished: Option<u64>,
    ) -> tern_api::Migration {
        let mut m: tern_api::Migration = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "move", "workload": "w", "target_workload": "w",
            "from": format!("{id}-from"), "to": format!("{id}-to"),
            "from_instance": "w-1", "to_instance": "w-2", "phase": "done",
            "outcome": null, "failed_step": null, "reason": null, "why": "",
            "to_address": null, "options": {}, "round": 0, "bytes": 0, "bytes_raw": 0,
            "rounds": [], "pause_ms": 0.0, "total_ms": 0.0, "bandwidth_mib_s": 0.0,
            "tracker": "", "requested_unix_ms": 0, "finished_unix_ms": null
        }))
        .expect("a migration");
        m.outcome = outcome;
        m.finished_unix_ms = finished;
        m
    }

    #[test]
    fn a_baseline_needs_enough_requests_since_the_previous_move_settled() {
        let mut log = TrafficLog::new();
        log.insert(
            "w".into(),
            [
                (10_000, report("eu-west", 50, 80.0)),
                (30_000, report("eu-west", 10, 1.0)),
            ]
            .into(),
        );
        // Both reports in the window: the slow one dominates.
        let p = baseline(&log, &[], "w", 30_000).expect("baseline");
        assert!((80.0..97.0).contains(&p), "{p}");
        // A move committed at 20 s: only what came after it counts, and 10 requests are not
        // enough to judge by.
        let moved = [migration(
            "m1",
            Some(MigrationOutcome::Committed),
            Some(20_000),
        )];
        assert_eq!(baseline(&log, &moved, "w", 30_000), None);
    }

    #[test]
    fn nodes_of_moves_under_way_or_just_committed_are_settling() {
        let now = 100_000;
        let ms = [
            migration("live", None, None),
            migration(
                "fresh",
                Some(MigrationOutcome::Committed),
                Some(now - 1_000),
            ),
            migration(
                "old",
                Some(MigrationOutcome::Committed),
                Some(now - SETTLE_MS - 1),
            ),
            migration("failed", Some(MigrationOutcome::Failed), Some(now - 1_000)),
        ];
        let l = scheduler_limits(
            &ms,
            Limits {
                per_node: 2,
                total: 4,
            },
            now,
        );
        let mut settling = l.settling.clone();
        settling.sort();
        assert_eq!(settling, ["fresh-from", "fresh-to", "live-from", "live-to"]);
        assert_eq!(l.active, [("live-from".to_string(), "live-to".to_string())]);
    }
}
