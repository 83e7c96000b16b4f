//! `tern receive`: the destination of a live migration between two processes (`tern instance
//! migrate`, or an agent's order): listen, take the program in, and run it once told go.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use tern_runtime::Start;

use crate::args::{parse_dirs, parse_duration, CheckpointArgs, ServiceArgs};
use crate::control::migration_timeout;
use crate::files::write_atomically;
use crate::launch::{bind_service, finish, load, Loaded};

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen for the source.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the address actually listened on to this file.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Give up if no source connects within this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    accept_timeout: Duration,
    /// Grant a host directory: HOST_DIR[::GUEST_DIR] (must cover the program's preopens).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dirs: Vec<String>,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The program's module (.wasm).
    module: PathBuf,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let preopens = parse_dirs(&a.dirs)?;
    let Loaded {
        wasm,
        options,
        shared,
        rt,
        prepared,
    } = load(&a.module, &a.checkpoint)?;
    // The program's own sockets first: until it runs here, connections queue on them.
    let listeners = bind_service(&a.service)?;
    let listener = std::net::TcpListener::bind(a.listen)
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    if let Some(f) = &a.port_file {
        write_atomically(f, &addr.to_string())?;
    }
    let conn = accept_within(&listener, a.accept_timeout)?;
    drop(listener);
    conn.set_read_timeout(Some(migration_timeout()))?;
    conn.set_write_timeout(Some(migration_timeout()))?;
    // Should the source fall silent after this side is ready, only a control socket's owner
    // can know whether it committed; without one, not running is the safe answer.
    let decide: Box<dyn FnMut() -> Option<bool> + Send> = if a.checkpoint.control.is_some() {
        let s = shared.clone();
        Box::new(move || s.decision())
    } else {
        Box::new(|| Some(false))
    };
    let start = Start::Incoming {
        conn,
        preopens,
        listeners,
        decide,
    };
    let outcome = rt.run(&prepared, start, &options);
    finish(outcome, &a.checkpoint, &wasm, &shared)
}

fn accept_within(
    listener: &std::net::TcpListener,
    timeout: Duration,
) -> Result<std::net::TcpStream> {
    listener.set_nonblocking(true)?;
    let until = std::time::Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                return Ok(conn);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= until {
                    anyhow::bail!("no source connected within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e).context("waiting for the source"),
        }
    }
}
