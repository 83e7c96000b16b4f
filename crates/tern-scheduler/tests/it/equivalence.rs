//! The class index against brute force. On random clusters whose classes are small enough for
//! the search to be exhaustive (at most 24 usable nodes per class), placing through the index
//! must find a node as good as the best of all feasible nodes, and rebalancing must find the
//! same candidates as scoring every node. In larger classes, where sampling may cut the walk,
//! the node found must stay close to the best.

use tern_scheduler::sim::Rng;
use tern_scheduler::{feasible_nodes, Cluster, Hysteresis, Limits, Scheduler, Verdict};

use crate::random::random_cluster;

/// The best total over every node `score` accepts.
fn brute_force(s: &Scheduler, w: usize) -> Option<f64> {
    (0..s.cluster().nodes.len())
        .filter_map(|n| s.score(w, n).ok())
        .map(|score| score.total)
        .max_by(f64::total_cmp)
}

#[test]
fn placing_through_the_index_finds_the_best_feasible_node() {
    let (mut placed, mut refused) = (0, 0);
    for seed in 0..200 {
        // Classes of 2, 6 or 10 nodes.
        let c = random_cluster(seed, 30, 50, [15, 5, 3][seed as usize % 3], false);
        let mut s = Scheduler::new(c);
        for w in 0..50 {
            let scores: Vec<Option<f64>> = (0..30)
                .map(|n| s.score(w, n).ok().map(|score| score.total))
                .collect();
            let best = brute_force(&s, w);
            let reason = feasible_nodes(&s.cluster().workloads[w], &s.cluster().nodes).err();
            match (s.place(w), best) {
                (Ok(name), Some(best)) => {
                    let n = s.node_index(&name).expect("a node of the cluster");
                    let got = scores[n].expect("the chosen node is feasible");
                    assert!(got >= best - 1e-9, "seed {seed} w{w}: {got} < {best}");
                    placed += 1;
                }
                (Err(why), None) => {
                    assert_eq!(Some(why), reason, "seed {seed} w{w}");
                    refused += 1;
                }
                (got, best) => panic!("seed {seed} w{w}: placed {got:?}, brute force {best:?}"),
            }
        }
    }
    // The clusters are roomy enough for choices and tight enough for reasons.
    assert!(
        placed > 5_000 && refused > 200,
        "{placed} placed, {refused} refused"
    );
}

#[test]
fn rebalancing_finds_the_candidates_brute_force_finds() {
    let mut candidates = 0;
    for seed in 0..200 {
        let mut s = Scheduler::new(random_cluster(
            seed,
            30,
            50,
            [15, 5, 3][seed as usize % 3],
            false,
        ));
        for w in 0..50 {
            let _ = s.place(w);
        }
        let placed = Scheduler::new(s.into_cluster());
        // Nothing may move, so every candidate is held with the destination it was found for.
        let limits = Limits {
            per_node: 10,
            total: 0,
            active: Vec::new(),
            settling: Vec::new(),
        };
        let mut h = Hysteresis::new(1);
        let mut s = Scheduler::new(placed.cluster().clone());
        assert!(s.rebalance(&limits, &mut h).is_empty());
        let mut expected = 0;
        for w in 0..50 {
            let name = &placed.cluster().workloads[w].name;
            match (placed.explain(w, 1).verdict, h.sighting(name)) {
                (Verdict::Move { to, .. }, Some((found, _))) => {
                    let score = |to: &str| {
                        let n = placed.node_index(to).expect("known node");
                        placed.score(w, n).expect("feasible").total
                    };
                    let (want, got) = (score(&to), score(found));
                    assert!(
                        (want - got).abs() < 1e-9,
                        "seed {seed} {name}: {got} vs {want}"
                    );
                    expected += 1;
                }
                (Verdict::Move { .. }, None) => panic!("seed {seed} {name}: candidate missed"),
                (verdict, Some(found)) => panic!("seed {seed} {name}: {found:?} but {verdict:?}"),
                (_, None) => {}
            }
        }
        assert_eq!(s.last_pass().candidates, expected, "seed {seed}");
        candidates += expected;
    }
    assert!(candidates > 100, "{candidates}");
}

/// How often placing through the index found a node as good as brute force, and the largest
/// shortfall in total score, placing every workload and checking every `every`-th.
fn sampled_quality(c: Cluster, every: usize) -> (f64, f64) {
    let (n, w) = (c.nodes.len(), c.workloads.len());
    let mut s = Scheduler::new(c);
    let (mut exact, mut checked, mut worst) = (0, 0, 0.0f64);
    for i in 0..w {
        if i % every != 0 {
            let _ = s.place(i);
            continue;
        }
        let scores: Vec<Option<f64>> = (0..n)
            .map(|j| s.score(i, j).ok().map(|x| x.total))
            .collect();
        let best = scores.iter().flatten().copied().max_by(f64::total_cmp);
        if let (Ok(name), Some(best)) = (s.place(i), best) {
            let got = s
                .node_index(&name)
                .and_then(|j| scores[j])
                .expect("feasible");
            checked += 1;
            if got >= best - 1e-9 {
                exact += 1;
            }
            worst = worst.max(best - got);
        }
    }
    (exact as f64 / checked as f64, worst)
}

#[test]
fn sampling_in_large_classes_stays_close_to_the_best() {
    // Three classes of 100 nodes of one machine type each; then four times the workloads, which
    // leaves the nodes nearly full.
    for load in [400, 1_600] {
        let (mut exact, mut worst) = (0.0, 0.0f64);
        for seed in 0..10 {
            let (e, w) = sampled_quality(random_cluster(seed, 300, load, 3, true), 1);
            exact += e / 10.0;
            worst = worst.max(w);
        }
        assert!(
            exact > 0.99 && worst < 0.3,
            "{load} workloads: {exact} exact, worst {worst}"
        );
    }
}

#[test]
fn sampling_finds_the_best_node_in_the_simulated_fleet() {
    let c = tern_scheduler::sim::generate(500, 15_000, &mut Rng::new(1));
    let (exact, worst) = sampled_quality(c, 10);
    assert!(
        exact > 0.995 && worst < 0.05,
        "{exact} exact, worst {worst}"
    );
}
