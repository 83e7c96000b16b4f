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
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tern(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tern"));
    c.env("TERN_HOME", home);
    c
}

struct Fleet {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    url: String,
    token: String,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let data = dir.path().join("controller");
        let controller = tern(&home)
            .args(["controller", "--data"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            // Only the moves the bench makes: the scheduler would add its own.
            .arg("--placement-paused")
            .stderr(Stdio::null())
            .spawn()
            .expect("controller");
        let started = Instant::now();
        while !data.join("url").exists() {
            assert!(started.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(20));
        let url = std::fs::read_to_string(data.join("url")).expect("url");
        let token = std::fs::read_to_string(data.join("token")).expect("token");
        let mut f = Fleet {
            children: vec![controller],
            url: url.trim().into(),
            token: token.trim().into(),
            dir,
        };
        for name in ["alpha", "beta"] {
            let agent = tern(&home)
                .args(["agent", "--controller", &f.url, "--token", &f.token])
                .args(["--name", name, "--labels", "region=eu-west", "--data"])
                .arg(f.dir.path().join(name))
                .stderr(Stdio::null())
                .spawn()
                .expect("agent");
            f.children.push(agent);
        }
        while f.json(&["nodes"]).as_array().is_none_or(|a| a.len() < 2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    fn run(&self, args: &[&str]) -> Output {
        tern(&self.dir.path().join("home"))
            .args(args)
            .args(["--controller", &self.url, "--token", &self.token])
            .output()
            .expect("tern")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_slice(&self.run(&a).stdout).unwrap_or_default()
    }

    fn workload(&self, name: &str) -> serde_json::Value {
        self.json(&["ps"])
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or_default()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

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
    let fleet = Fleet::start();
    let work = tempfile::tempdir().expect("tempdir");
    let module = work.path().join("m.wasm");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dirtier.wasm"),
        &module,
    )
    .expect("fixture");
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
            let p = work.path().join(format!("{name}.toml"));
            std::fs::write(
                &p,
                format!(
                    "name = \"{name}\"\nmodule = \"m.wasm\"\nargs = [\"{size}\", \"{rate}\", \"3600\"]\n[restart]\npolicy = \"never\"\n"
                ),
            )
            .expect("profile");
            let out = fleet.run(&["deploy", &p.display().to_string()]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let started = Instant::now();
            // Running and with its memory filled.
            while !String::from_utf8_lossy(&fleet.run(&["logs", &name]).stdout).contains("ready") {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{name} never got ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let (mut pauses, mut totals, mut wires, mut rounds) = (vec![], vec![], vec![], vec![]);
            for _ in 0..moves {
                let here = fleet.workload(&name)["node"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let to = if here == "alpha" { "beta" } else { "alpha" };
                let m = fleet.json(&["migrate", &name, "--to", to]);
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
            let _ = fleet.run(&["rm", &name]);
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
