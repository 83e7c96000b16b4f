//! Where a service's demand comes from and how it is served (pure): what gateways count per
//! workload (requests by client region, errors, a latency histogram) and the summary over a
//! recent window that `tern inspect` shows and placement will use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How often a gateway sends its [`TrafficReport`]: the controller's windows count in these.
pub const REPORT_INTERVAL_MS: u64 = 2_000;

/// Latencies in buckets growing by 20% from 10 µs (the last one holds everything above
/// ~60 s): percentiles read from it are within 20% of the truth, whatever the spread, and
/// histograms from many gateways add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
}

const BUCKETS: usize = 90;
const FIRST_MS: f64 = 0.01;
const GROWTH: f64 = 1.2;

impl Histogram {
    pub fn record(&mut self, ms: f64) {
        let i = if ms <= FIRST_MS {
            0
        } else {
            (((ms / FIRST_MS).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
        };
        if self.counts.len() < BUCKETS {
            self.counts.resize(BUCKETS, 0);
        }
        self.counts[i] += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len().min(BUCKETS) {
            self.counts.resize(other.counts.len().min(BUCKETS), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding the `p`-th quantile (0 < p ≤ 1), in ms.
    pub fn quantile(&self, p: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(FIRST_MS * GROWTH.powi(i as i32));
            }
        }
        None
    }
}

/// One gateway's counts for one workload since its previous report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadTraffic {
    pub workload: String,
    /// Requests by the client's region.
    pub by_region: BTreeMap<String, u64>,
    /// Answers with a 5xx status (from the service or the gateway).
    pub errors: u64,
    /// Time to the response's head, per request.
    pub latency: Histogram,
}

/// What a gateway sends every few seconds (`POST /v1/traffic`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    pub gateway: String,
    pub region: String,
    pub workloads: Vec<WorkloadTraffic>,
}

/// A workload's traffic over the last `window_s` seconds, from every gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    pub window_s: f64,
    pub requests: u64,
    pub rate_per_s: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests by client region: where the demand comes from.
    pub by_region: BTreeMap<String, u64>,
}

/// Sum reports (those of the window) into a summary.
pub fn summarize<'a>(
    reports: impl IntoIterator<Item = &'a WorkloadTraffic>,
    window_s: f64,
) -> TrafficSummary {
    let mut by_region = BTreeMap::new();
    let mut errors = 0;
    let mut latency = Histogram::default();
    for r in reports {
        for (region, n) in &r.by_region {
            *by_region.entry(region.clone()).or_insert(0) += n;
        }
        errors += r.errors;
        latency.merge(&r.latency);
    }
    let requests: u64 = by_region.values().sum();
    TrafficSummary {
        window_s,
        requests,
        rate_per_s: if window_s > 0.0 {
            requests as f64 / window_s
        } else {
            0.0
        },
        errors,
        error_rate: if requests > 0 {
            errors as f64 / requests as f64
        } else {
            0.0
        },
        p50_ms: latency.quantile(0.5),
        p90_ms: latency.quantile(0.9),
        p99_ms: latency.quantile(0.99),
        by_region,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_and_reports_add_up() {
        let mut a = WorkloadTraffic::default();
        for i in 1..=1000 {
            a.latency.record(i as f64 / 10.0); // 0.1 .. 100 ms
        }
        a.by_region.insert("eu-west".into(), 1000);
        let mut b = WorkloadTraffic::default();
        b.by_region.insert("ap-south".into(), 500);
        b.errors = 15;
        for _ in 0..500 {
            b.latency.record(250.0);
        }
        let s = summarize([&a, &b], 10.0);
        assert_eq!(s.requests, 1500);
        assert_eq!(s.by_region["ap-south"], 500);
        assert!((s.rate_per_s - 150.0).abs() < 1e-9);
        assert!((s.error_rate - 0.01).abs() < 1e-9);
        // The median of 0.1..100 (1000 samples) and 500 × 250 ms is the 750th: 75 ms.
        let p50 = s.p50_ms.expect("p50");
        assert!((75.0..=75.0 * 1.2).contains(&p50), "{p50}");
        let p99 = s.p99_ms.expect("p99");
        assert!((250.0..=250.0 * 1.2).contains(&p99), "{p99}");
        assert_eq!(summarize([], 10.0).p50_ms, None);
        let mut h = Histogram::default();
        h.record(1e9);
        h.record(0.0);
        assert_eq!(h.total(), 2);
    }
}
