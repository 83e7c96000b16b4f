//! Equivalence classes of nodes, so that a decision does not score every node.
//!
//! Nodes whose static attributes are equal (every label, which includes `region` and `cost`, and
//! whether they can enforce a CPU limit) form a class: for a given workload, feasibility by
//! labels, affinity, cost, proximity and move cost are the same for every node of the class, so
//! they are computed once per class. What differs inside a class is what changes as workloads
//! come and go (promised and measured resources) and the capacity, which only the performance
//! and resources terms see. Capacity may differ inside a class, but only within an octave (cores
//! and memory each within a factor of two, see [`bucket`]): a workload's load costs a 2-core
//! node eight times what it costs a 16-core one, so nodes ordered by what they have free before
//! a placement would be in a very different order after it; machines of one type that report
//! slightly different memory still share a class.
//!
//! Each class keeps its usable (up and schedulable) nodes in three ordered sets: by rank,
//! `idle + free / 2`, by `free`, and by free memory in bytes, where `idle` is the performance
//! term and `free` the resources term before any placement (upper bounds of both terms after
//! one). The rank orders a class as the default weights (performance 1, resources 0.5) would;
//! the second set bounds the nodes for weights that value free resources more; the third finds
//! the nodes with room when few have any, and tells when none is left. `search.rs` walks them to
//! find the best node of a class without visiting all. One order by idle CPU and one by free
//! resources were the first design, but placement makes the two anti-correlated (it fills the
//! idle nodes first), so the best node sat deep in both and a short walk missed it.
//!
//! Strings (regions, label keys and values, node names) are interned here once, so the hot path
//! compares integers and never clones a string.

use std::collections::{BTreeSet, HashMap};

use crate::network::Link;
use crate::score::{cost, performance, resources};
use crate::view::{amount, Cluster};

/// No such label on the class, or a name nothing in the cluster has.
pub(crate) const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// A node's numbers, sanitized (see [`amount`]), kept in step with the cluster's copy.
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub class: u32,
    pub region: u32,
    /// Interned name (nodes with the same name, which a sane cluster does not have, share it).
    pub name: u32,
    pub up: bool,
    pub schedulable: bool,
    pub cpus: f64,
    pub memory: u64,
    pub committed_memory: u64,
    pub committed_cpu: f64,
    pub busy: f64,
    /// The keys under which it is listed in its class's sets, if it is.
    listed: Option<(u64, u64, u64)>,
}

impl NodeState {
    /// Listed in its class: it may take new workloads.
    pub fn usable(&self) -> bool {
        self.up && self.schedulable
    }

    /// The performance term for a workload that uses nothing: a bound for any real one.
    pub fn idle(&self) -> f64 {
        performance(self.busy, 0.0, self.cpus)
    }

    /// The resources term for a workload that reserves nothing: a bound for any real one.
    pub fn free(&self) -> f64 {
        resources(
            self.committed_memory,
            self.memory,
            self.committed_cpu,
            self.cpus,
        )
    }

    /// The order of the default weights, in `[0, 1.5]`.
    pub fn rank(&self) -> f64 {
        self.idle() + 0.5 * self.free()
    }
}

#[derive(Debug)]
pub(crate) struct Class {
    /// Value id by label key id (`NONE` if the class lacks the label).
    pub labels: Vec<u32>,
    pub region: u32,
    /// The cost term, the same for every workload.
    pub cost: f64,
    pub cpu_limit: bool,
    /// Usable nodes, best first: `(key(rank), node)` and `(key(free), node)`.
    pub by_rank: BTreeSet<(u64, u32)>,
    pub by_free: BTreeSet<(u64, u32)>,
    /// `(u64::MAX - free memory in bytes, node)`: the nodes with room come first.
    pub by_memory: BTreeSet<(u64, u32)>,
}

#[derive(Debug)]
pub(crate) struct Index {
    pub regions: Interner,
    /// `rtt[a * regions + b]`, from [`crate::Network::between`] once for every pair.
    rtt: Vec<f64>,
    bandwidth: Vec<f64>,
    /// The regions that have nodes: the only ones a score is ever computed for.
    pub node_regions: Vec<u32>,
    pub keys: Interner,
    pub values: Interner,
    pub names: Interner,
    pub classes: Vec<Class>,
    pub nodes: Vec<NodeState>,
}

/// Orders non-negative values from the largest: for non-negative floats the bit patterns are in
/// numeric order, so the key is exact and [`value`] gives the value back.
pub(crate) fn key(v: f64) -> u64 {
    let v = if v > 0.0 { v } else { 0.0 };
    u64::MAX - v.to_bits()
}

pub(crate) fn value(key: u64) -> f64 {
    f64::from_bits(u64::MAX - key)
}

/// What makes nodes equivalent: labels, CPU limit enforcement, capacity buckets of cores and
/// memory.
type ClassKey<'a> = (&'a [(u32, u32)], bool, i32, i32);

/// Capacities in the same octave (`[2^k, 2^(k+1))`) share a bucket.
fn bucket(x: f64) -> i32 {
    if x > 0.0 {
        x.log2().floor() as i32
    } else {
        i32::MIN
    }
}

impl Index {
    pub fn build(cluster: &Cluster) -> Index {
        let mut regions = Interner::default();
        let mut keys = Interner::default();
        let mut values = Interner::default();
        let mut names = Interner::default();
        let node_labels: Vec<Vec<(u32, u32)>> = cluster
            .nodes
            .iter()
            .map(|n| {
                n.labels
                    .iter()
                    .map(|(k, v)| (keys.intern(k), values.intern(v)))
                    .collect()
            })
            .collect();
        let max_cost = cluster.nodes.iter().map(|n| n.cost()).fold(0.0, f64::max);
        let mut class_of: HashMap<ClassKey<'_>, u32> = HashMap::new();
        let mut classes: Vec<Class> = Vec::new();
        let mut node_regions: Vec<u32> = Vec::new();
        let mut nodes = Vec::with_capacity(cluster.nodes.len());
        for (n, labels) in cluster.nodes.iter().zip(&node_labels) {
            let region = regions.intern(n.region());
            if !node_regions.contains(&region) {
                node_regions.push(region);
            }
            let class = *class_of
                .entry((
                    labels.as_slice(),
                    n.cpu_limit,
                    bucket(amount(n.cpus)),
                    bucket(n.memory as f64),
                ))
                .or_insert_with(|| {
                    let mut dense = vec![NONE; keys.len()];
                    for &(k, v) in labels {
                        dense[k as usize] = v;
                    }
                    classes.push(Class {
                        labels: dense,
                        region,
                        cost: cost(n.cost(), max_cost),
                        cpu_limit: n.cpu_limit,
                        by_rank: BTreeSet::new(),
                        by_free: BTreeSet::new(),
                        by_memory: BTreeSet::new(),
                    });
                    (classes.len() - 1) as u32
                });
            nodes.push(NodeState {
                class,
                region,
                name: names.intern(&n.name),
                up: n.up,
                schedulable: n.schedulable,
                cpus: amount(n.cpus),
                memory: n.memory,
                committed_memory: n.committed_memory,
                committed_cpu: amount(n.committed_cpu),
                busy: amount(n.cpu_busy),
                listed: None,
            });
        }
        // Regions that only clients or links mention still need rows: demand comes from them.
        for (a, b) in cluster.network.links.keys() {
            regions.intern(a);
            regions.intern(b);
        }
        for w in &cluster.workloads {
            for r in w.demand.keys() {
                regions.intern(r);
            }
        }
        let r = regions.len();
        let unmeasured = cluster.network.unmeasured();
        let (mut rtt, mut bandwidth) = (vec![0.0; r * r], vec![0.0; r * r]);
        for a in 0..r {
            for b in 0..r {
                let link = cluster.network.between_with(
                    regions.name(a as u32),
                    regions.name(b as u32),
                    unmeasured,
                );
                rtt[a * r + b] = link.rtt_ms;
                bandwidth[a * r + b] = link.bandwidth;
            }
        }
        let mut index = Index {
            regions,
            rtt,
            bandwidth,
            node_regions,
            keys,
            values,
            names,
            classes,
            nodes,
        };
        for n in 0..index.nodes.len() {
            index.list(n as u32);
        }
        index
    }

    pub fn link(&self, a: u32, b: u32) -> Link {
        let i = a as usize * self.regions.len() + b as usize;
        Link {
            rtt_ms: self.rtt.get(i).copied().unwrap_or(0.0),
            bandwidth: self.bandwidth.get(i).copied().unwrap_or(1.0),
        }
    }

    pub fn rtt(&self, a: u32, b: u32) -> f64 {
        self.rtt
            .get(a as usize * self.regions.len() + b as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// A reservation (and its measured use) arrives on node `n`.
    pub fn add(&mut self, n: u32, memory: u64, cpu: f64, used: f64) {
        self.unlist(n);
        let s = &mut self.nodes[n as usize];
        s.committed_memory = s.committed_memory.saturating_add(memory);
        s.committed_cpu += cpu;
        s.busy += used;
        self.list(n);
    }

    /// A reservation (and its measured use) leaves node `n`.
    pub fn remove(&mut self, n: u32, memory: u64, cpu: f64, used: f64) {
        self.unlist(n);
        let s = &mut self.nodes[n as usize];
        s.committed_memory = s.committed_memory.saturating_sub(memory);
        s.committed_cpu = amount(s.committed_cpu - cpu);
        s.busy = amount(s.busy - used);
        self.list(n);
    }

    /// Let node `n` take new workloads or not (it stays in the view either way).
    pub fn set_schedulable(&mut self, n: u32, schedulable: bool) {
        self.unlist(n);
        self.nodes[n as usize].schedulable = schedulable;
        self.list(n);
    }

    fn unlist(&mut self, n: u32) {
        let s = &mut self.nodes[n as usize];
        if let Some((rank, free, memory)) = s.listed.take() {
            let class = &mut self.classes[s.class as usize];
            class.by_rank.remove(&(rank, n));
            class.by_free.remove(&(free, n));
            class.by_memory.remove(&(memory, n));
        }
    }

    fn list(&mut self, n: u32) {
        let s = &mut self.nodes[n as usize];
        if !s.usable() {
            return;
        }
        let room = s.memory.saturating_sub(s.committed_memory);
        let keys = (key(s.rank()), key(s.free()), u64::MAX - room);
        s.listed = Some(keys);
        let class = &mut self.classes[s.class as usize];
        class.by_rank.insert((keys.0, n));
        class.by_free.insert((keys.1, n));
        class.by_memory.insert((keys.2, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_from_the_largest_and_give_the_value_back() {
        let vs = [0.0, -0.0, 1e-300, 0.25, 0.5, 1.0];
        for w in vs.windows(2) {
            assert!(key(w[0]) >= key(w[1]), "{w:?}");
        }
        assert_eq!(value(key(0.37)), 0.37);
        assert_eq!(value(key(f64::NAN)), 0.0);
    }
}
