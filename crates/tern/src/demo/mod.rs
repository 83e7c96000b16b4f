//! `tern demo`: the main job on a bundled program. It runs the program uninterrupted, then runs
//! it again with a checkpoint, resumes the snapshot in a separate process, and shows that the
//! two halves together equal the uninterrupted run byte for byte. Then it starts a local
//! cluster (a controller and three agents in different regions), deploys the program as a
//! workload, moves it live across the regions while it works (printing each move's report),
//! shows that its output equals that of an unmoved run. Last, with clients of an HTTP service
//! arriving through another region's gateway (the cluster's geography comes from a delay
//! table), it shows the scheduler move the service to them on its own, with no request lost,
//! and explain why; then it stops the cluster.
//!
//! Part one (the checkpoint and resume of one program) is here, the cluster in `cluster.rs`,
//! automatic placement in `service.rs`. Every step runs `tern` as a user would and prints
//! what it ran.

mod cluster;
mod service;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The printer fixture: prints numbered lines while it computes, so that a resume that lost or
/// repeated work would show.
const PROGRAM: &[u8] = include_bytes!("../../../../fixtures/printer.wasm");
const ARGS: &[&str] = &["1500"];

fn tern(args: &[&str]) -> Result<Output> {
    let exe = std::env::current_exe().context("finding the tern executable")?;
    Command::new(exe)
        .args(args)
        .output()
        .with_context(|| format!("running tern {}", args.join(" ")))
}

pub fn demo(after: Option<Duration>) -> Result<std::process::ExitCode> {
    let dir = crate::home::tern_home()?.join("demo");
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
    cluster::cluster(&dir)?;
    Ok(std::process::ExitCode::SUCCESS)
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
