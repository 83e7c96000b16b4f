//! Runs the scheduler simulation and prints its report as JSON:
//! `cargo run --release -p tern-scheduler --example sim -- --nodes 5000 --workloads 150000 [--rebalance] [--seed 1]`

use tern_scheduler::sim::{run, SimConfig};

fn main() {
    let mut cfg = SimConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            match args.next().map(|v| v.parse::<u64>()) {
                Some(Ok(v)) => v,
                _ => {
                    eprintln!("{what} needs a number");
                    std::process::exit(2);
                }
            }
        };
        match arg.as_str() {
            "--nodes" => cfg.nodes = number("--nodes") as usize,
            "--workloads" => cfg.workloads = number("--workloads") as usize,
            "--seed" => cfg.seed = number("--seed"),
            "--rebalance" => cfg.rebalance = true,
            other => {
                eprintln!("unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let report = run(&cfg);
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("cannot print the report: {e}");
            std::process::exit(1);
        }
    }
}
