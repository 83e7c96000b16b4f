//! The simulation: deterministic, and the generated world fits.

use tern_scheduler::sim::{generate, run, Rng, SimConfig};
use tern_scheduler::{feasible_nodes, Scheduler};

#[test]
fn a_small_simulation_places_almost_everything_and_rebalances() {
    let cfg = SimConfig {
        nodes: 300,
        workloads: 6_000,
        seed: 3,
        rebalance: true,
    };
    let r = run(&cfg);
    assert_eq!(r.placed + r.unplaced, 6_000);
    assert!(r.placed >= 5_700, "{r:?}");
    assert!(r.classes > 20 && r.classes <= 96, "{r:?}");
    let moves = r.moves.expect("rebalanced");
    assert!(
        moves > 0 && moves <= r.candidates.expect("counted"),
        "{r:?}"
    );
    assert!(r.rebalance_ms.is_some() && r.p99_decision_ms >= r.p50_decision_ms);
    // The same seed, the same world and the same decisions.
    let again = run(&cfg);
    assert_eq!(
        (again.placed, again.moves, again.candidates),
        (r.placed, r.moves, r.candidates)
    );
}

#[test]
fn the_full_size_world_fits() {
    let c = generate(5_000, 150_000, &mut Rng::new(1));
    let mut s = Scheduler::new(c);
    let placed = (0..150_000).filter(|&i| s.place(i).is_ok()).count();
    assert!(placed >= 142_500, "{placed}");
    // Whatever did not fit has a reason the filter agrees with.
    let c = s.cluster();
    for w in c.workloads.iter().filter(|w| w.node.is_none()).take(20) {
        assert!(feasible_nodes(w, &c.nodes).is_err(), "{}", w.name);
    }
}
