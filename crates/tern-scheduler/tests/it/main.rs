//! The scheduler's integration tests: hand-made clusters for behaviour, random ones for the
//! index's equivalence with brute force and the scores' with the formulas, and the simulation.

mod common;
mod equivalence;
mod explain;
mod feasibility;
mod oracle;
mod random;
mod robustness;
mod scenarios;
mod serde_forms;
mod sim;
