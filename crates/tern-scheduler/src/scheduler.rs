//! The scheduler: a cluster view, its class index, and the decisions that change both.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::feasible::{feasible, why_not};
use crate::index::Index;
use crate::prepare::{self, Prepared, RegionTerms};
use crate::score::Score;
use crate::search::{self, Eval, Scratch};
use crate::view::Cluster;

/// Decides from a [`Cluster`] it owns, and records its decisions there: placing or moving a
/// workload sets its `node` (and `last_moved_ms` for a move) and moves its reservation
/// (`committed_memory`, `committed_cpu`) and its measured use (`cpu_busy`, by its `cpu_used`)
/// from node to node, so that each decision sees the ones before it.
///
/// Building one costs a pass over the cluster (interning, classes); the controller builds one per
/// reconcile pass from its store, and keeps only the [`crate::Hysteresis`] between passes.
#[derive(Debug)]
pub struct Scheduler {
    pub(crate) cluster: Cluster,
    pub(crate) index: Index,
    pub(crate) prepared: Vec<Prepared>,
    /// Where each workload runs, if on a node the cluster knows.
    pub(crate) cur: Vec<Option<u32>>,
    workload_ids: HashMap<String, u32>,
    node_ids: HashMap<String, u32>,
    pub(crate) scratch: Scratch,
    pub(crate) last: PassStats,
}

/// What the last [`Scheduler::rebalance`] pass saw. Every candidate is decided, held (by the
/// limits or by the hysteresis), or superseded: its gain vanished once earlier moves of the
/// same pass were applied.
///
/// It is defined here, beside the scheduler that keeps it, rather than in rebalance.rs, so that
/// rebalance.rs builds on this module and not the other way round as well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassStats {
    /// Workloads looked at: movable, running on a node that is up, not in cooldown.
    pub considered: usize,
    /// Of those, the ones some other node beat by more than their threshold.
    pub candidates: usize,
    pub decided: usize,
    pub held_by_limits: usize,
    pub held_by_hysteresis: usize,
    pub superseded: usize,
}

impl Scheduler {
    pub fn new(cluster: Cluster) -> Scheduler {
        let index = Index::build(&cluster);
        let mut workload_ids = HashMap::with_capacity(cluster.workloads.len());
        for (i, w) in cluster.workloads.iter().enumerate() {
            workload_ids.entry(w.name.clone()).or_insert(i as u32);
        }
        let mut node_ids = HashMap::with_capacity(cluster.nodes.len());
        for (i, n) in cluster.nodes.iter().enumerate() {
            node_ids.entry(n.name.clone()).or_insert(i as u32);
        }
        let prepared = cluster
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Prepared::new(w, &index, |peer| {
                    workload_ids.get(peer).copied().filter(|&p| p as usize != i)
                })
            })
            .collect();
        let cur = cluster
            .workloads
            .iter()
            .map(|w| w.node.as_ref().and_then(|n| node_ids.get(n).copied()))
            .collect();
        Scheduler {
            cluster,
            index,
            prepared,
            cur,
            workload_ids,
            node_ids,
            scratch: Scratch::default(),
            last: PassStats::default(),
        }
    }

    /// The cluster with the decisions made so far recorded in it.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn into_cluster(self) -> Cluster {
        self.cluster
    }

    /// The index of the (first) workload with that name.
    pub fn workload_index(&self, name: &str) -> Option<usize> {
        self.workload_ids.get(name).map(|&i| i as usize)
    }

    /// The index of the (first) node with that name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.node_ids.get(name).map(|&i| i as usize)
    }

    /// How many equivalence classes the nodes form.
    pub fn classes(&self) -> usize {
        self.index.classes.len()
    }

    /// Places pending workload `workload` on the feasible node with the highest total score (no
    /// move cost: nothing runs yet) and records it. `Err` is why no node fits, in the words of
    /// [`crate::feasible_nodes`]; a workload that already has a node is refused.
    pub fn place(&mut self, workload: usize) -> Result<String, String> {
        let w = self.workload(workload)?;
        if let Some(node) = &w.node {
            return Err(format!("{} is already placed on {node}", w.name));
        }
        let i = workload as u32;
        self.fill_regions(i);
        let p = &self.prepared[workload];
        let found = search::best(
            &self.index,
            p,
            None,
            f64::NEG_INFINITY,
            None,
            &mut self.scratch,
        )
        .or_else(|| search::scan(&self.index, p, None, None, &self.scratch.regions));
        let Some(e) = found else {
            let nodes = (0..self.cluster.nodes.len() as u32)
                .map(|n| search::facts(&self.index, p, n, &self.cluster.nodes[n as usize].name));
            return Err(why_not(&self.cluster.workloads[workload], nodes)
                .unwrap_or_else(|| "no node fits".into()));
        };
        self.settle(i, e.node);
        Ok(self.cluster.nodes[e.node as usize].name.clone())
    }

    /// The score of node `node` for workload `workload`: with the move cost if it runs
    /// elsewhere, and, where it runs, without counting its own reservation twice. `Err` is why
    /// the node may not take it ([`crate::feasible`]; not asked of the node it runs on, where
    /// staying is always possible).
    pub fn score(&self, workload: usize, node: usize) -> Result<Score, String> {
        let w = self.workload(workload)?;
        let n = self.cluster.nodes.get(node).ok_or_else(|| {
            format!(
                "no node #{node} (the cluster has {})",
                self.cluster.nodes.len()
            )
        })?;
        let cur = self.cur[workload];
        if cur != Some(node as u32) {
            feasible(w, n)?;
        }
        let mut regions = Vec::new();
        self.regions_into(workload as u32, &mut Vec::new(), &mut regions);
        let e = search::eval(
            &self.index,
            &self.prepared[workload],
            cur,
            &regions,
            node as u32,
        );
        Ok(self.named(&e))
    }

    pub(crate) fn workload(&self, i: usize) -> Result<&crate::Workload, String> {
        self.cluster.workloads.get(i).ok_or_else(|| {
            format!(
                "no workload #{i} (the cluster has {})",
                self.cluster.workloads.len()
            )
        })
    }

    pub(crate) fn named(&self, e: &Eval) -> Score {
        Score {
            node: self.cluster.nodes[e.node as usize].name.clone(),
            terms: e.terms,
            latency_ms: e.latency,
            move_seconds: e.move_seconds,
            total: e.total,
        }
    }

    /// Fills the scratch region terms for workload `i` as things stand.
    pub(crate) fn fill_regions(&mut self, i: u32) {
        let Scratch {
            regions,
            peer_regions,
            ..
        } = &mut self.scratch;
        regions_into(
            &self.index,
            &self.prepared,
            &self.cur,
            i,
            peer_regions,
            regions,
        );
    }

    pub(crate) fn regions_into(&self, i: u32, peers: &mut Vec<u32>, out: &mut Vec<RegionTerms>) {
        regions_into(&self.index, &self.prepared, &self.cur, i, peers, out);
    }

    /// Records workload `i` on node `to`, moving its reservation and use from where it was.
    pub(crate) fn settle(&mut self, i: u32, to: u32) {
        let p = &self.prepared[i as usize];
        let (memory, cpu, used) = (p.memory, p.cpu, p.used);
        if let Some(from) = self.cur[i as usize] {
            self.index.remove(from, memory, cpu, used);
            self.write_back(from);
        }
        self.index.add(to, memory, cpu, used);
        self.write_back(to);
        self.cur[i as usize] = Some(to);
        self.cluster.workloads[i as usize].node =
            Some(self.cluster.nodes[to as usize].name.clone());
    }

    fn write_back(&mut self, n: u32) {
        let s = &self.index.nodes[n as usize];
        let node = &mut self.cluster.nodes[n as usize];
        node.committed_memory = s.committed_memory;
        node.committed_cpu = s.committed_cpu;
        node.cpu_busy = s.busy;
    }
}

fn regions_into(
    index: &Index,
    prepared: &[Prepared],
    cur: &[Option<u32>],
    i: u32,
    peers: &mut Vec<u32>,
    out: &mut Vec<RegionTerms>,
) {
    let p = &prepared[i as usize];
    peers.clear();
    // A pending peer, or one on a node the cluster does not know, tells nothing about latency.
    peers.extend(
        p.peers
            .iter()
            .filter_map(|&q| cur[q as usize].map(|n| index.nodes[n as usize].region)),
    );
    let from = cur[i as usize].map(|n| index.nodes[n as usize].region);
    prepare::region_terms(index, p, from, peers, out);
}
