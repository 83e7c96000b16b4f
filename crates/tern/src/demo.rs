//! `tern demo`: the main job on a bundled program. It runs the program uninterrupted, then runs
//! it again with a checkpoint, resumes the snapshot in a separate process, and shows that the
//! two halves together equal the uninterrupted run byte for byte. Then it starts a local
//! cluster (a controller and three agents in different regions), deploys the program as a
//! workload, moves it live across the regions while it works (printing each move's report),
//! shows that its output equals that of an unmoved run, and stops the cluster.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The printer fixture: prints numbered lines while it computes, so that a resume that lost or
/// repeated work would show.
const PROGRAM: &[u8] = include_bytes!("../../../fixtures/printer.wasm");
const ARGS: &[&str] = &["1500"];
/// Lines the workload prints on the cluster: long enough (a few seconds) to be moved thrice.
const CLUSTER_LINES: u32 = 20000;

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
    println!("6. a local cluster: tern up --detach");
    let up = tern_at(&["up", "--detach"])?;
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
            "9. move it live across the regions while it prints: tern migrate printer --to NODE"
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
        Ok(())
    })();
    println!("12. tern down");
    show(&tern_at(&["down"])?);
    result
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
