//! Benchmark of the local fleet; prints tables (not a timed test):
//! `cargo bench -p tern --bench fleet`. A real controller and one real agent (processes on
//! 127.0.0.1) as `tern up` starts them.
//!
//! - deploy-to-running: from `POST /v1/workloads` to the controller reporting the workload
//!   running, with the module already on the node, and with a 10 MiB module the node has never
//!   seen (upload, pull, instrument, compile, start);
//! - density: idle instances (blocked in `poll_oneoff`) on one agent, and the resident memory of
//!   the agent with all its instance processes.

use std::time::{Duration, Instant};

use tern_testkit::{Cluster, Tern};

/// A program that sleeps forever (an hour at a time), with `data` bytes of initialised memory.
fn idle_module(data: usize, seed: u32) -> Vec<u8> {
    let pages = (data + 2048).div_ceil(65536).max(1);
    let mut text = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
  (global i32 (i32.const {seed}))
  (func (export "_start")
    (loop $l
      (i64.store (i32.const 24) (i64.const 3600000000000))
      (i32.store (i32.const 16) (i32.const 1))
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $l)))
"#
    );
    if data > 0 {
        text.push_str("  (data (i32.const 1024) \"");
        let mut x = seed.wrapping_mul(2654435761) | 1;
        for _ in 0..data {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            text.push_str(&format!("\\{:02x}", x as u8));
        }
        text.push_str("\")\n");
    }
    text.push(')');
    wat::parse_str(&text).expect("valid module")
}

/// The cluster, driven through its HTTP API: a deploy's time to running is not to include
/// the start of a `tern` process.
struct Fleet {
    cluster: Cluster,
    http: reqwest::blocking::Client,
}

impl Fleet {
    fn start(home: &std::path::Path) -> Fleet {
        let cluster = Cluster::builder(Tern::new(env!("CARGO_BIN_EXE_tern"), home))
            .node("bench", "region=eu-west")
            .start();
        Fleet {
            cluster,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.url())
    }

    fn get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .bearer_auth(self.cluster.token())
            .send()
            .and_then(|r| r.json())
            .unwrap_or(serde_json::Value::Null)
    }

    fn upload(&self, bytes: Vec<u8>) -> String {
        let d = tern_snapshot::digest(&bytes);
        let r = self
            .http
            .put(self.url(&format!("/v1/blobs/{d}")))
            .bearer_auth(self.cluster.token())
            .body(bytes)
            .send()
            .expect("upload");
        assert!(r.status().is_success(), "{}", r.status());
        d
    }

    fn deploy(&self, name: &str, module: &str, memory: &str) {
        let profile = tern_profile::parse(
            "bench.toml",
            &format!("name = \"{name}\"\nmodule = \"m.wasm\"\n[limits]\nmemory = \"{memory}\"\n"),
        )
        .expect("profile");
        let spec = tern_api::WorkloadSpec {
            profile,
            module: module.into(),
            files: vec![],
        };
        let r = self
            .http
            .post(self.url("/v1/workloads"))
            .bearer_auth(self.cluster.token())
            .json(&spec)
            .send()
            .expect("deploy");
        assert!(r.status().is_success(), "{}", r.status());
    }

    fn wait_running(&self, name: &str) {
        let started = Instant::now();
        loop {
            let w = self.get(&format!("/v1/workloads/{name}"));
            if w["status"] == "running" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{name} never ran: {w}{}",
                self.cluster.recent()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Resident memory of the agent and all its instance processes, in bytes: (RSS, PSS).
    /// RSS counts shared pages (the `tern` executable, the compiled module in the page cache)
    /// once per process; PSS divides them among the processes that share them.
    fn agent_tree_memory(&self) -> (u64, u64) {
        let agent_pid = self.cluster.agent_pid("bench");
        let mut total = memory(agent_pid);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 2..].to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(agent_pid) {
                let m = memory(pid);
                total.0 += m.0;
                total.1 += m.1;
            }
        }
        total
    }
}

/// (RSS, PSS) of a process in bytes, from `/proc/<pid>/smaps_rollup`.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("Rss:"), field("Pss:"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|m| m.round()).collect()
}

fn main() {
    let home = tempfile::tempdir().expect("home");
    let fleet = Fleet::start(home.path());

    // Deploy-to-running, module already on the node (and compiled in the node's cache).
    let warm = fleet.upload(idle_module(0, 1));
    fleet.deploy("warmup", &warm, "4MiB");
    fleet.wait_running("warmup");
    let mut warm_ms = Vec::new();
    for i in 0..5 {
        let name = format!("warm-{i}");
        let t = Instant::now();
        fleet.deploy(&name, &warm, "4MiB");
        fleet.wait_running(&name);
        warm_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // A 10 MiB module the node has never seen: upload, pull, instrument, compile, start.
    let mut cold_ms = Vec::new();
    for i in 0..3 {
        let module = idle_module(10 << 20, 100 + i);
        let name = format!("cold-{i}");
        let t = Instant::now();
        let d = fleet.upload(module);
        fleet.deploy(&name, &d, "64MiB");
        fleet.wait_running(&name);
        cold_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("\n## tern fleet benchmark (one controller, one agent, 127.0.0.1)\n");
    println!("| deploy to running | median | runs (ms) |\n|---|---|---|");
    println!(
        "| module already on the node | {:.0} ms | {:?} |",
        median(warm_ms.clone()),
        rounded(&warm_ms)
    );
    println!(
        "| 10 MiB module not yet there | {:.0} ms | {:?} |",
        median(cold_ms.clone()),
        rounded(&cold_ms)
    );

    // Density: idle instances on the one agent.
    let before = fleet.agent_tree_memory();
    // TERN_BENCH_IDLE=1000 for the full density target (takes minutes).
    let n: usize = std::env::var("TERN_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    for i in 0..n {
        fleet.deploy(&format!("idle-{i}"), &warm, "4MiB");
    }
    for i in 0..n {
        fleet.wait_running(&format!("idle-{i}"));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = fleet.agent_tree_memory();
    let instances = n + 5 + 3 + 1;
    let mib = |b: u64| b as f64 / 1048576.0;
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64;
    let (rss_per, pss_per) = (per(after.0, before.0), per(after.1, before.1));
    println!("\n| density | RSS | PSS |\n|---|---|---|");
    println!("| idle instances running on the agent | {instances} | |");
    println!(
        "| agent + instances | {:.0} MiB | {:.0} MiB |",
        mib(after.0),
        mib(after.1)
    );
    println!(
        "| per idle instance | {:.1} MiB | {:.1} MiB |",
        rss_per / 1048576.0,
        pss_per / 1048576.0
    );
    println!(
        "| 1,000 idle instances (target 2 GiB) | {:.1} GiB | {:.1} GiB |",
        rss_per * 1000.0 / 1073741824.0,
        pss_per * 1000.0 / 1073741824.0
    );
}
