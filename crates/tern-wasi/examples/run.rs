//! Minimal runner for trying a WASI command module by hand:
//! `cargo run -p tern-wasi --example run -- prog.wasm [--dir HOST::GUEST]... [-- ARGS...]`.
//! Environment variables prefixed `WASI_` are passed to the guest without the prefix.

use std::path::PathBuf;
use tern_wasi::{add_to_linker, BlockingHooks, Preopen, ProcExit, WasiConfig, WasiCtx, WasiView};
use wasmtime::{Caller, Engine, Linker, Module, Store};

struct Host(WasiCtx);

impl WasiView for Host {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.0
    }
    fn capture_requested(&self) -> bool {
        false
    }
}

fn no_hook(_: &mut Caller<'_, Host>) -> wasmtime::Result<()> {
    Ok(())
}

fn main() -> wasmtime::Result<()> {
    let mut argv = std::env::args().skip(1);
    let wasm = argv.next().ok_or_else(|| {
        wasmtime::Error::msg("usage: run PROG.wasm [--dir HOST::GUEST]... [-- ARGS...]")
    })?;
    let mut preopens = Vec::new();
    let mut args = vec![wasm.clone()];
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--dir" => {
                let spec = argv.next().unwrap_or_default();
                let (host, guest) = spec
                    .split_once("::")
                    .unwrap_or((spec.as_str(), spec.as_str()));
                preopens.push(Preopen {
                    host: PathBuf::from(host),
                    guest: guest.to_string(),
                });
            }
            "--" => args.extend(argv.by_ref()),
            _ => args.push(a),
        }
    }
    let env = std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix("WASI_").map(|k| (k.to_string(), v)))
        .collect();
    let ctx = WasiCtx::new(WasiConfig {
        args,
        env,
        preopens,
        listeners: Vec::new(),
    })?;
    let engine = Engine::default();
    let module = Module::from_file(&engine, &wasm)?;
    let mut linker = Linker::new(&engine);
    add_to_linker(
        &mut linker,
        BlockingHooks {
            on_enter: no_hook,
            on_interrupt: no_hook,
        },
    )?;
    let mut store = Store::new(&engine, Host(ctx));
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let code = match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<ProcExit>() {
            Some(ProcExit(code)) => *code,
            None => return Err(e),
        },
    };
    std::process::exit(code);
}
