//! Benchmark of live migration on the local fleet; prints a table (not a timed test):
//! `cargo bench -p tern --bench migration`. A real controller and two real agents (processes
//! on 127.0.0.1). For each memory size and write rate, the `dirtier` fixture is moved back and
//! forth while it writes; each move's pause and total time come from its migration report.
//! Next to them: the physical limit, the bytes that had to move divided by the loopback
//! bandwidth measured in the same run.
//!
//! `TERN_BENCH_SIZES` (MiB, default `16,64,256`), `TERN_BENCH_RATES` (MiB/s, default
//! `0,10,100`) and `TERN_BENCH_MOVES` (default 10) change the grid.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tern_testkit::{Cluster, Profile, Tern};

/// MiB/s through a TCP connection on 127.0.0.1, one thread writing and one reading: the best of
/// three runs (the limit is what the machine can do, so noise must not lower it).
fn loopback_bandwidth() -> f64 {
    (0..3).map(|_| loopback_once()).fold(0.0, f64::max)
}

fn loopback_once() -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let total: usize = 1 << 30;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0);
            got += n;
        }
    });
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let buf = vec![7u8; 256 << 10];
    let t = Instant::now();
    for _ in 0..total / buf.len() {
        s.write_all(&buf).expect("write");
    }
    reader.join().expect("reader");
    (total >> 20) as f64 / t.elapsed().as_secs_f64()
}

fn list(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let sizes = list("TERN_BENCH_SIZES", "16,64,256");
    let rates = list("TERN_BENCH_RATES", "0,10,100");
    let moves = list("TERN_BENCH_MOVES", "10")
        .first()
        .copied()
        .unwrap_or(10) as usize;
    let home = tempfile::tempdir().expect("home");
    let fleet = Cluster::builder(Tern::new(env!("CARGO_BIN_EXE_tern"), home.path()))
        .node("alpha", "region=eu-west")
        .node("beta", "region=eu-west")
        .start();
    let bw = loopback_bandwidth();
    println!("loopback bandwidth: {bw:.0} MiB/s (1 GiB through one TCP connection, best of 3)");
    println!(
        "\n{:>6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "memory",
        "writes",
        "moves",
        "pause p50",
        "pause p99",
        "total p50",
        "wire p50",
        "limit",
        "total/limit",
        "rounds"
    );
    for &size in &sizes {
        for &rate in &rates {
            let name = format!("d{size}r{rate}");
            let (s, r) = (size.to_string(), rate.to_string());
            fleet.deploy(
                &Profile::new(&name, "dirtier")
                    .args(&[&s, &r, "3600"])
                    .restart_never(),
            );
            // Running and with its memory filled.
            fleet.wait_for(
                Duration::from_secs(120),
                &format!("{name} to get ready"),
                |c| c.logs(&name).contains("ready"),
            );
            let (mut pauses, mut totals, mut wires, mut rounds) = (vec![], vec![], vec![], vec![]);
            for _ in 0..moves {
                let here = fleet.node_of(&name).unwrap_or_default();
                let to = if here == "alpha" { "beta" } else { "alpha" };
                let m = fleet.try_json(&["migrate", &name, "--to", to]);
                if m["outcome"] != "committed" {
                    eprintln!("{name}: move failed: {m}");
                    continue;
                }
                pauses.push(m["pause_ms"].as_f64().unwrap_or(f64::NAN));
                totals.push(m["total_ms"].as_f64().unwrap_or(f64::NAN));
                wires.push(m["bytes"].as_f64().unwrap_or(f64::NAN));
                rounds.push(m["rounds"].as_array().map(|r| r.len()).unwrap_or(0) as f64);
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = fleet.tern(&["rm", &name]);
            let wire = percentile(&wires, 0.5);
            let limit_ms = wire / (1u64 << 20) as f64 / bw * 1e3;
            let total = percentile(&totals, 0.5);
            println!(
                "{:>4}Mi {:>5}M/s {:>5} {:>8.2}ms {:>8.2}ms {:>8.1}ms {:>7.1}MiB {:>8.1}ms {:>11.2} {:>7.0}",
                size,
                rate,
                pauses.len(),
                percentile(&pauses, 0.5),
                percentile(&pauses, 0.99),
                total,
                wire / (1u64 << 20) as f64,
                limit_ms,
                total / limit_ms,
                percentile(&rounds, 0.5),
            );
        }
    }
}
