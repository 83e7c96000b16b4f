//! Benchmark of the migratable runtime; prints a table (not a timed test).
//!
//! `cargo bench -p tern-runtime --bench runtime` — figures go to docs/benchmarks.md.
//! Guest programs print a few lines of their own; the table comes last.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_runtime::{Control, Outcome, Resumable, RunOptions, Runtime, SnapshotFile, Start};
use tern_snapshot::PageEncoding;
use tern_wasi::{Preopen, WasiConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures").join(format!("{name}.wasm"))).expect("fixture")
}

fn config(args: &[&str], preopens: Vec<Preopen>) -> WasiConfig {
    let mut a = vec!["bench".to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    WasiConfig {
        args: a,
        env: Vec::new(),
        preopens,
        listeners: Vec::new(),
    }
}

/// Resume `snapshot`, stop it again at its first safe point, and return the restore time (ms).
fn restore(rt: &Runtime, prepared: &tern_runtime::Prepared, snapshot: Resumable) -> f64 {
    let resume = RunOptions {
        checkpoint_after: Some(Duration::ZERO),
        ..RunOptions::default()
    };
    let start = Start::Resume {
        snapshot,
        preopens: vec![],
        listeners: vec![],
    };
    let out = rt.run(prepared, start, &resume).expect("resume");
    assert!(
        matches!(out, Outcome::Captured(_)),
        "resume finished before the second capture"
    );
    let ms = resume.stats.lock().expect("stats").restore_ms;
    ms.expect("restore ms")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn secs<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_secs_f64(), r)
}

struct Row(Vec<String>);

/// Median run time of `wasm` uninstrumented and instrumented, same engine and WASI host.
fn overhead_row(
    rt: &Runtime,
    name: &str,
    wasm: &[u8],
    prepared: &tern_runtime::Prepared,
    runs: usize,
    config: impl Fn() -> WasiConfig,
) -> Row {
    let plain_module = rt.compile_uninstrumented(wasm).expect("compile");
    let mut plain = Vec::new();
    let mut tern = Vec::new();
    for _ in 0..runs {
        plain.push(
            secs(|| {
                rt.run_uninstrumented(&plain_module, config())
                    .expect("plain run")
            })
            .0,
        );
        tern.push(
            secs(|| {
                rt.run(prepared, Start::Fresh(config()), &RunOptions::default())
                    .expect("run")
            })
            .0,
        );
    }
    let (p, t) = (median(plain), median(tern));
    Row(vec![
        name.to_string(),
        format!("{p:.3} s"),
        format!("{t:.3} s"),
        format!("{:.3}x", t / p),
    ])
}

fn table(title: &str, head: &[&str], rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| {} |", head.join(" | "));
    println!(
        "|{}|",
        head.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.0.join(" | "));
    }
}

fn main() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(cache.path()).expect("runtime");
    let runs = 3;
    // `cargo bench -p tern-runtime --bench runtime -- transfer` runs only that part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if want("overhead") {
        overhead_and_compile(&rt, runs);
    }
    if want("transfer") {
        transfer(&rt, runs);
    }
}

fn overhead_and_compile(rt: &Runtime, runs: usize) {
    // 1. Overhead of migratable execution vs the same module uninstrumented, same engine.
    let mut overhead = Vec::new();
    let mut prep = Vec::new();
    let cases: &[(&str, &[&str])] = &[
        ("compute", &["100000000"]),
        ("recursion", &["2000", "600"]),
        ("bigmem", &["64", "4"]),
        ("printer", &["300"]),
    ];
    for (name, args) in cases {
        let wasm = fixture(name);
        let prepared = rt.prepare(&wasm).expect("prepare");
        let (cached_s, _) = secs(|| rt.prepare(&wasm).expect("prepare"));
        prep.push(Row(vec![
            name.to_string(),
            format!("{} KiB", wasm.len() / 1024),
            format!("{:.1} ms", prepared.instrument_ms),
            format!("{:.0} ms", prepared.compile_ms),
            format!("{:.1} ms", cached_s * 1e3),
            format!("{}/{}", prepared.meta.instrumented, prepared.meta.functions),
        ]));
        overhead.push(overhead_row(rt, name, &wasm, &prepared, runs, || {
            config(args, vec![])
        }));
    }

    // Real programs, when fetched (scripts/fetch-real-programs.sh).
    let real = repo().join("target/real-programs");
    for name in ["flite", "yosys"] {
        let path = real.join(format!("{name}.wasm"));
        if !path.exists() || (name == "yosys" && std::env::var_os("TERN_BENCH_YOSYS").is_none()) {
            continue;
        }
        let wasm = std::fs::read(&path).expect("read");
        let prepared = rt.prepare(&wasm).expect("prepare");
        let (cached_s, _) = secs(|| rt.prepare(&wasm).expect("prepare"));
        prep.push(Row(vec![
            name.to_string(),
            format!("{:.1} MiB", wasm.len() as f64 / 1048576.0),
            format!("{:.0} ms", prepared.instrument_ms),
            format!("{:.0} ms", prepared.compile_ms),
            format!("{:.1} ms", cached_s * 1e3),
            format!("{}/{}", prepared.meta.instrumented, prepared.meta.functions),
        ]));
        if name == "flite" {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::copy(
                repo().join("fixtures/real-programs/flite-input.txt"),
                dir.path().join("input.txt"),
            )
            .expect("copy");
            let pre = || {
                vec![Preopen {
                    host: dir.path().to_path_buf(),
                    guest: ".".into(),
                }]
            };
            let args = ["-voice", "slt", "-f", "input.txt", "-o", "out.wav"];
            overhead.push(overhead_row(rt, "flite", &wasm, &prepared, runs, || {
                config(&args, pre())
            }));
        }
    }

    println!("\n## tern-runtime benchmark ({} runs each, medians)", runs);
    table(
        "Run time, migratable vs plain wasmtime (same engine, same WASI host)",
        &["program", "plain", "tern (instrumented)", "ratio"],
        &overhead,
    );
    table(
        "Instrumentation and compilation",
        &[
            "program",
            "size",
            "instrument (cold)",
            "compile (cold)",
            "prepare (cached)",
            "functions instrumented",
        ],
        &prep,
    );
}

fn transfer(rt: &Runtime, runs: usize) {
    // 2. Capture and restore for 1, 64 and 256 MiB of memory (the bigmem fixture).
    let mut transfer = Vec::new();
    let wasm = fixture("bigmem");
    let prepared = rt.prepare(&wasm).expect("prepare");
    let scratch = tempfile::tempdir().expect("tempdir");
    for (mib, after_ms) in [(1u64, 150u64), (64, 400), (256, 1500)] {
        let mut captures = Vec::new();
        let mut latencies = Vec::new();
        let mut restores = Vec::new();
        let mut copied = Vec::new();
        let mut sizes = (0u64, 0u64, 0u64);
        for _ in 0..runs {
            let opts = RunOptions {
                checkpoint_after: Some(Duration::from_millis(after_ms)),
                control: Arc::new(Control::new()),
                ..RunOptions::default()
            };
            let passes = "100000";
            let args = [mib.to_string(), passes.to_string()];
            let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let out = rt
                .run(&prepared, Start::Fresh(config(&args, vec![])), &opts)
                .expect("run");
            let Outcome::Captured(snap) = out else {
                panic!("bigmem {mib} MiB ended before {after_ms} ms")
            };
            let stats = opts.stats.lock().expect("stats").clone();
            captures.push(stats.capture_ms.expect("capture ms"));
            latencies.push(stats.request_to_safe_point_ms.expect("latency"));
            let raw = tern_snapshot::encode(&snap, PageEncoding::Raw);
            let packed = tern_snapshot::encode(&snap, PageEncoding::Lz4);
            sizes = (
                snap.memories.iter().map(|m| m.size).sum(),
                raw.len() as u64,
                packed.len() as u64,
            );
            let path = scratch.path().join(format!("{mib}.tsnap"));
            std::fs::write(&path, &raw).expect("write snapshot");
            // Restore in a fresh store, and stop it again at once so the run stays short:
            // from the file (pages mapped; opening the file counts), then from memory (pages
            // decompressed and copied).
            let (open_s, file) = secs(|| SnapshotFile::open(&path).expect("open"));
            let mapped = restore(rt, &prepared, Resumable::File(Arc::new(file)));
            restores.push(open_s * 1e3 + mapped);
            let decoded = tern_snapshot::decode(&packed).expect("decode");
            copied.push(restore(
                rt,
                &prepared,
                Resumable::Snapshot(Box::new(decoded)),
            ));
        }
        let bytes = vec![1u8; sizes.0 as usize];
        let mut copies = Vec::new();
        for _ in 0..runs {
            let (s, c) = secs(|| bytes.clone());
            std::hint::black_box(&c);
            copies.push(s * 1e3);
        }
        transfer.push(Row(vec![
            format!("{mib} MiB"),
            format!("{:.2} ms", median(latencies)),
            format!("{:.2} ms", median(captures)),
            format!("{:.2} ms", median(copies)),
            format!("{:.2} ms", median(restores)),
            format!("{:.2} ms", median(copied)),
            format!("{:.1} MiB", sizes.0 as f64 / 1048576.0),
            format!("{:.1} MiB", sizes.1 as f64 / 1048576.0),
            format!("{:.1} MiB", sizes.2 as f64 / 1048576.0),
        ]));
    }

    table(
        "Checkpoint and restore (bigmem fixture)",
        &[
            "memory",
            "request → safe point",
            "capture",
            "plain copy of same bytes",
            "restore to running (mapped file)",
            "restore (LZ4, copied)",
            "memory size",
            "file, raw pages",
            "file, LZ4 pages",
        ],
        &transfer,
    );
}
