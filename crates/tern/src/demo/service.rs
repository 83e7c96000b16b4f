//! Part three of `tern demo`: automatic placement. An HTTP service deployed in eu-west gets
//! its clients through the ap-south gateway, and the scheduler moves it to them on its own
//! without losing a request.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::indent;

/// The HTTP counter service, whose counts live only in its memory.
const SERVICE: &[u8] = include_bytes!("../../../../fixtures/counter.wasm");

/// The scheduler at work: a service in eu-west whose clients are in ap-south moves to them.
pub(super) fn placement(
    dir: &std::path::Path,
    tern_at: &dyn Fn(&[&str]) -> Result<Output>,
) -> Result<()> {
    let show = |out: &Output| print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    let sdir = dir.join("counter");
    std::fs::create_dir_all(&sdir)?;
    std::fs::write(sdir.join("counter.wasm"), SERVICE).context("writing the bundled service")?;
    let profile = sdir.join("tern.toml");
    std::fs::write(
        &profile,
        "name = \"counter\"\nmodule = \"counter.wasm\"\nports = [8080]\n\n[http]\nhost = \"counter.example\"\n\n[migration]\ncooldown = \"5s\"\n",
    )?;
    println!("12. automatic placement: deploy an HTTP service and put it in eu-west (node-1)");
    let out = tern_at(&["deploy", &profile.display().to_string()])?;
    if !out.status.success() {
        bail!("deploy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let workload = |field: &str| -> Result<serde_json::Value> {
        let out = tern_at(&["ps", "-o", "json"])?;
        let ws: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(ws
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == "counter"))
            .map(|w| w[field].clone())
            .unwrap_or_default())
    };
    let started = Instant::now();
    while workload("endpoints")?[0]["address"].as_str().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the service did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if workload("node")? != "node-1" {
        let out = tern_at(&["migrate", "counter", "--to", "node-1"])?;
        if !out.status.success() {
            bail!(
                "moving it to node-1: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!("13. the links the nodes measured: tern network");
    show(&tern_at(&["network"])?);
    let gws: serde_json::Value =
        serde_json::from_slice(&tern_at(&["gateways", "-o", "json"])?.stdout)?;
    let Some(gateway) = gws
        .as_array()
        .and_then(|a| a.iter().find(|g| g["region"] == "ap-south"))
        .and_then(|g| g["address"].as_str())
        .map(str::to_string)
    else {
        bail!("no gateway in ap-south");
    };
    println!("14. clients in ap-south send POST /inc/k through {gateway} until the service moves");
    let mut conn = std::net::TcpStream::connect(&gateway)
        .with_context(|| format!("connecting to the gateway at {gateway}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(15)))?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut moved_after = None;
    while started.elapsed() < Duration::from_secs(60) {
        let (status, body) = post(&mut conn, "/inc/k")?;
        sent += 1;
        if status != 200 || body.trim() != sent.to_string() {
            bail!("request {sent} got {status} {body:?}, not the next count");
        }
        if sent.is_multiple_of(50) && moved_after.is_none() && workload("node")? == "node-3" {
            moved_after = Some(started.elapsed());
        }
        // Some requests after the move, at the new place.
        if moved_after.is_some_and(|t| started.elapsed() > t + Duration::from_secs(1)) {
            break;
        }
    }
    let Some(t) = moved_after else {
        bail!("the scheduler did not move the service to ap-south within a minute");
    };
    println!(
        "   moved to node-3 (ap-south) {:.1} s after the clients appeared; {sent} requests, every one answered with the next count",
        t.as_secs_f64()
    );
    println!("15. why: tern migrations; tern explain counter");
    show(&tern_at(&["migrations"])?);
    show(&tern_at(&["explain", "counter"])?);
    Ok(())
}

/// One request on a kept-alive connection: its status and body.
fn post(conn: &mut std::net::TcpStream, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    conn.write_all(format!("POST {path} HTTP/1.1\r\nHost: counter.example\r\n\r\n").as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            bail!("the gateway closed the connection");
        }
        head.push(byte[0]);
        if head.len() > 16 << 10 {
            bail!("an oversized response head");
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    conn.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
