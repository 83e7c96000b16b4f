//! Fault injection at every step of the migration protocol: the connection cut, the source's
//! agent killed (-9), the destination's agent killed (-9). Each case moves a fresh `ticker`
//! workload between two real agents with one fault armed at one step (see tern-runtime's
//! `fault.rs`), then checks exactly-once: the workload ends up where the migration's outcome
//! says (the destination if and only if it committed), one instance process runs it once
//! things settle, and its output and exit code equal an unmoved run's — no tick lost,
//! repeated or rolled back, memory intact.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fleet::{cluster, deploy_running, fixture_profile, other, stdout_of, unmoved, Cluster};
use crate::harness::text;

const ARGS: [&str; 3] = ["120", "20", "8"];

const SOURCE_STEPS: [&str; 7] = [
    "prepare",
    "volumes",
    "pre-copy",
    "stop-and-copy",
    "resume",
    "commit",
    "committed",
];
const DESTINATION_STEPS: [&str; 4] = ["prepare", "pre-copy", "resume", "verdict"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The migration connection is closed at the step, by the faulting side.
    Cut,
    /// The agent of the faulting side is killed -9 while its instance is held at the step, and
    /// started again; then the instance goes on.
    KillAgent,
    /// The destination's node crashes while its instance is held at the step: agent and
    /// instance killed -9, the agent started again (with nothing to adopt).
    Crash,
}

fn labels(node: &str) -> &'static str {
    if node == "alpha" {
        "region=eu-west"
    } else {
        "region=us-east"
    }
}

/// The processes running instances of this cluster (`tern run` or `tern receive` with a
/// control socket below its directory).
fn instance_processes(c: &Cluster) -> usize {
    instance_pids(c, "").len()
}

/// The pids of those whose control socket is below `<cluster>/<under>`.
pub(crate) fn instance_pids(c: &Cluster, under: &str) -> Vec<u32> {
    let dir = c.dir.path().join(under).to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, raw))
        })
        .filter(|(_, raw)| {
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a == "run" || a == "receive")
                && args
                    .windows(2)
                    .any(|w| w[0] == "--control" && w[1].starts_with(&dir))
        })
        .map(|(pid, _)| pid)
        .collect()
}

fn migration_of(c: &Cluster, workload: &str) -> serde_json::Value {
    c.json(&["migrations", "-o", "json"])
        .as_array()
        .and_then(|a| a.iter().find(|m| m["workload"] == workload).cloned())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for_file(path: &Path, present: bool, what: &str) {
    let started = Instant::now();
    while path.exists() != present {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One migration with one fault; checks exactly-once and the output.
fn case(c: &mut Cluster, fault: Fault, side: &str, step: &str, want: &(String, Option<i32>)) {
    let what = format!("{fault:?} at the {side}'s {step}");
    let name = format!("t-{}-{side}-{step}", format!("{fault:?}").to_lowercase());
    let work = c.dir.path().join("profiles");
    let p = fixture_profile(&work, &name, "ticker", &ARGS, "");
    deploy_running(c, &p, &name);
    let before = c.workload(&name);
    let from = before["node"].as_str().expect("node").to_string();
    let to = other(&from);
    let faulty = if side == "source" { from.as_str() } else { to };
    let armed = c.fault_file(faulty);
    let action = if fault == Fault::Cut { "cut" } else { "hold" };
    std::fs::write(&armed, format!("{side}:{step}:{action}")).expect("arm");

    let migrating = crate::fleet::tern_cmd()
        .args(["migrate", &name, "--to", to, "-o", "json"])
        .args(["--controller", &c.url, "--token", &c.token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    if fault != Fault::Cut {
        let mut held = armed.clone().into_os_string();
        held.push(".held");
        let held = std::path::PathBuf::from(held);
        wait_for_file(&held, true, &format!("{what}: the hold"));
        c.kill_agent(faulty);
        if fault == Fault::Crash {
            let pids = instance_pids(c, faulty);
            assert_eq!(pids.len(), 1, "{what}: the held instance");
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        c.start_agent(faulty, labels(faulty));
        std::thread::sleep(Duration::from_millis(200));
        std::fs::remove_file(&held).expect("release");
    }
    let out = migrating.wait_with_output().expect("wait");
    assert!(!armed.exists(), "{what}: the fault never fired");
    c.wait(
        |c| !migration_of(c, &name)["outcome"].is_null(),
        &format!("{what}: the migration's outcome"),
    );
    let m = migration_of(c, &name);
    let committed = m["outcome"] == "committed";
    let expected = match (fault, side, step) {
        // Once the destination has said ready, the controller's record alone decides: the
        // source still asks for the commit, and the destination, cut off, asks the controller.
        (_, "source", "committed")
        | (Fault::Cut, "source", "commit")
        | (Fault::Cut, "destination", "verdict") => Some(true),
        // Before it, a lost connection or destination rolls back.
        (Fault::Cut | Fault::Crash, _, _) => Some(false),
        // A restarted agent may see the migration through or end it; either is fine so long
        // as the workload is where the outcome says.
        (Fault::KillAgent, _, _) => None,
    };
    if let Some(e) = expected {
        assert_eq!(committed, e, "{what}: {m}");
    }
    assert_eq!(
        out.status.code(),
        Some(if committed { 0 } else { 1 }),
        "{what}: tern migrate: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    if !committed {
        assert!(
            m["failed_step"].is_string() && m["reason"].is_string(),
            "{what}: {m}"
        );
    }
    // Where the outcome says, and in one process only.
    let started = Instant::now();
    loop {
        let w = c.workload(&name);
        let settled = w["status"] != "running" || instance_processes(c) == 1;
        let placed = w["node"] == if committed { to } else { from.as_str() };
        if settled && placed {
            if !committed && w["status"] == "running" {
                assert_eq!(w["instance"], before["instance"], "{what}: {w}");
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: not settled where the outcome ({}) says: {w}, {} instance processes",
            m["outcome"],
            instance_processes(c)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait(
        |c| c.workload(&name)["status"] != "running",
        &format!("{what}: the workload to end"),
    );
    c.wait(
        |c| stdout_of(c, &name).len() >= want.0.len(),
        &format!("{what}: all output"),
    );
    assert_eq!(stdout_of(c, &name), want.0, "{what}: output");
    assert_eq!(
        c.workload(&name)["exit_code"],
        want.1.expect("exit code"),
        "{what}"
    );
    assert_eq!(
        instance_processes(c),
        0,
        "{what}: a process outlived its workload"
    );
}

fn run_all(fault: Fault, sides: &[&str], only: Option<&[&str]>) {
    let mut c = cluster()
        .node("alpha", labels("alpha"))
        .node("beta", labels("beta"))
        .start();
    let want = unmoved("ticker", &ARGS);
    for side in sides {
        let steps: &[&str] = if *side == "source" {
            &SOURCE_STEPS
        } else {
            &DESTINATION_STEPS
        };
        for step in steps.iter().filter(|s| only.is_none_or(|o| o.contains(s))) {
            case(&mut c, fault, side, step, &want);
        }
    }
}

#[test]
fn a_connection_cut_at_any_step_leaves_the_workload_in_exactly_one_place() {
    run_all(Fault::Cut, &["source", "destination"], None);
}

#[test]
fn a_source_agent_killed_at_any_step_leaves_the_workload_in_exactly_one_place() {
    run_all(Fault::KillAgent, &["source"], None);
}

#[test]
fn a_destination_agent_killed_at_any_step_leaves_the_workload_in_exactly_one_place() {
    run_all(Fault::KillAgent, &["destination"], None);
}

/// Once the destination has said ready, the commit may already be recorded: a crash of the
/// destination after that is a crash of the workload (its restart policy applies), not
/// something a migration can undo. Before it, the source goes on.
#[test]
fn a_destination_node_crashing_before_it_is_ready_leaves_the_workload_at_the_source() {
    run_all(
        Fault::Crash,
        &["destination"],
        Some(&["prepare", "pre-copy", "resume"]),
    );
}

/// A destination that falls silent without closing (as behind a network cut that drops
/// packets) holds nothing forever: the source gives up after the migration timeout and goes
/// on; the destination, once it wakes, finds the connection gone and ends.
#[test]
fn a_silent_destination_times_out_and_the_workload_goes_on_at_the_source() {
    let c = cluster()
        .node("alpha", labels("alpha"))
        .node("beta", labels("beta"))
        .agent_env("TERN_MIGRATION_TIMEOUT_MS", "1500")
        .start();
    let want = unmoved("ticker", &ARGS);
    let work = c.dir.path().join("profiles");
    let p = fixture_profile(&work, "quiet", "ticker", &ARGS, "");
    deploy_running(&c, &p, "quiet");
    let before = c.workload("quiet");
    let from = before["node"].as_str().expect("node").to_string();
    let to = other(&from);
    let armed = c.fault_file(to);
    std::fs::write(&armed, "destination:pre-copy:hold").expect("arm");
    let out = c.tern(&["migrate", "quiet", "--to", to, "-o", "json"]);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{m} {}", text(&out.stderr));
    assert_eq!(m["outcome"], "failed", "{m}");
    assert!(
        m["reason"].as_str().unwrap_or("").contains("fell silent"),
        "{m}"
    );
    let w = c.workload("quiet");
    assert_eq!(w["node"], from.as_str(), "{w}");
    assert_eq!(w["instance"], before["instance"], "{w}");
    // The destination wakes up to a closed connection and ends; one instance is left.
    let mut held = armed.into_os_string();
    held.push(".held");
    std::fs::remove_file(std::path::PathBuf::from(held)).expect("release");
    let started = Instant::now();
    while instance_processes(&c) > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the woken destination did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait(
        |c| c.workload("quiet")["status"] != "running",
        "the workload to end",
    );
    c.wait(
        |c| stdout_of(c, "quiet").len() >= want.0.len(),
        "all output",
    );
    assert_eq!(stdout_of(&c, "quiet"), want.0);
    assert_eq!(c.workload("quiet")["exit_code"], want.1.expect("code"));
}
