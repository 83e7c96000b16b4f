//! Finding the best node for a workload through the class index, without scoring every node.
//!
//! First, per region: proximity and move cost depend on a node only through its region, so they
//! are computed once per region that has nodes (`prepare.rs`). Then, per class: the static
//! terms plus what the best rank and the best free resources of the class allow for the two
//! varying terms give an upper bound of any of its nodes' totals. Classes are visited from the
//! highest bound, and the walk stops at the first class whose bound cannot beat the best total
//! found (branch and bound).
//!
//! Inside a class the ordered sets (by rank, by free resources, by free memory; see `index.rs`)
//! are walked side by side, Fagin's threshold algorithm: after each step, no node not yet seen
//! can score above the bound computed from the rank and the free resources at the current depth,
//! nor fit if the free memory at the current depth is too little, so the walk stops as soon as
//! the best found reaches that bound or memory runs out. That is exact, and short when the
//! workload has the default balance of performance and resources weights (the rank is then the
//! order of the varying terms). But a class of many nearly equal nodes, or of nodes that are
//! nearly full, could make it long, so the walk also stops after [`STEPS`] steps (96 nodes
//! examined) or [`SAMPLE`] nodes scored, whichever comes first: sampling, like the Kubernetes
//! scheduler's, which stops filtering once it has found enough feasible nodes.
//!
//! So a class of at most [`SAMPLE`] usable nodes is always searched exhaustively, and in a larger
//! one the node found may be worse than the best, never infeasible. Measured with brute force
//! (`tests/it/equivalence.rs`): all but 1 in 3,000 placements in the simulated fleet found the
//! best node, the other lost 0.003 in total score; in random clusters of 100-node classes, half
//! full or nearly full, 99.8% did, the others losing up to 0.08. Bounds carry a margin of 1e-9,
//! so a node better than the one found by less than that may be passed over.

use crate::feasible::{fits, Facts};
use crate::index::{value, Class, Index, NONE};
use crate::prepare::{Prepared, RegionTerms};
use crate::score::{affinity, total, Terms};
use crate::view::{amount, Weights};

/// Nodes scored per class, at most: those that fit, in the order the walk meets them.
pub(crate) const SAMPLE: usize = 24;
/// Steps inside one class, at most, each taking the next node of every set: nodes that do not
/// fit cost a step but no score, so a workload that fits few nodes still finds them.
pub(crate) const STEPS: usize = 32;

/// One node's full score, before it is given a name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eval {
    pub node: u32,
    pub terms: Terms,
    pub total: f64,
    pub latency: Option<f64>,
    pub move_seconds: f64,
}

/// Buffers reused from one decision to the next.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub regions: Vec<RegionTerms>,
    pub peer_regions: Vec<u32>,
    /// `(bound, class, total of the static terms)` of the classes worth a look.
    order: Vec<(f64, u32, f64)>,
    seen: Vec<u32>,
}

pub(crate) fn class_matches(class: &Class, p: &Prepared) -> bool {
    p.require.iter().all(|(k, allowed)| {
        class
            .labels
            .get(*k as usize)
            .is_some_and(|v| allowed.contains(v))
    })
}

fn class_admits(class: &Class, p: &Prepared) -> bool {
    (p.cpu == 0.0 || class.cpu_limit) && class_matches(class, p)
}

fn class_affinity(class: &Class, p: &Prepared) -> f64 {
    let matched = p
        .prefer
        .iter()
        // A class lacking the label holds `NONE` for it, as does a value no node has.
        .filter(|&&(k, v)| v != NONE && class.labels.get(k as usize) == Some(&v))
        .count();
    affinity(matched, p.prefer.len())
}

/// The per-node checks: not banned and room for the reservation.
fn node_admits(index: &Index, p: &Prepared, n: u32) -> bool {
    let s = &index.nodes[n as usize];
    !p.banned.contains(&s.name)
        && fits(
            s.memory.saturating_sub(s.committed_memory),
            s.cpus - s.committed_cpu,
            p.memory,
            p.cpu,
        )
}

/// Whether node `n` may take the workload (it does not run there).
pub(crate) fn admits(index: &Index, p: &Prepared, n: u32) -> bool {
    let s = &index.nodes[n as usize];
    s.usable() && class_admits(&index.classes[s.class as usize], p) && node_admits(index, p, n)
}

/// The facts [`crate::feasible::why_not`] needs, from the index.
pub(crate) fn facts<'a>(index: &Index, p: &Prepared, n: u32, name: &'a str) -> Facts<'a> {
    let s = &index.nodes[n as usize];
    let class = &index.classes[s.class as usize];
    let room = s.memory.saturating_sub(s.committed_memory);
    Facts {
        name,
        up: s.up,
        matches: class_matches(class, p) && !p.banned.contains(&s.name),
        schedulable: s.schedulable,
        cpu_limit: class.cpu_limit,
        fits: fits(room, s.cpus - s.committed_cpu, p.memory, p.cpu),
    }
}

/// The full score of node `n` for a workload running on `cur` (`None`: pending). Where it runs,
/// its own reservation and measured use are not counted twice and a move costs nothing.
pub(crate) fn eval(
    index: &Index,
    p: &Prepared,
    cur: Option<u32>,
    regions: &[RegionTerms],
    n: u32,
) -> Eval {
    let s = &index.nodes[n as usize];
    let class = &index.classes[s.class as usize];
    let here = cur == Some(n);
    let r = regions.get(s.region as usize).copied().unwrap_or_default();
    let (busy, memory, cpu) = if here {
        (
            s.busy - p.used,
            s.committed_memory.saturating_sub(p.memory),
            amount(s.committed_cpu - p.cpu),
        )
    } else {
        (s.busy, s.committed_memory, s.committed_cpu)
    };
    let terms = Terms {
        performance: crate::score::performance(busy, p.load, s.cpus),
        proximity: r.proximity,
        resources: crate::score::resources(
            memory.saturating_add(p.memory),
            s.memory,
            cpu + p.cpu,
            s.cpus,
        ),
        affinity: class_affinity(class, p),
        cost: class.cost,
        move_cost: if here { 0.0 } else { r.move_cost },
    };
    Eval {
        node: n,
        terms,
        total: total(&p.weights, &terms),
        latency: r.latency,
        move_seconds: if here { 0.0 } else { r.move_seconds },
    }
}

/// The best usable node other than `skip` whose total is above `floor`, through the classes.
/// `cur` is where the workload runs (for move costs). `None` when the search found nothing,
/// which with sampling does not prove that nothing fits: see [`scan`].
pub(crate) fn best(
    index: &Index,
    p: &Prepared,
    cur: Option<u32>,
    floor: f64,
    skip: Option<u32>,
    scratch: &mut Scratch,
) -> Option<Eval> {
    let Scratch {
        regions,
        order,
        seen,
        ..
    } = scratch;
    let w = &p.weights;
    order.clear();
    for (c, class) in index.classes.iter().enumerate() {
        let (Some(&(rank, _)), Some(&(free, _))) = (class.by_rank.first(), class.by_free.first())
        else {
            continue;
        };
        if !class_admits(class, p) {
            continue;
        }
        let r = regions
            .get(class.region as usize)
            .copied()
            .unwrap_or_default();
        let fixed = Terms {
            performance: 0.0,
            proximity: r.proximity,
            resources: 0.0,
            affinity: class_affinity(class, p),
            cost: class.cost,
            move_cost: r.move_cost,
        };
        let fixed = total(w, &fixed);
        let bound = fixed + varying(w, value(rank), value(free)) + MARGIN;
        if bound > floor {
            order.push((bound, c as u32, fixed));
        }
    }
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut found: Option<Eval> = None;
    let mut best_total = floor;
    for &(bound, c, fixed) in order.iter() {
        if bound <= best_total {
            break;
        }
        let class = &index.classes[c as usize];
        let mut by_rank = class.by_rank.iter();
        let mut by_free = class.by_free.iter();
        let mut by_memory = class.by_memory.iter();
        seen.clear();
        let mut scored = 0;
        for _ in 0..STEPS {
            // The sets hold the same nodes: when one ends, every node has been seen.
            let (Some(&(rank, a)), Some(&(free, b)), Some(&(room, m))) =
                (by_rank.next(), by_free.next(), by_memory.next())
            else {
                break;
            };
            for n in [a, b, m] {
                if seen.contains(&n) {
                    continue;
                }
                seen.push(n);
                if Some(n) == skip || !node_admits(index, p, n) {
                    continue;
                }
                let e = eval(index, p, cur, regions, n);
                scored += 1;
                if e.total > best_total {
                    best_total = e.total;
                    found = Some(e);
                }
            }
            // Every node not yet seen comes later in every set: its rank and its free
            // resources are at most those at this depth, so it cannot beat this; and it has at
            // most this much memory free, so if this is too little it does not fit at all.
            if scored >= SAMPLE
                || u64::MAX - room < p.memory
                || fixed + varying(w, value(rank), value(free)) + MARGIN <= best_total
            {
                break;
            }
        }
    }
    found
}

/// The bounds are sums in another order than [`total`]'s, so they could fall a few ulps short
/// of a total they bound; this margin, far below any difference that matters, keeps them above.
const MARGIN: f64 = 1e-9;

/// An upper bound of `performance · idle + resources · free` (the weighted varying terms) over
/// the nodes with `idle + free / 2 <= rank` and `free <= free_max`: the sum is
/// `performance · (idle + free / 2) + (resources − performance / 2) · free`, and both factors of
/// the second product are bounded where it is positive. After a placement both terms are at
/// most their values before, which the sets hold.
fn varying(w: &Weights, rank: f64, free_max: f64) -> f64 {
    w.performance * rank + (w.resources - 0.5 * w.performance).max(0.0) * free_max
}

/// Every usable node, the exhaustive fallback for when [`best`] found nothing: a workload is
/// never left pending because sampling missed the one node with room.
pub(crate) fn scan(
    index: &Index,
    p: &Prepared,
    cur: Option<u32>,
    skip: Option<u32>,
    regions: &[RegionTerms],
) -> Option<Eval> {
    let admitted: Vec<bool> = index.classes.iter().map(|c| class_admits(c, p)).collect();
    let mut found: Option<Eval> = None;
    for (n, s) in index.nodes.iter().enumerate() {
        let n = n as u32;
        if !s.usable()
            || Some(n) == skip
            || !admitted[s.class as usize]
            || !node_admits(index, p, n)
        {
            continue;
        }
        let e = eval(index, p, cur, regions, n);
        if found.is_none_or(|f| e.total > f.total) {
            found = Some(e);
        }
    }
    found
}
