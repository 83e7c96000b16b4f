//! Why a workload is where it is: its score there, the best alternatives, the nodes it cannot
//! use and why, and the verdict of a rebalancing pass, in words for `tern explain`.

use serde::{Deserialize, Serialize};

use crate::feasible::{feasible, feasible_nodes};
use crate::index::Index;
use crate::prepare::Prepared;
use crate::scheduler::Scheduler;
use crate::score::Score;
use crate::search::{self, Eval};

/// Infeasible nodes listed (the best-scoring ones, had they been feasible).
const INFEASIBLE_SHOWN: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub workload: String,
    /// Its score where it runs (no move cost), if it runs on a node the cluster knows.
    pub current: Option<Score>,
    /// Feasible nodes other than where it runs, best first, with their move costs.
    pub alternatives: Vec<Score>,
    /// A few nodes it may not use, with the reason (the ones that would have scored best).
    pub infeasible: Vec<(String, String)>,
    pub verdict: Verdict,
}

/// What a rebalancing pass would make of the workload, leaving out what the scheduler cannot
/// know: the hysteresis (a `Move` is a candidate, which still needs its confirming passes),
/// the migration limits, and whether placement is paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Stay {
        reason: String,
    },
    Move {
        to: String,
        gain: f64,
        reason: String,
    },
    Pending {
        reason: String,
    },
}

impl Scheduler {
    /// Explains workload `workload`, listing up to `alternatives` other nodes. Unlike
    /// [`Scheduler::place`] and [`Scheduler::rebalance`] this scores every node (it is asked
    /// for one workload at a time), so its best alternative is the exact best. An index out of
    /// range gives a `Pending` verdict saying so.
    pub fn explain(&self, workload: usize, alternatives: usize) -> Explanation {
        let w = match self.workload(workload) {
            Ok(w) => w,
            Err(reason) => {
                return Explanation {
                    workload: format!("#{workload}"),
                    current: None,
                    alternatives: Vec::new(),
                    infeasible: Vec::new(),
                    verdict: Verdict::Pending { reason },
                }
            }
        };
        let p = &self.prepared[workload];
        let cur = self.cur[workload];
        let mut regions = Vec::new();
        self.regions_into(workload as u32, &mut Vec::new(), &mut regions);
        let (mut ok, mut blocked): (Vec<Eval>, Vec<Eval>) = (0..self.cluster.nodes.len() as u32)
            .filter(|&n| Some(n) != cur)
            .map(|n| search::eval(&self.index, p, cur, &regions, n))
            .partition(|e| search::admits(&self.index, p, e.node));
        let order = |a: &Eval, b: &Eval| b.total.total_cmp(&a.total).then(a.node.cmp(&b.node));
        ok.sort_by(order);
        blocked.sort_by(order);
        let here = cur.map(|c| search::eval(&self.index, p, cur, &regions, c));
        let verdict = self.verdict(workload, p, here.as_ref(), ok.first());
        let infeasible = blocked
            .iter()
            .filter_map(|e| {
                let n = &self.cluster.nodes[e.node as usize];
                feasible(w, n).err().map(|why| (n.name.clone(), why))
            })
            .take(INFEASIBLE_SHOWN)
            .collect();
        Explanation {
            workload: w.name.clone(),
            current: here.as_ref().map(|e| self.named(e)),
            alternatives: ok
                .iter()
                .take(alternatives)
                .map(|e| self.named(e))
                .collect(),
            infeasible,
            verdict,
        }
    }

    fn verdict(&self, i: usize, p: &Prepared, here: Option<&Eval>, best: Option<&Eval>) -> Verdict {
        let w = &self.cluster.workloads[i];
        let Some(here) = here else {
            if let Some(node) = &w.node {
                return Verdict::Stay {
                    reason: format!("runs on {node}, which is not in the cluster view"),
                };
            }
            let reason = match best {
                Some(b) => format!(
                    "would be placed on {} (total {:.2})",
                    self.cluster.nodes[b.node as usize].name, b.total
                ),
                None => feasible_nodes(w, &self.cluster.nodes)
                    .err()
                    .unwrap_or_else(|| "no node fits".into()),
            };
            return Verdict::Pending { reason };
        };
        if let Err(reason) = self.eligible(i, self.cluster.now_ms) {
            return Verdict::Stay { reason };
        }
        let Some(best) = best else {
            return Verdict::Stay {
                reason: "no other node can take it".into(),
            };
        };
        let gain = best.total - here.total;
        let to = self.cluster.nodes[best.node as usize].name.clone();
        if gain > p.threshold {
            let reason = move_reason(&self.index, p, here, best);
            return Verdict::Move { to, gain, reason };
        }
        Verdict::Stay {
            reason: format!(
                "no node scores more than the threshold {} above {} (best: {to}, {gain:+.2})",
                p.threshold, self.cluster.nodes[here.node as usize].name
            ),
        }
    }
}

/// "proximity +0.71 (latency 120 ms -> 1 ms from demand in ap-south); cost +0.00; total +0.62 >
/// threshold 0.15": the weighted terms that changed most (at most three, those of at least
/// 0.005, at least one), then the total.
pub(crate) fn move_reason(index: &Index, p: &Prepared, here: &Eval, there: &Eval) -> String {
    let (w, a, b) = (&p.weights, &here.terms, &there.terms);
    let mut deltas = [
        (
            "performance",
            w.performance * (b.performance - a.performance),
        ),
        ("proximity", w.proximity * (b.proximity - a.proximity)),
        ("resources", w.resources * (b.resources - a.resources)),
        ("affinity", w.affinity * (b.affinity - a.affinity)),
        ("cost", w.cost * (b.cost - a.cost)),
        ("move_cost", -w.move_cost * (b.move_cost - a.move_cost)),
    ];
    deltas.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    let shown = deltas
        .iter()
        .enumerate()
        .take_while(|&(i, d)| i == 0 || (i < 3 && d.1.abs() >= 0.005))
        .map(|(_, &(term, delta))| {
            let detail = match term {
                "proximity" => proximity_detail(index, p, here, there),
                "performance" => format!(
                    " (expected CPU use {:.0}% -> {:.0}%)",
                    (1.0 - a.performance) * 100.0,
                    (1.0 - b.performance) * 100.0
                ),
                "move_cost" => format!(" ({:.1} s to move)", there.move_seconds),
                _ => String::new(),
            };
            format!("{term} {delta:+.2}{detail}")
        });
    let mut parts: Vec<String> = shown.collect();
    parts.push(format!(
        "total {:+.2} > threshold {}",
        there.total - here.total,
        p.threshold
    ));
    parts.join("; ")
}

fn proximity_detail(index: &Index, p: &Prepared, here: &Eval, there: &Eval) -> String {
    let (Some(from), Some(to)) = (here.latency, there.latency) else {
        return String::new();
    };
    let top = p
        .demand
        .iter()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map(|&(r, _)| index.regions.name(r));
    let source = match (top, p.peers.is_empty()) {
        (Some(r), true) => format!(" from demand in {r}"),
        (Some(r), false) => format!(" from demand in {r} and its peers"),
        (None, false) => " to its peers".into(),
        (None, true) => String::new(),
    };
    format!(" (latency {} ms -> {} ms{source})", ms(from), ms(to))
}

/// `120`, `4.5`, `1`: whole milliseconds from 10 up, else one decimal without a trailing `.0`.
fn ms(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.1}");
        s.strip_suffix(".0").map_or(s.clone(), str::to_string)
    }
}
