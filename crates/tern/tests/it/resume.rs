//! Checkpoint at many moments, resume in a new process, compare with an uninterrupted run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{assert_ends_alike, fixture, tern, text, Ending};

struct Case<'a> {
    fixture: &'a str,
    args: &'a [&'a str],
    /// Guest directory to grant a fresh, empty host directory as, if any.
    dir: Option<&'a str>,
}

fn run_args<'a>(
    case: &'a Case<'a>,
    module: &'a str,
    dir: &'a str,
    extra: &[&'a str],
) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into()];
    a.extend(extra.iter().map(|s| s.to_string()));
    if let Some(g) = case.dir {
        a.push("--dir".into());
        a.push(format!("{dir}::{g}"));
    }
    a.push(module.into());
    a.push("--".into());
    a.extend(case.args.iter().map(|s| s.to_string()));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

fn uninterrupted(case: &Case<'_>, work: &Path, name: &str) -> (Ending, Duration) {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let module = fixture(case.fixture).display().to_string();
    let started = Instant::now();
    let out = tern().run(&strs(&run_args(
        case,
        &module,
        &dir.display().to_string(),
        &[],
    )));
    let took = started.elapsed();
    (Ending::of(&out).with_files_in(&dir), took)
}

/// Run with a checkpoint after `delay_ms`, then resume (re-checkpointing `chain` more times).
/// Returns None when the program finished before the checkpoint.
fn interrupted(
    case: &Case<'_>,
    work: &Path,
    delay_ms: u64,
    chain: &[u64],
    reference: &Ending,
) -> Option<(Ending, usize)> {
    let dir = work.join(format!("run-{delay_ms}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let module = fixture(case.fixture).display().to_string();
    let snap = work.join(format!("snap-{delay_ms}-0"));
    let snap_s = snap.display().to_string();
    let after = format!("{delay_ms}ms");
    let out = tern().run(&strs(&run_args(
        case,
        &module,
        &dir.display().to_string(),
        &["--checkpoint-after", &after, "--checkpoint-to", &snap_s],
    )));
    let mut stdout = out.stdout;
    let mut stderr = out.stderr;
    if !snap.exists() {
        // Ending before the checkpoint is allowed only as the uninterrupted run ended.
        assert_eq!(
            out.status.code(),
            reference.code,
            "{} ended at {delay_ms} ms without a checkpoint: {}",
            case.fixture,
            text(&stderr)
        );
        return None;
    }
    let notice = format!("checkpoint: {snap_s}\n");
    assert!(
        text(&stderr).ends_with(&notice),
        "stderr: {}",
        text(&stderr)
    );
    stderr.truncate(stderr.len() - notice.len());
    assert_eq!(out.status.code(), Some(0));
    let mut current = snap;
    let mut captures = 1;
    for (i, next_delay) in chain.iter().enumerate() {
        let next = work.join(format!("snap-{delay_ms}-{}", i + 1));
        let next_s = next.display().to_string();
        let after = format!("{next_delay}ms");
        let current_s = current.display().to_string();
        let mut args = vec![
            "resume",
            "--checkpoint-after",
            &after,
            "--checkpoint-to",
            &next_s,
        ];
        // Every other link of a chain writes compressed pages, which a resume copies in
        // rather than maps.
        if i % 2 == 0 {
            args.push("--compress");
        }
        args.push(&current_s);
        let out = tern().run(&args);
        stdout.extend_from_slice(&out.stdout);
        let mut err = out.stderr;
        if next.exists() {
            let notice = format!("checkpoint: {next_s}\n");
            assert!(text(&err).ends_with(&notice), "stderr: {}", text(&err));
            err.truncate(err.len() - notice.len());
            stderr.extend_from_slice(&err);
            current = next;
            captures += 1;
        } else {
            stderr.extend_from_slice(&err);
            return Some((ending(out.status.code(), stdout, stderr, &dir), captures));
        }
    }
    let out = tern().run(&["resume", &current.display().to_string()]);
    stdout.extend_from_slice(&out.stdout);
    stderr.extend_from_slice(&out.stderr);
    Some((ending(out.status.code(), stdout, stderr, &dir), captures))
}

fn ending(code: Option<i32>, stdout: Vec<u8>, stderr: Vec<u8>, dir: &Path) -> Ending {
    let e = Ending {
        code,
        stdout: Some(stdout),
        stderr: Some(stderr),
        files: None,
    };
    e.with_files_in(dir)
}

/// Checkpoint `case` at each of `percent` (of its measured uninterrupted run time), resume,
/// and compare with the uninterrupted run. Moments are relative so that the test means the
/// same on a machine three times faster or slower; `chain` re-checkpoints (in ms) after each.
fn check(case: Case<'_>, percent: &[u64], chain: &[u64]) {
    let work = tempfile::tempdir().expect("tempdir");
    // The first run fills the module cache; the second, timed, is the program alone (plus a
    // process start) and must produce the same result.
    let (reference, _) = uninterrupted(&case, work.path(), "reference");
    let (again, took) = uninterrupted(&case, work.path(), "reference-again");
    assert_ends_alike(
        &format!("{}: a second uninterrupted run", case.fixture),
        &again,
        &reference,
    );
    let run_ms = took.as_millis() as u64;
    let mut captured = 0;
    for &p in percent {
        let d = (run_ms * p / 100).max(1);
        if let Some((got, n)) = interrupted(&case, work.path(), d, chain, &reference) {
            captured += n;
            assert_ends_alike(
                &format!("{} after a checkpoint at {d} ms", case.fixture),
                &got,
                &reference,
            );
        }
    }
    // The program must really have been captured, most of the time, or nothing was tested.
    assert!(
        captured * 2 >= percent.len(),
        "{}: only {captured} of {} runs were captured (uninterrupted run: {run_ms} ms)",
        case.fixture,
        percent.len()
    );
}

#[test]
fn compute_loop_without_imports() {
    check(
        Case {
            fixture: "compute",
            args: &["150000000"],
            dir: None,
        },
        &[0, 5, 15, 30, 60],
        &[],
    );
}

#[test]
fn printer_continues_without_gap_or_repeat() {
    check(
        Case {
            fixture: "printer",
            args: &["3000"],
            dir: None,
        },
        &[1, 12, 30, 50, 75],
        &[],
    );
}

#[test]
fn files_with_open_descriptors() {
    check(
        Case {
            fixture: "files",
            args: &["/data", "30000"],
            dir: Some("/data"),
        },
        &[5, 20, 40, 70],
        &[],
    );
}

#[test]
fn deep_recursion() {
    check(
        Case {
            fixture: "recursion",
            args: &["2000", "600"],
            dir: None,
        },
        &[2, 15, 35, 60],
        &[],
    );
}

#[test]
fn chains_of_checkpoints() {
    check(
        Case {
            fixture: "printer",
            args: &["3000"],
            dir: None,
        },
        &[10, 35],
        &[30, 50, 70],
    );
}

#[test]
fn large_memory() {
    check(
        Case {
            fixture: "bigmem",
            args: &["256", "24"],
            dir: None,
        },
        &[25, 70],
        &[],
    );
}

#[test]
fn sigusr1_checkpoints_at_that_moment() {
    let work = tempfile::tempdir().expect("tempdir");
    let module = fixture("printer").display().to_string();
    let reference = tern().unmoved("printer", &["3000"]);
    let snap = work.path().join("usr1.snap");
    let snap_s = snap.display().to_string();
    let child = tern()
        .command()
        .args(["run", "--checkpoint-to", &snap_s, &module, "--", "3000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tern");
    // Signal once the program is surely running (its first progress line on stderr, which is
    // unbuffered), whatever the machine's speed: a fixed sleep could come after the end.
    let mut child = child;
    let mut err = child.stderr.take().expect("stderr");
    let mut early = Vec::new();
    let mut byte = [0u8; 1];
    while !text(&early).contains("progress 0\n") {
        use std::io::Read;
        let n = err.read(&mut byte).expect("read stderr");
        assert!(n == 1, "tern ended before printing: {}", text(&early));
        early.push(byte[0]);
    }
    let kill = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let rest = std::thread::spawn(move || {
        use std::io::Read;
        let mut rest = Vec::new();
        err.read_to_end(&mut rest).expect("read stderr");
        rest
    });
    let first = child.wait_with_output().expect("wait");
    early.extend(rest.join().expect("stderr reader"));
    let first_stderr = text(&early);
    assert_eq!(first.status.code(), Some(0), "{first_stderr}");
    assert!(first_stderr.ends_with(&format!("checkpoint: {snap_s}\n")));
    let second = tern().run(&["resume", &snap_s]);
    let mut stdout = first.stdout;
    stdout.extend_from_slice(&second.stdout);
    assert!(
        !second.stdout.is_empty(),
        "the signal came after the program ended"
    );
    let notice = format!("checkpoint: {snap_s}\n");
    let stderr = format!(
        "{}{}",
        &first_stderr[..first_stderr.len() - notice.len()],
        text(&second.stderr)
    );
    let got = Ending {
        code: second.status.code(),
        stdout: Some(stdout),
        stderr: Some(stderr.into_bytes()),
        files: None,
    };
    assert_ends_alike("printer checkpointed by SIGUSR1", &got, &reference);
}
