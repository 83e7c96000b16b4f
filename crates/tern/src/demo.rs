//! `tern demo`: the main job on a bundled program. It runs the program uninterrupted, then runs
//! it again with a checkpoint, resumes the snapshot in a separate process, and shows that the
//! two halves together equal the uninterrupted run byte for byte. Then it starts a local
//! cluster (a controller and three agents in different regions), deploys the program as a
//! workload, moves it live across the regions while it works (printing each move's report),
//! shows that its output equals that of an unmoved run. Last, with clients of an HTTP service
//! arriving through another region's gateway (the cluster's geography comes from a delay
//! table), it shows the scheduler move the service to them on its own, with no request lost,
//! and explain why; then it stops the cluster.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The printer fixture: prints numbered lines while it computes, so that a resume that lost or
/// repeated work would show.
const PROGRAM: &[u8] = include_bytes!("../../../fixtures/printer.wasm");
const ARGS: &[&str] = &["1500"];
/// Lines the workload prints on the cluster: long enough (a few seconds) to be moved thrice.
const CLUSTER_LINES: u32 = 20000;
/// The HTTP counter service, whose counts live only in its memory.
const SERVICE: &[u8] = include_bytes!("../../../fixtures/counter.wasm");
/// The local cluster's made-up geography (round trips between its three regions).
const DELAYS: &str = "[[link]]\nbetween = [\"eu-west\", \"us-east\"]\ndelay = \"40ms\"\n\n\
[[link]]\nbetween = [\"eu-west\", \"ap-south\"]\ndelay = \"120ms\"\n\n\
[[link]]\nbetween = [\"us-east\", \"ap-south\"]\ndelay = \"90ms\"\n";

fn tern(args: &[&str]) -> Result<Output> {
    let exe = std::env::current_exe().context("finding the tern executable")?;
    Command::new(exe)
        .args(args)
        .output()
        .with_context(|| format!("running tern {}", args.join(" ")))
}

pub fn demo(after: Option<Duration>) -> Result<std::process::ExitCode> {
    let dir = crate::cli::tern_home()?.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let module = dir.join("printer.wasm");
    std::fs::write(&module, PROGRAM).context("writing the bundled program")?;
    let snap = dir.join("printer.snap");
    let _ = std::fs::remove_file(&snap);
    let module_s = module.display().to_string();
    let snap_s = snap.display().to_string();

    println!(
        "1. uninterrupted run: tern run {module_s} -- {}",
        ARGS.join(" ")
    );
    let mut args = vec!["run", module_s.as_str(), "--"];
    args.extend(ARGS);
    // The first run also instruments and compiles the program into the cache; time a second.
    tern(&args)?;
    let t = Instant::now();
    let whole = tern(&args)?;
    let took = t.elapsed();
    println!(
        "   {} lines of output, exit code {:?}, {:.0} ms",
        count_lines(&whole.stdout),
        whole.status.code(),
        took.as_secs_f64() * 1e3
    );
    // Halfway through by default, whatever the speed of this machine.
    let after = after.unwrap_or(took / 2);
    let after_s = format!("{}ms", after.as_millis());

    println!("2. run with a checkpoint after {after_s}: tern run --checkpoint-after {after_s} --checkpoint-to {snap_s} ...");
    let mut args = vec![
        "run",
        "--checkpoint-after",
        after_s.as_str(),
        "--checkpoint-to",
        snap_s.as_str(),
        module_s.as_str(),
        "--",
    ];
    args.extend(ARGS);
    let first = tern(&args)?;
    print!("{}", indent(&String::from_utf8_lossy(&first.stderr)));
    if !snap.exists() {
        bail!("the program finished before {after_s}; try a shorter --after");
    }
    println!(
        "   {} lines before the checkpoint",
        count_lines(&first.stdout)
    );

    println!("3. the snapshot: tern snapshot inspect {snap_s}");
    let inspect = tern(&["snapshot", "inspect", snap_s.as_str()])?;
    print!("{}", indent(&String::from_utf8_lossy(&inspect.stdout)));

    println!("4. resume in a new process: tern resume {snap_s}");
    let t = Instant::now();
    let second = tern(&["resume", snap_s.as_str()])?;
    println!(
        "   {} more lines, exit code {:?}, {:.0} ms",
        count_lines(&second.stdout),
        second.status.code(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut stdout = first.stdout.clone();
    stdout.extend_from_slice(&second.stdout);
    let mut stderr = first.stderr.clone();
    // The checkpoint notice is Tern's, not the program's.
    let notice = format!("checkpoint: {snap_s}\n");
    if stderr.ends_with(notice.as_bytes()) {
        stderr.truncate(stderr.len() - notice.len());
    }
    stderr.extend_from_slice(&second.stderr);
    let same = stdout == whole.stdout
        && stderr == whole.stderr
        && second.status.code() == whole.status.code();
    println!(
        "5. checkpointed + resumed == uninterrupted: stdout {}, stderr {}, exit code {}",
        verdict(stdout == whole.stdout),
        verdict(stderr == whole.stderr),
        verdict(second.status.code() == whole.status.code())
    );
    if !same {
        bail!("the resumed run differs from the uninterrupted one");
    }
    cluster(&dir)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Part two: the same program as a workload on a local cluster, in a Tern home of its own so
/// that a cluster the user runs is not disturbed.
fn cluster(dir: &std::path::Path) -> Result<()> {
    let home = dir.join("home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home)?;
    let exe = std::env::current_exe().context("finding the tern executable")?;
    let tern_at = |args: &[&str]| -> Result<Output> {
        Command::new(&exe)
            .args(args)
            .env("TERN_HOME", &home)
            .output()
            .with_context(|| format!("running tern {}", args.join(" ")))
    };
    let show = |out: &Output| {
        print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    };
    let delays = dir.join("delays.toml");
    std::fs::write(&delays, DELAYS).context("writing the delay table")?;
    let delays_s = delays.display().to_string();
    println!("6. a local cluster: tern up --detach --delays {delays_s}");
    let up = tern_at(&["up", "--detach", "--delays", &delays_s])?;
    show(&up);
    if !up.status.success() {
        bail!("tern up failed: {}", String::from_utf8_lossy(&up.stderr));
    }
    let result = (|| -> Result<()> {
        let profile = dir.join("tern.toml");
        std::fs::write(
            &profile,
            format!(
                "name = \"printer\"\nmodule = \"printer.wasm\"\nargs = [\"{CLUSTER_LINES}\"]\n\n[limits]\nmemory = \"64MiB\"\n\n[restart]\npolicy = \"never\"\n"
            ),
        )?;
        println!("7. deploy it: tern deploy {}", profile.display());
        let out = tern_at(&["deploy", &profile.display().to_string()])?;
        show(&out);
        if !out.status.success() {
            bail!("deploy failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let started = Instant::now();
        let node_of = || -> Result<String> {
            let out = tern_at(&["ps", "-o", "json"])?;
            let ws: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            Ok(ws
                .as_array()
                .and_then(|a| a.iter().find(|w| w["name"] == "printer"))
                .and_then(|w| w["node"].as_str())
                .unwrap_or("")
                .to_string())
        };
        while node_of()?.is_empty() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the workload did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("8. tern nodes; tern ps");
        show(&tern_at(&["nodes"])?);
        show(&tern_at(&["ps"])?);
        println!(
            "9. move it live across the regions while it prints: tern migrate printer --to NODE\n   (each pause includes a round trip of the link crossed: 40-120 ms in this geography)"
        );
        let mut moves = 0;
        for _ in 0..3 {
            let here = node_of()?;
            let to = match here.as_str() {
                "node-1" => "node-2",
                "node-2" => "node-3",
                _ => "node-1",
            };
            let out = tern_at(&["migrate", "printer", "--to", to])?;
            show(&out);
            if out.status.success() {
                moves += 1;
            } else {
                print!("{}", indent(&String::from_utf8_lossy(&out.stderr)));
            }
        }
        println!("10. wait for it to end, then compare with an unmoved run");
        let ended = Instant::now();
        loop {
            let out = tern_at(&["ps", "-o", "json"])?;
            let ws: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let status = ws
                .as_array()
                .and_then(|a| a.iter().find(|w| w["name"] == "printer"))
                .map(|w| w["status"].clone())
                .unwrap_or_default();
            if status != "running" && status != "starting" {
                break;
            }
            if ended.elapsed() > Duration::from_secs(120) {
                bail!("the workload did not end");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let module = dir.join("printer.wasm").display().to_string();
        let lines = CLUSTER_LINES.to_string();
        let unmoved = tern(&["run", &module, "--", &lines])?;
        let mut logs = tern_at(&["logs", "printer"])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while logs.stdout.len() < unmoved.stdout.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            logs = tern_at(&["logs", "printer"])?;
        }
        let same = logs.stdout == unmoved.stdout;
        println!(
            "   {} lines over {moves} moves; output of the moved workload == unmoved run: {}",
            count_lines(&logs.stdout),
            verdict(same)
        );
        println!("11. tern migrations");
        show(&tern_at(&["migrations"])?);
        if !same {
            bail!("the moved workload's output differs from an unmoved run");
        }
        placement(dir, &tern_at)
    })();
    println!("16. tern down");
    show(&tern_at(&["down"])?);
    result
}

/// The scheduler at work: a service in eu-west whose clients are in ap-south moves to them.
fn placement(dir: &std::path::Path, tern_at: &dyn Fn(&[&str]) -> Result<Output>) -> Result<()> {
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

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("   {l}\n")).collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "identical"
    } else {
        "DIFFERENT"
    }
}
