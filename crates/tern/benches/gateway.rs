//! Benchmark of the gateway; prints a table (not a timed test): `cargo bench -p tern --bench
//! gateway`. A real controller, two agents and a gateway (processes on 127.0.0.1) in front of
//! the `counter` service, and Debian's nginx (installed with apt-get if missing, started here
//! with its own configuration) as a reverse proxy in front of the same instance, kept-alive on
//! both sides. The same load generator (threads, one kept-alive connection each) measures
//! both in turn, twice, in the same run: throughput and latency p50/p99. Then, with the load
//! on, the service is moved back and forth: the slowest request of each move (held by the
//! gateway while the service stops) next to that move's pause.
//!
//! `TERN_BENCH_CONNS` (default 8), `TERN_BENCH_SECS` (per measurement, default 5) and
//! `TERN_BENCH_MOVES` (default 10) change it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_testkit::{signal_pid, Cluster, Profile, Tern};

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// nginx, stopped (SIGTERM) when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        signal_pid(self.0.id(), "-TERM");
        let _ = self.0.wait();
    }
}

fn nginx() -> String {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    eprintln!("installing nginx-light with apt-get");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "nginx-light"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        Path::new("/usr/sbin/nginx").exists(),
        "nginx is not available"
    );
    "/usr/sbin/nginx".into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One kept-alive client; (start, latency) of each answered request until `until`.
fn client(addr: &str, until: Instant) -> (Vec<(Instant, Duration)>, u64) {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    let mut failed = 0;
    let req = b"GET /total HTTP/1.1\r\nHost: counter.example\r\n\r\n";
    let mut line = String::new();
    while Instant::now() < until {
        let t = Instant::now();
        w.write_all(req).expect("send");
        let mut len = 0usize;
        let mut status = 0;
        loop {
            line.clear();
            if r.read_line(&mut line).expect("receive") == 0 {
                panic!("connection closed");
            }
            if status == 0 {
                status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).expect("body");
        if status == 200 {
            out.push((t, t.elapsed()));
        } else {
            failed += 1;
        }
    }
    (out, failed)
}

/// `conns` clients for `secs`: every request's (start, latency), and failures.
fn load(addr: &str, conns: u64, secs: u64) -> (Vec<(Instant, Duration)>, u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let a = addr.to_string();
            std::thread::spawn(move || client(&a, until))
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = 0;
    for t in threads {
        let (o, f) = t.join().expect("client");
        all.extend(o);
        failed += f;
    }
    (all, failed)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let conns = env_num("TERN_BENCH_CONNS", 8);
    let secs = env_num("TERN_BENCH_SECS", 5);
    let moves = env_num("TERN_BENCH_MOVES", 10);
    let nginx = nginx();
    let home = tempfile::tempdir().expect("home");
    let b = Cluster::builder(Tern::new(env!("CARGO_BIN_EXE_tern"), home.path()))
        .node("alpha", "region=eu-west")
        .node("beta", "region=eu-west")
        .gateway("eu-west", &[])
        .start();
    let gateway = b.gateway_addr("eu-west").to_string();

    b.deploy(
        &Profile::new("counter", "counter")
            .top("ports = [8080]\n")
            .toml("[http]\nhost = \"counter.example\"\n"),
    );
    let endpoint = |c: &Cluster| {
        let w = c.workload("counter");
        let e = w["endpoints"][0]["address"].as_str().map(str::to_string);
        e.filter(|_| w["status"] == "running")
    };
    b.wait_for(Duration::from_secs(120), "the counter's endpoint", |c| {
        endpoint(c).is_some()
    });
    let endpoint = endpoint(&b).expect("endpoint");

    // nginx in front of the very same instance.
    let ngx = b.dir().join("nginx");
    std::fs::create_dir_all(ngx.join("tmp")).expect("mkdir");
    let port = free_port();
    let d = ngx.display();
    std::fs::write(
        ngx.join("nginx.conf"),
        format!(
            "worker_processes auto;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
             upstream counter {{ server {endpoint}; keepalive 64; keepalive_requests 100000000; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://counter;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n    }}\n  }}\n}}\n"
        ),
    )
    .expect("nginx.conf");
    let log = std::fs::File::create(ngx.join("nginx.log")).expect("log");
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-p")
            .arg(&ngx)
            .arg("-c")
            .arg(ngx.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nginx"),
    );
    let nginx_addr = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while std::net::TcpStream::connect(&nginx_addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    println!("{conns} kept-alive connections, {secs} s per measurement, GET /total of the counter service");
    println!();
    println!(
        "{:>10} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "proxy", "run", "requests/s", "p50", "p99", "failed"
    );
    let mut results: Vec<(&str, f64, f64, f64)> = Vec::new();
    for run in 1..=2 {
        for (name, addr) in [("tern", gateway.as_str()), ("nginx", nginx_addr.as_str())] {
            let (mut reqs, failed) = load(addr, conns, secs);
            let mut lat: Vec<Duration> = reqs.drain(..).map(|r| r.1).collect();
            lat.sort();
            let rps = lat.len() as f64 / secs as f64;
            let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
            println!("{name:>10} {run:>6} {rps:>12.0} {p50:>8.2}ms {p99:>8.2}ms {failed:>8}");
            results.push((name, rps, p50, p99));
        }
    }
    let avg = |who: &str, f: fn(&(&str, f64, f64, f64)) -> f64| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == who).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!();
    println!(
        "tern / nginx: throughput {:.2}x, p99 {:.2}x",
        avg("tern", |r| r.1) / avg("nginx", |r| r.1),
        avg("tern", |r| r.3) / avg("nginx", |r| r.3)
    );

    // Moves under load: what the slowest request of each move waited.
    let nodes = ["alpha", "beta"];
    let until = Instant::now() + Duration::from_secs(600);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let a = gateway.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let mut failed = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
                    let (o, f) = client(&a, Instant::now() + Duration::from_millis(200));
                    all.extend(o);
                    failed += f;
                }
                (all, failed)
            })
        })
        .collect();
    let mut windows = Vec::new();
    for _ in 0..moves {
        std::thread::sleep(Duration::from_millis(300));
        let from = b.node_of("counter").unwrap_or_else(|| "alpha".into());
        let to = nodes.iter().find(|n| **n != from).expect("other");
        let t0 = Instant::now();
        let m = b.try_json(&["migrate", "counter", "--to", to]);
        let t1 = Instant::now();
        windows.push((
            t0,
            t1,
            m["pause_ms"].as_f64().unwrap_or(0.0),
            m["outcome"].clone(),
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = Vec::new();
    let mut failed = 0;
    for l in loaders {
        let (o, f) = l.join().expect("loader");
        all.extend(o);
        failed += f;
    }
    let mut steady: Vec<Duration> = all
        .iter()
        .filter(|(t, _)| !windows.iter().any(|(a, b, _, _)| t >= a && t <= b))
        .map(|r| r.1)
        .collect();
    steady.sort();
    let base = pct(&steady, 0.5);
    println!();
    println!(
        "moves under load (4 connections): {} requests, {failed} failed; steady p50 {base:.2} ms",
        all.len()
    );
    println!(
        "{:>5} {:>10} {:>12} {:>14} {:>10}",
        "move", "pause", "slowest req", "extra vs p50", "outcome"
    );
    let mut extras = Vec::new();
    for (i, (a, bnd, pause, outcome)) in windows.iter().enumerate() {
        let slowest = all
            .iter()
            .filter(|(t, _)| t >= a && t <= bnd)
            .map(|r| r.1.as_secs_f64() * 1e3)
            .fold(0.0, f64::max);
        extras.push((slowest - base, *pause));
        println!(
            "{i:>5} {pause:>8.2}ms {slowest:>10.2}ms {:>12.2}ms {:>10}",
            slowest - base,
            outcome.as_str().unwrap_or("?")
        );
    }
    let over = extras.iter().filter(|(e, p)| *e > p + 5.0).count();
    println!(
        "moves whose slowest request waited more than the pause + 5 ms: {over} of {}",
        extras.len()
    );
}
