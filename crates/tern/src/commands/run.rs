//! `tern run`: run a WASI command module in this process, optionally checkpointing it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use tern_runtime::Start;
use tern_wasi::WasiConfig;

use crate::args::{parse_dirs, parse_env, CheckpointArgs, ServiceArgs};
use crate::launch::{bind_service, finish, load, Loaded};

#[derive(clap::Args)]
pub struct Args {
    /// Environment variable for the program: K=V, or K to pass this process's value.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Grant a host directory: HOST_DIR[::GUEST_DIR].
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dirs: Vec<String>,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The program's argv[0] (default: the module's path as given), as `wasmtime run --argv0`.
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
    /// The module (.wasm).
    module: PathBuf,
    /// Arguments for the program (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let mut env = parse_env(&a.env)?;
    let preopens = parse_dirs(&a.dirs)?;
    let Loaded {
        wasm,
        options,
        shared,
        rt,
        prepared,
    } = load(&a.module, &a.checkpoint)?;
    let listeners = bind_service(&a.service)?;
    listen_env(&mut env, preopens.len(), listeners.len());
    let argv0 = a.argv0.unwrap_or_else(|| a.module.display().to_string());
    let mut argv = vec![argv0];
    argv.extend(a.args);
    let config = WasiConfig {
        args: argv,
        env,
        preopens,
        listeners,
    };
    let outcome = rt.run(&prepared, Start::Fresh(config), &options);
    finish(outcome, &a.checkpoint, &wasm, &shared)
}

/// Tell the program which descriptors are its listening sockets: they follow the preopened
/// directories (wasi-libc stops looking for directories at the first descriptor that is not
/// one, so sockets first would hide every directory). A value the user set stays.
fn listen_env(env: &mut Vec<(String, String)>, dirs: usize, sockets: usize) {
    if sockets == 0 {
        return;
    }
    let fds: Vec<String> = (0..sockets).map(|i| (3 + dirs + i).to_string()).collect();
    for (k, v) in [
        ("LISTEN_FDS", sockets.to_string()),
        ("TERN_LISTEN_FDS", fds.join(",")),
    ] {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v));
        }
    }
}
