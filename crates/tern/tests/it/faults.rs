//! Fault injection at every step of the migration protocol: the connection cut, the source's
//! agent killed (-9), the destination's agent killed (-9). Each case moves a fresh `ticker`
//! workload between two real agents with one fault armed at one step (see tern-runtime's
//! `fault.rs`), then checks exactly-once: the workload ends up where the migration's outcome
//! says (the destination if and only if it committed), one instance process runs it once
//! things settle, and its output and exit code equal an unmoved run's — no tick lost,
//! repeated or rolled back, memory intact.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tern_testkit::{signal_pid, wait_until, Migrated};

use crate::harness::{once, other, tern, two_regions, Cluster, Ending};

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

/// The processes running instances of this cluster (`tern run` or `tern receive` with a
/// control socket below its directory).
fn instance_processes(c: &Cluster) -> usize {
    c.instance_pids("").len()
}

/// The file an instance held at its fault's step writes, and waits for the test to remove.
fn held(armed: &std::path::Path) -> PathBuf {
    let mut held = armed.to_path_buf().into_os_string();
    held.push(".held");
    PathBuf::from(held)
}

/// One migration with one fault; checks exactly-once and the output.
fn case(c: &mut Cluster, fault: Fault, side: &str, step: &str, want: &Ending) {
    let what = format!("{fault:?} at the {side}'s {step}");
    let name = format!("t-{}-{side}-{step}", format!("{fault:?}").to_lowercase());
    c.deploy_running(&once(&name, "ticker", &ARGS));
    let before = c.workload(&name);
    let from = before["node"].as_str().expect("node").to_string();
    let to = other(&from);
    let faulty = if side == "source" { from.as_str() } else { to };
    let armed = c.fault_file(faulty);
    let action = if fault == Fault::Cut { "cut" } else { "hold" };
    std::fs::write(&armed, format!("{side}:{step}:{action}")).expect("arm");

    let migrating = c
        .command(&["migrate", &name, "--to", to, "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    if fault != Fault::Cut {
        let held = held(&armed);
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(5),
            &format!("{what}: the hold"),
            || held.exists(),
            || c.recent(),
        );
        c.kill_agent(faulty);
        if fault == Fault::Crash {
            let pids = c.instance_pids(faulty);
            assert_eq!(pids.len(), 1, "{what}: the held instance");
            for pid in pids {
                signal_pid(pid, "-KILL");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        c.restart_agent(faulty);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::remove_file(&held).expect("release");
    }
    let out = Migrated::of(&migrating.wait_with_output().expect("wait"));
    assert!(!armed.exists(), "{what}: the fault never fired");
    c.wait(
        |c| !c.migration_of(&name)["outcome"].is_null(),
        &format!("{what}: the migration's outcome"),
    );
    let m = c.migration_of(&name);
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
        out.code,
        Some(if committed { 0 } else { 1 }),
        "{what}: tern migrate: {} {}",
        out.report,
        out.stderr
    );
    if !committed {
        assert!(
            m["failed_step"].is_string() && m["reason"].is_string(),
            "{what}: {m}"
        );
    }
    // Where the outcome says, and in one process only.
    let settled = RefCell::new(serde_json::Value::Null);
    c.wait_for(
        Duration::from_secs(20),
        &format!(
            "{what}: settled where the outcome ({}) says, in one process",
            m["outcome"]
        ),
        |c| {
            let w = c.workload(&name);
            let one = w["status"] != "running" || instance_processes(c) == 1;
            let placed = w["node"] == if committed { to } else { from.as_str() };
            *settled.borrow_mut() = w;
            one && placed
        },
    );
    let w = settled.into_inner();
    if !committed && w["status"] == "running" {
        assert_eq!(w["instance"], before["instance"], "{what}: {w}");
    }
    c.assert_ends_like(&name, want);
    assert_eq!(
        instance_processes(c),
        0,
        "{what}: a process outlived its workload"
    );
}

fn run_all(fault: Fault, sides: &[&str], only: Option<&[&str]>) {
    let mut c = two_regions().start();
    let want = tern().unmoved("ticker", &ARGS);
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
    let c = two_regions()
        .agent_env("TERN_MIGRATION_TIMEOUT_MS", "1500")
        .start();
    let want = tern().unmoved("ticker", &ARGS);
    c.deploy_running(&once("quiet", "ticker", &ARGS));
    let before = c.workload("quiet");
    let from = before["node"].as_str().expect("node").to_string();
    let to = other(&from);
    let armed = c.fault_file(to);
    std::fs::write(&armed, "destination:pre-copy:hold").expect("arm");
    let Migrated {
        code,
        report: m,
        stderr,
    } = c.migrate("quiet", to, &[]);
    assert_eq!(code, Some(1), "{m} {stderr}");
    assert_eq!(m["outcome"], "failed", "{m}");
    assert!(
        m["reason"].as_str().unwrap_or("").contains("fell silent"),
        "{m}"
    );
    let w = c.workload("quiet");
    assert_eq!(w["node"], from.as_str(), "{w}");
    assert_eq!(w["instance"], before["instance"], "{w}");
    // The destination wakes up to a closed connection and ends; one instance is left.
    std::fs::remove_file(held(&armed)).expect("release");
    c.wait_for(
        Duration::from_secs(20),
        "the woken destination to end",
        |c| instance_processes(c) <= 1,
    );
    c.assert_ends_like("quiet", &want);
}
