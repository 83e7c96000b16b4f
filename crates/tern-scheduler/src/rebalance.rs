//! Rebalancing: which running workloads should live-migrate, and where.
//!
//! A pass has two phases. First every movable workload is compared with the world as it is:
//! the best other node (with its move cost) must beat where it runs by more than its threshold
//! to make it a candidate. Then the candidates are taken largest gain first; since each move
//! changes the world for the next ones (the destination fills up, the source empties, peers
//! change place), once a move has been made a candidate is searched again before it is
//! decided. A candidate becomes a decision only after it has been one, for the same
//! destination, in [`Hysteresis::confirm_passes`] consecutive passes, and only within the
//! [`Limits`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::explain::move_reason;
use crate::scheduler::{PassStats, Scheduler};
use crate::search::{self, Eval};
use crate::view::Limits;

/// What must outlive a pass: how many consecutive passes each candidate has been one.
///
/// Measurements are noisy; a move that looks worth it once may be a blip. The controller keeps
/// one of these across passes (the scheduler itself is rebuilt every pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Consecutive passes a candidate must be seen, with the same destination, before it moves
    /// (1: at once; 0 counts as 1). Default 2.
    pub confirm_passes: u32,
    #[serde(default)]
    seen: BTreeMap<String, Sighting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sighting {
    to: String,
    passes: u32,
}

impl Default for Hysteresis {
    fn default() -> Hysteresis {
        Hysteresis::new(2)
    }
}

impl Hysteresis {
    pub fn new(confirm_passes: u32) -> Hysteresis {
        Hysteresis {
            confirm_passes,
            seen: BTreeMap::new(),
        }
    }

    /// The destination a workload has been a candidate for, and for how many passes in a row.
    pub fn sighting(&self, workload: &str) -> Option<(&str, u32)> {
        self.seen.get(workload).map(|s| (s.to.as_str(), s.passes))
    }

    /// How many workloads are candidates waiting for confirmation or for room in the limits.
    pub fn waiting(&self) -> usize {
        self.seen.len()
    }
}

/// A migration to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub workload: String,
    pub from: String,
    pub to: String,
    /// Total score gained (with the move cost), above the workload's threshold.
    pub gain: f64,
    pub reason: String,
}

impl Scheduler {
    /// One rebalancing pass (see the module documentation): the moves to start now, largest
    /// gain first, each already recorded in [`Scheduler::cluster`] (the workload's node and
    /// `last_moved_ms = now_ms`, the reservations of both nodes) so that later decisions of the
    /// pass see it. [`Scheduler::last_pass`] counts what was held back and why.
    ///
    /// Limits: a move needs its source and its destination each to be in fewer than
    /// `per_node` migrations (those under way plus those decided in this pass) and the cluster
    /// in fewer than `total`. A candidate held by a limit keeps its confirmation: it moves in the
    /// first pass with room, if its best destination is still the same.
    pub fn rebalance(&mut self, limits: &Limits, state: &mut Hysteresis) -> Vec<Decision> {
        let now = self.cluster.now_ms;
        let mut stats = PassStats::default();
        // Settling nodes take nothing in this pass and give nothing up: their measurements do
        // not show the move that just reached or left them.
        let mut settling = vec![false; self.cluster.nodes.len()];
        let named: Vec<usize> = limits
            .settling
            .iter()
            .filter_map(|n| self.node_index(n))
            .collect();
        for n in named {
            if self.index.nodes[n].schedulable {
                self.index.set_schedulable(n as u32, false);
                settling[n] = true;
            }
        }
        let mut candidates: Vec<(u32, Eval, Eval)> = Vec::new();
        for i in 0..self.cluster.workloads.len() as u32 {
            if self.eligible(i as usize, now).is_err() {
                continue;
            }
            if self.cur[i as usize].is_some_and(|n| settling[n as usize]) {
                stats.held_by_limits += 1;
                continue;
            }
            stats.considered += 1;
            if let Some((here, there)) = self.candidate(i) {
                candidates.push((i, here, there));
            }
        }
        stats.candidates = candidates.len();
        let gain = |c: &(u32, Eval, Eval)| c.2.total - c.1.total;
        candidates.sort_by(|a, b| gain(b).total_cmp(&gain(a)).then(a.0.cmp(&b.0)));

        let mut budget = Budget::new(self, limits);
        let confirm = state.confirm_passes.max(1);
        let mut next = BTreeMap::new();
        let mut decisions = Vec::new();
        for (i, here, there) in candidates {
            // Until a move is made the first phase's search still holds; once no move can be
            // made, searching again would change nothing.
            let fresh = if decisions.is_empty() || budget.exhausted() {
                Some((here, there))
            } else {
                self.candidate(i)
            };
            let Some((here, there)) = fresh else {
                stats.superseded += 1;
                continue;
            };
            let w = &self.cluster.workloads[i as usize];
            let to = &self.cluster.nodes[there.node as usize].name;
            let passes = match state.seen.get(&w.name) {
                Some(s) if s.to == *to => s.passes.saturating_add(1),
                _ => 1,
            };
            let (from_node, to_node) = (here.node as usize, there.node as usize);
            let held = if passes < confirm {
                stats.held_by_hysteresis += 1;
                true
            } else if !budget.allows(from_node, to_node) {
                stats.held_by_limits += 1;
                true
            } else {
                false
            };
            if held {
                let passes = passes.min(confirm);
                next.insert(
                    w.name.clone(),
                    Sighting {
                        to: to.clone(),
                        passes,
                    },
                );
                continue;
            }
            decisions.push(Decision {
                workload: w.name.clone(),
                from: self.cluster.nodes[from_node].name.clone(),
                to: to.clone(),
                gain: there.total - here.total,
                reason: move_reason(&self.index, &self.prepared[i as usize], &here, &there),
            });
            budget.take(from_node, to_node);
            self.settle(i, there.node);
            self.cluster.workloads[i as usize].last_moved_ms = Some(now);
            stats.decided += 1;
        }
        // A workload that stopped being a candidate (or moved) is forgotten.
        state.seen = next;
        self.last = stats;
        for (n, was) in settling.into_iter().enumerate() {
            if was {
                self.index.set_schedulable(n as u32, true);
            }
        }
        decisions
    }

    /// What the last [`Scheduler::rebalance`] pass counted.
    pub fn last_pass(&self) -> PassStats {
        self.last
    }

    /// Whether rebalancing looks at workload `i` at all, or why not.
    pub(crate) fn eligible(&self, i: usize, now: u64) -> Result<(), String> {
        let w = &self.cluster.workloads[i];
        let Some(n) = self.cur[i] else {
            return Err(match &w.node {
                Some(node) => format!("runs on {node}, which is not in the cluster view"),
                None => "pending".into(),
            });
        };
        if !w.movable {
            return Err("not movable (live migration is off, it is migrating now, \
                        or it is not running)"
                .into());
        }
        if !self.index.nodes[n as usize].up {
            return Err(format!(
                "its node {} is down",
                self.cluster.nodes[n as usize].name
            ));
        }
        let cooldown = w.policy.cooldown_ms;
        if let Some(since) = w.last_moved_ms.map(|t| now.saturating_sub(t)) {
            if since < cooldown {
                let left = (cooldown - since).div_ceil(1000);
                return Err(format!("in cooldown for another {left} s"));
            }
        }
        Ok(())
    }

    /// Where workload `i` runs and the best other node, if that beats it by more than the
    /// threshold.
    fn candidate(&mut self, i: u32) -> Option<(Eval, Eval)> {
        let cur = self.cur[i as usize]?;
        self.fill_regions(i);
        let p = &self.prepared[i as usize];
        let here = search::eval(&self.index, p, Some(cur), &self.scratch.regions, cur);
        let floor = here.total + p.threshold;
        let there = search::best(
            &self.index,
            p,
            Some(cur),
            floor,
            Some(cur),
            &mut self.scratch,
        )?;
        Some((here, there))
    }
}

/// The migrations the limits still allow in this pass.
struct Budget<'a> {
    limits: &'a Limits,
    /// Migrations each node is in, under way or decided.
    per_node: Vec<usize>,
    total: usize,
}

impl<'a> Budget<'a> {
    fn new(s: &Scheduler, limits: &'a Limits) -> Budget<'a> {
        let mut per_node = vec![0; s.cluster.nodes.len()];
        for (from, to) in &limits.active {
            // A migration between nodes the view does not have still counts in the total.
            for n in [from, to].into_iter().filter_map(|n| s.node_index(n)) {
                per_node[n] += 1;
            }
        }
        Budget {
            limits,
            per_node,
            total: limits.active.len(),
        }
    }

    fn exhausted(&self) -> bool {
        self.total >= self.limits.total
    }

    fn allows(&self, from: usize, to: usize) -> bool {
        !self.exhausted()
            && self.per_node[from] < self.limits.per_node
            && self.per_node[to] < self.limits.per_node
    }

    fn take(&mut self, from: usize, to: usize) {
        self.total += 1;
        self.per_node[from] += 1;
        self.per_node[to] += 1;
    }
}
