//! Compile a module with Tern's engine settings and report time and peak memory:
//! `cargo run --release -p tern-runtime --example compile -- IN.wasm [backtracking|single_pass]`.
//! Used to find which compiler settings keep very large instrumented modules compilable.
//! With `TERN_EMIT_CLIF=DIR` set, Cranelift writes each function's optimised IR there; with
//! `TERN_WRITE_CWASM=FILE`, the compiled code goes to FILE (an ELF: `objdump -d` shows it).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let input = args
        .get(1)
        .ok_or("usage: compile IN.wasm [backtracking|single_pass]")?;
    let mut config = tern_runtime::engine_config();
    match args.get(2).map(String::as_str) {
        None | Some("backtracking") => {}
        Some("single_pass") => {
            config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        }
        Some(other) => return Err(format!("unknown regalloc algorithm {other}").into()),
    }
    if let Some(dir) = std::env::var_os("TERN_EMIT_CLIF") {
        config.emit_clif(std::path::Path::new(&dir));
    }
    let engine = wasmtime::Engine::new(&config)?;
    let wasm = std::fs::read(input)?;
    let t = Instant::now();
    let code = engine.precompile_module(&wasm)?;
    if let Some(out) = std::env::var_os("TERN_WRITE_CWASM") {
        std::fs::write(out, &code)?;
    }
    println!(
        "{input}: {} bytes -> {} bytes of code in {:.1} s; peak RSS {} MiB",
        wasm.len(),
        code.len(),
        t.elapsed().as_secs_f64(),
        peak_rss_kib() / 1024
    );
    Ok(())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
