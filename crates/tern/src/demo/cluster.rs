//! Part two of `tern demo`: the program as a workload on a local cluster, moved live across
//! regions while it prints, its output compared with an unmoved run.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{count_lines, indent, tern, verdict};

/// Lines the workload prints on the cluster: long enough (a few seconds) to be moved thrice.
const CLUSTER_LINES: u32 = 20000;
/// The local cluster's made-up geography (round trips between its three regions).
const DELAYS: &str = "[[link]]\nbetween = [\"eu-west\", \"us-east\"]\ndelay = \"40ms\"\n\n\
[[link]]\nbetween = [\"eu-west\", \"ap-south\"]\ndelay = \"120ms\"\n\n\
[[link]]\nbetween = [\"us-east\", \"ap-south\"]\ndelay = \"90ms\"\n";

/// Part two: the same program as a workload on a local cluster, in a Tern home of its own so
/// that a cluster the user runs is not disturbed.
pub(super) fn cluster(dir: &std::path::Path) -> Result<()> {
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
        super::service::placement(dir, &tern_at)
    })();
    println!("16. tern down");
    show(&tern_at(&["down"])?);
    result
}
