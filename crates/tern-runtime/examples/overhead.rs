//! Run one module plain and instrumented, alternately, and print the run-time ratio:
//! `cargo run --release -p tern-runtime --example overhead -- [--runs N] [--dir HOST]
//! [--only plain|tern|none] [--function-map FILE] MODULE.wasm [ARGS...]`.
//! The bench's overhead rows for any program, for trying a transform change on the program it
//! is meant to help. `--dir HOST` preopens HOST as `.`. Times are whole runs in one process,
//! same engine and WASI host; each run's time is printed so the noise is visible.
//!
//! Times on a shared VM move by several percent; instruction counts do not. `--only` runs one
//! side (or neither, for a baseline to subtract) and `--function-map` writes where each
//! function's code lies in both modules, for `scripts/icount.sh`, which counts the guest's
//! instructions under valgrind (see there).

use std::time::Instant;

use tern_runtime::{RunOptions, Runtime, Start};
use tern_wasi::{Preopen, WasiConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let mut runs = 5usize;
    let mut dir = None;
    let mut only = None;
    let mut function_map = None;
    while let Some(a) = args.peek() {
        match a.as_str() {
            "--only" => {
                args.next();
                only = Some(args.next().ok_or("--only needs plain, tern or none")?);
            }
            "--function-map" => {
                args.next();
                function_map = Some(args.next().ok_or("--function-map needs a file")?);
            }
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
        .ok_or("usage: overhead [--runs N] [--dir HOST] [--only plain|tern|none] [--function-map FILE] MODULE.wasm [ARGS...]")?;
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
    // Both modules' code comes from a file, so profilers can name its functions.
    let plain_file = cache.path().join("plain.cwasm");
    std::fs::write(&plain_file, plain_module.serialize()?)?;
    #[allow(unsafe_code)]
    // SAFETY: the file was just written by this engine from this module.
    let plain_module = unsafe { wasmtime::Module::deserialize_file(rt.engine(), &plain_file)? };
    if let Some(path) = &function_map {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (side, m) in [("plain", &plain_module), ("tern", &prepared.module)] {
            let text = m.text().as_ptr() as usize;
            for func in m.functions() {
                let name = func
                    .name
                    .unwrap_or_else(|| format!("f{}", func.index.as_u32()));
                writeln!(f, "{side} {} {} {name}", text + func.offset, func.len)?;
            }
        }
    }
    let (run_plain, run_tern) = match only.as_deref() {
        None => (true, true),
        Some("plain") => (true, false),
        Some("tern") => (false, true),
        Some("none") => (false, false),
        Some(other) => return Err(format!("--only {other}: plain, tern or none").into()),
    };
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
        if run_plain {
            rt.run_uninstrumented(&plain_module, config())?;
        }
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        if run_tern {
            rt.run(&prepared, Start::Fresh(config()), &RunOptions::default())?;
        }
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
