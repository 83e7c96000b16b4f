//! Run one module plain and instrumented, alternately, and print the run-time ratio:
//! `cargo run --release -p tern-runtime --example overhead -- [--runs N] [--dir HOST] MODULE.wasm [ARGS...]`.
//! The bench's overhead rows for any program, for trying a transform change on the program it
//! is meant to help. `--dir HOST` preopens HOST as `.`. Times are whole runs in one process,
//! same engine and WASI host; each run's time is printed so the noise is visible.

use std::time::Instant;

use tern_runtime::{RunOptions, Runtime, Start};
use tern_wasi::{Preopen, WasiConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let mut runs = 5usize;
    let mut dir = None;
    while let Some(a) = args.peek() {
        match a.as_str() {
            "--runs" => {
                args.next();
                runs = args.next().ok_or("--runs needs a number")?.parse()?;
            }
            "--dir" => {
                args.next();
                dir = Some(args.next().ok_or("--dir needs a path")?);
            }
            _ => break,
        }
    }
    let module = args
        .next()
        .ok_or("usage: overhead [--runs N] [--dir HOST] MODULE.wasm [ARGS...]")?;
    let guest_args: Vec<String> = std::iter::once(module.clone()).chain(args).collect();
    let config = || WasiConfig {
        args: guest_args.clone(),
        env: Vec::new(),
        preopens: dir
            .iter()
            .map(|d| Preopen {
                host: d.into(),
                guest: ".".into(),
            })
            .collect(),
        listeners: Vec::new(),
    };

    let cache = tempfile::tempdir()?;
    let rt = Runtime::new(cache.path())?;
    let wasm = std::fs::read(&module)?;
    let prepared = rt.prepare(&wasm)?;
    let plain_module = rt.compile_uninstrumented(&wasm)?;
    println!(
        "instrumented {}/{} functions in {:.0} ms, compiled in {:.0} ms",
        prepared.meta.instrumented,
        prepared.meta.functions,
        prepared.instrument_ms,
        prepared.compile_ms
    );
    let (mut plain, mut tern) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        rt.run_uninstrumented(&plain_module, config())?;
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        rt.run(&prepared, Start::Fresh(config()), &RunOptions::default())?;
        tern.push(t.elapsed().as_secs_f64());
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("plain s: {}", show(&plain));
    println!("tern  s: {}", show(&tern));
    // Each pair ran back to back, so a slow spell of the machine mostly hits both: the median
    // of the pairs' ratios is steadier than the ratio of the medians. The fastest runs show
    // what the noise left alone.
    let pairs: Vec<f64> = plain.iter().zip(&tern).map(|(p, t)| t / p).collect();
    let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (pmin, tmin) = (fastest(&plain), fastest(&tern));
    let (p, t) = (median(plain), median(tern));
    println!("median plain {p:.3} s, tern {t:.3} s, ratio {:.3}x", t / p);
    println!(
        "median of pair ratios {:.3}x; fastest plain {pmin:.3} s, tern {tmin:.3} s, ratio {:.3}x",
        median(pairs),
        tmin / pmin
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
