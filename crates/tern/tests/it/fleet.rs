//! A real controller and real agents (separate processes on 127.0.0.1), driven through the
//! `tern` CLI as users drive them.

use std::net::TcpStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tern_testkit::{files_in, http, signal_pid, wait_until, Migrated};

use crate::harness::{
    assert_ends_alike, cluster, counter, deploy_service, endpoint, once, other, tern, text,
    three_regions, two_regions, Cluster, Ending, Profile,
};

/// `tern` said `needle` on its standard error.
fn says(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(err.contains(needle), "{err}");
}

/// The printer fixture printing `lines` lines (then exiting with code 3), restarted per the
/// default policy.
fn printer(name: &str, lines: u32) -> Profile {
    Profile::new(name, "printer").args(&[&lines.to_string()])
}

#[test]
fn deploy_ps_logs_stop_rm() {
    let c = cluster()
        .node("alpha", "region=eu-west,cost=0.1")
        .node("beta", "region=us-east,cost=0.2")
        .start();
    let short = printer("short", 40).restart_never();
    assert!(c.deploy(&short).contains("short"));
    c.wait(
        |c| c.workload("short")["status"] == "failed",
        "the program to end",
    );
    let w = c.workload("short");
    assert_eq!(w["exit_code"], 3, "{w}");
    // The program's whole output, in order, through the controller.
    c.wait(
        |c| c.ok(&["logs", "short"]).lines().count() == 40,
        "all 40 lines in the logs",
    );
    let logs = c.ok(&["logs", "short"]);
    assert!(logs.starts_with("line 0 "), "{logs}");
    assert!(logs.lines().last().expect("line").starts_with("line 39 "));
    // Same profile again: nothing changes.
    assert!(c.deploy(&short).contains("unchanged"));
    assert_eq!(c.workload("short")["generation"], 1);

    // A long one: running on one of the nodes, listed with its node.
    c.deploy(&printer("long", 10_000_000));
    c.wait_status("long", "running");
    let table = c.ok(&["ps"]);
    assert!(table.lines().next().expect("header").starts_with("NAME"));
    assert!(table.lines().all(|l| l.len() <= 80), "{table}");
    let node = c.node_of("long").expect("node");
    assert!(node == "alpha" || node == "beta");
    // A changed profile replaces the instance.
    c.deploy(&printer("long", 10_000_001));
    c.wait(
        |c| c.workload("long")["status"] == "running" && c.workload("long")["generation"] == 2,
        "the replacement running",
    );
    c.ok(&["stop", "long"]);
    assert_eq!(c.workload("long")["status"], "stopped");
    // The node stops the instance: it no longer reports it.
    c.wait(
        |c| {
            c.json(&["inspect", &node])["instances"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        },
        "the instance gone from its node",
    );
    c.ok(&["rm", "long"]);
    assert!(c.workload("long").is_null());
    let out = c.tern(&["logs", "long"]);
    assert_ne!(out.status.code(), Some(0));
    says(&out, "no workload named \"long\"");
}

#[test]
fn constraints_and_pending_reasons() {
    let c = two_regions().start();
    let require = |region: &str| format!("[placement]\nrequire = {{ region = [\"{region}\"] }}\n");
    c.deploy_running(&printer("pinned", 10_000_000).toml(&require("us-east")));
    assert_eq!(c.workload("pinned")["node"], "beta");

    c.deploy(&printer("nowhere", 10).toml(&require("mars")));
    let w = c.workload("nowhere");
    assert_eq!(w["status"], "pending");
    assert_eq!(w["reason"], "no node is up with region=mars");
    assert!(c.ok(&["ps"]).contains("no node is up with region=mars"));

    c.deploy(&printer("huge", 10).toml("[limits]\nmemory = \"100000GiB\"\n"));
    let reason = c.workload("huge")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.starts_with("no node has 100000 GiB"), "{reason}");
}

#[test]
fn a_cpu_limit_holds_a_busy_program_to_its_share() {
    // A node name no other test uses: its cgroups are the machine's, not the test's.
    let c = cluster().node("cpu-limited", "region=eu-west").start();
    c.deploy(
        &Profile::new("spin", "compute")
            .args(&["100000000000"])
            .toml("[limits]\ncpu = 0.25\n"),
    );
    let node = c.json(&["inspect", "cpu-limited"]);
    if node["capabilities"]["cpu_limit"] != true {
        // Without a writable cgroup cpu controller the limit cannot be kept, and the workload
        // waits with that reason instead of running unlimited.
        c.wait(
            |c| {
                c.workload("spin")["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("can enforce a CPU limit"))
            },
            "the reason the workload waits",
        );
        assert_eq!(c.workload("spin")["status"], "pending");
        return;
    }
    c.wait_status("spin", "running");
    let cpu_ms = |c: &Cluster| {
        c.json(&["inspect", "cpu-limited"])["instances"]
            .as_array()
            .and_then(|a| a.first().cloned())
            .and_then(|i| i["cpu_ms"].as_u64())
            .unwrap_or(0)
    };
    // Let the program get going, then measure its share over a few seconds.
    std::thread::sleep(Duration::from_secs(1));
    let (t0, c0) = (Instant::now(), cpu_ms(&c));
    std::thread::sleep(Duration::from_secs(3));
    let (t1, c1) = (Instant::now(), cpu_ms(&c));
    let share = (c1 - c0) as f64 / (t1 - t0).as_millis() as f64;
    // Unlimited, a spinning program takes a whole CPU; the heartbeat's sampling adds jitter.
    assert!(
        share > 0.05 && share < 0.4,
        "CPU share {share:.2} for a limit of 0.25"
    );
}

#[test]
fn a_lost_node_s_workloads_start_elsewhere() {
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=eu-west")
        .start();
    c.deploy_running(&printer("svc", 10_000_000));
    let first = c.node_of("svc").expect("node");
    c.kill_agent(&first);
    c.wait(
        |c| {
            let w = c.workload("svc");
            w["status"] == "running" && w["node"] != first.as_str()
        },
        "svc running on the other node",
    );
    assert_eq!(c.node(&first)["status"], "down");
}

#[test]
fn a_restarted_controller_has_lost_nothing() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    c.deploy_running(&printer("svc", 10_000_000));
    let before = c.workload("svc");
    c.kill_controller();
    std::thread::sleep(Duration::from_millis(1500));
    c.start_controller();
    // Same token, same workload, same instance, still running: the agent kept it going and
    // reconnects.
    let after = c.workload("svc");
    assert_eq!(after["instance"], before["instance"]);
    assert_eq!(after["status"], "running");
    std::thread::sleep(Duration::from_millis(2500));
    let after = c.workload("svc");
    assert_eq!(after["instance"], before["instance"], "{after}");
    assert_eq!(after["status"], "running");
    assert_eq!(c.nodes_up(), 1);
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .max_blob_bytes(1 << 20)
        .start();
    let refused = |args: &[&str], code: i32, needle: &str| {
        let out = c.tern(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        err
    };
    // A malformed profile: file, line and field.
    let p = c.write(&printer("bad", 10).toml("[limits]\nmemory = \"lots\"\n"));
    let err = refused(&["deploy", &p.display().to_string()], 1, "tern.toml:5:");
    assert!(err.contains("limits.memory"), "{err}");
    // A missing module.
    let work = tempfile::tempdir().expect("tempdir");
    let d = work.path().join("nomodule");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(
        d.join("tern.toml"),
        "name = \"x\"\nmodule = \"missing.wasm\"\n",
    )
    .expect("write");
    let p = d.join("tern.toml").display().to_string();
    refused(&["deploy", &p], 1, "missing.wasm");
    // An oversized upload.
    std::fs::write(d.join("missing.wasm"), vec![0u8; 2 << 20]).expect("write");
    refused(&["deploy", &p], 1, "413");
    // A wrong token.
    let out = tern().run(&["ps", "--controller", c.url(), "--token", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    says(&out, "401");
    // An unknown workload.
    let out = c.tern(&["stop", "ghost"]);
    says(&out, "no workload named \"ghost\"");
    // Nothing was created by any of it.
    assert_eq!(c.json(&["ps", "-o", "json"]), serde_json::json!([]));
    // A second agent with a name that is taken and up is refused.
    let elsewhere = c.dir().join("another-machine");
    let out = tern()
        .command()
        .args(["agent", "--controller", c.url(), "--token", c.token()])
        .args(["--name", "alpha", "--labels", "region=us-east", "--data"])
        .arg(&elsewhere)
        .output()
        .expect("agent runs");
    assert_eq!(out.status.code(), Some(1));
    says(&out, "already registered");
    assert_eq!(
        c.json(&["inspect", "alpha"])["labels"]["region"],
        "eu-west",
        "the first registration stands"
    );
    // A second agent on the same data directory is refused before it registers.
    let out = c
        .agent_command("alpha", "region=us-east")
        .output()
        .expect("agent runs");
    assert_eq!(out.status.code(), Some(1));
    says(&out, "another agent uses");
}

#[test]
fn crashed_instances_restart_per_policy() {
    let c = cluster().node("alpha", "region=eu-west").start();
    // The printer exits with code 3: a failure, so on-failure restarts it, with backoff.
    c.deploy(&printer("flaky", 5).toml(
        "[restart]\npolicy = \"on-failure\"\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n",
    ));
    c.wait(
        |c| c.workload("flaky")["generation"].as_u64().unwrap_or(0) >= 3,
        "a third start",
    );
    let w = c.workload("flaky");
    assert!(w["restarts"].as_u64().unwrap_or(0) >= 2, "{w}");
    let history: Vec<String> = w["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["what"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        history.iter().any(|h| h == "exited on alpha with code 3"),
        "{history:?}"
    );
    // never: it stays down.
    c.deploy(&printer("once", 5).restart_never());
    c.wait_status("once", "failed");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.workload("once")["restarts"], 0);
    assert_eq!(c.workload("once")["generation"], 1);
}

#[test]
fn files_are_shipped_and_volumes_persist() {
    let c = cluster().node("alpha", "region=eu-west").start();
    // The fixture works in the directory it is given and lists it at the end: the shipped
    // file is there.
    let shipped = Profile::new("shipped", "files")
        .args(&["/etc", "5"])
        .top("files = [{ host = \"notes.txt\", guest = \"/etc/notes.txt\" }]\n")
        .restart_never();
    let p = c.write(&shipped);
    std::fs::write(p.with_file_name("notes.txt"), "shipped\n").expect("write");
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait_status("shipped", "exited");
    c.wait(
        |c| c.ok(&["logs", "shipped"]).contains("done "),
        "its output",
    );
    assert!(c.ok(&["logs", "shipped"]).contains("entry notes.txt"));

    // A volume outlives the instance: a second run appends to the first one's log.
    let vol = |steps: &str| {
        Profile::new("vol", "files")
            .args(&["/data", steps])
            .top("volumes = [{ name = \"data\", guest = \"/data\" }]\n")
            .restart_never()
    };
    c.deploy(&vol("20"));
    c.wait_status("vol", "exited");
    c.deploy(&vol("21"));
    c.wait(
        |c| c.workload("vol")["status"] == "exited" && c.workload("vol")["generation"] == 2,
        "second run ended",
    );
    let log = std::fs::read_to_string(c.node_dir("alpha").join("volumes/vol/data/log.txt"))
        .expect("volume log");
    assert_eq!(log.lines().count(), 41, "{log}");
}

#[test]
fn tern_up_runs_a_cluster_that_ctrl_c_stops() {
    let home = tempfile::tempdir().expect("home");
    let delays = home.path().join("delays.toml");
    std::fs::write(
        &delays,
        "[[link]]\nbetween = [\"eu-west\", \"us-east\"]\ndelay = \"40ms\"\n",
    )
    .expect("write");
    let t = tern().with_home(home.path());
    let mut up = t.up(&["--nodes", "2", "--delays", &delays.display().to_string()]);
    let context = home.path().join("context.json");
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_slice(&t.run(args).stdout).unwrap_or_default()
    };
    let poll = Duration::from_millis(100);
    // Every other command finds the cluster through the context file.
    wait_until(
        Duration::from_secs(30),
        poll,
        "a cluster to come up",
        || {
            context.exists()
                && json(&["nodes", "-o", "json"])
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
        },
        String::new,
    );
    let nodes = json(&["nodes", "-o", "json"]);
    let mut regions: Vec<&str> = nodes
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["labels"]["region"].as_str())
        .collect();
    assert_eq!(regions.len(), 2);
    assert_ne!(regions[0], regions[1], "different regions");
    regions.sort();
    // One gateway per region.
    let gateway_regions = || {
        let gws = json(&["gateways", "-o", "json"]);
        let mut got: Vec<String> = gws
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g["region"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        (got, gws)
    };
    wait_until(
        Duration::from_secs(20),
        poll,
        &format!("gateways for regions {regions:?}"),
        || gateway_regions().0 == regions,
        || format!(": {}", gateway_regions().1),
    );
    // The agents' probes see the delay table's geography.
    let rtt = || {
        let net = json(&["network", "-o", "json"]);
        let rtt = net["regions"]["links"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["a"] != x["b"]))
            .and_then(|l| l["rtt_ms"].as_f64());
        (rtt, net)
    };
    let mut seen = (None, serde_json::Value::Null);
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        "a link measured",
        || {
            seen = rtt();
            seen.0.is_some_and(|r| r >= 40.0)
        },
        || format!(": {}", rtt().1),
    );
    let (measured, net) = seen;
    assert!(measured < Some(80.0), "{net}");
    let status = up.interrupt();
    assert_eq!(status.code(), Some(0));
    assert!(!context.exists(), "the context is removed with the cluster");
    let out = t.run(&["ps"]);
    assert_ne!(out.status.code(), Some(0));
    says(&out, "tern up");
}

#[test]
fn the_api_is_described_and_guarded() {
    let c = cluster().start();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{}{path}", c.url()));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().expect("request")
    };
    assert_eq!(get("/openapi.json", None).status(), 401);
    assert_eq!(get("/v1/workloads", Some("wrong")).status(), 401);
    let doc: serde_json::Value = get("/openapi.json", Some(c.token())).json().expect("json");
    for path in [
        "/v1/workloads",
        "/v1/nodes/{name}/heartbeat",
        "/v1/blobs/{digest}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let schema: serde_json::Value = get("/v1/profile-schema", Some(c.token()))
        .json()
        .expect("json");
    for field in [
        "name",
        "module",
        "limits",
        "placement",
        "restart",
        "volumes",
        "files",
    ] {
        assert!(
            schema["properties"][field].is_object(),
            "schema lacks {field}"
        );
    }
    // A blob whose bytes do not match its name is refused and not stored.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = http
        .put(format!("{}/v1/blobs/{wrong}", c.url()))
        .bearer_auth(c.token())
        .body(b"hello".to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        get(&format!("/v1/blobs/{wrong}"), Some(c.token())).status(),
        404
    );
    // Unauthenticated writes change nothing either.
    let r = http
        .post(format!("{}/v1/workloads/x/stop", c.url()))
        .send()
        .expect("post");
    assert_eq!(r.status(), 401);
}

#[test]
fn migrate_moves_a_running_workload_and_its_output_stays_one_stream() {
    let c = three_regions().start();
    let args = ["9000"];
    c.deploy_running(&once("talk", "printer", &args));
    let mut node = c.node_of("talk").expect("node");
    let mut moves = 0;
    for to in ["alpha", "beta", "gamma", "alpha", "beta", "gamma"] {
        if to == node {
            continue;
        }
        let Migrated {
            code,
            report: m,
            stderr,
        } = c.migrate("talk", to, &[]);
        if m["outcome"] != "committed" && c.workload("talk")["status"] != "running" {
            break; // the program ended first
        }
        assert_eq!(code, Some(0), "{m} {stderr}");
        for field in [
            "workload", "from", "to", "outcome", "pause_ms", "total_ms", "bytes", "rounds",
        ] {
            assert!(!m[field].is_null(), "report lacks {field}: {m}");
        }
        assert_eq!(m["from"], node.as_str());
        assert_eq!(m["to"], to);
        assert!(m["rounds"].as_array().is_some_and(|r| r.len() >= 2), "{m}");
        let w = c.workload("talk");
        assert_eq!(w["node"], to, "{w}");
        node = to.to_string();
        moves += 1;
    }
    assert!(moves >= 3, "only {moves} moves before the program ended");
    c.wait(|c| c.workload("talk")["status"] == "failed", "talk to end");
    // Every line exactly once, in order, across all the nodes it ran on.
    c.assert_ends_like("talk", &tern().unmoved("printer", &args));
    let committed = c
        .migrations()
        .iter()
        .filter(|m| m["outcome"] == "committed")
        .count();
    assert_eq!(committed, moves);
}

#[test]
fn a_workload_ping_pongs_twenty_times_and_computes_the_same_result() {
    let c = three_regions().start();
    let args = ["1500000000"];
    c.deploy_running(&once("pong", "compute", &args));
    let nodes = ["alpha", "beta", "gamma"];
    let mut moves = 0;
    for i in 0..60 {
        if moves == 20 {
            break;
        }
        let here = c.node_of("pong").unwrap_or_default();
        let others: Vec<&str> = nodes.iter().copied().filter(|n| *n != here).collect();
        let to = others[(i / 2) % others.len()];
        let out = c.tern(&["migrate", "pong", "--to", to]);
        if out.status.code() == Some(0) {
            moves += 1;
        } else {
            assert_eq!(
                c.workload("pong")["status"],
                "running",
                "{}",
                text(&out.stdout)
            );
        }
    }
    assert_eq!(moves, 20, "20 moves before the program ended");
    c.assert_ends_like("pong", &tern().unmoved("compute", &args));
}

#[test]
fn a_migration_that_cannot_happen_is_refused_and_changes_nothing() {
    let c = two_regions().start();
    c.deploy_running(
        &once("pinned", "compute", &["100000000000"])
            .toml("[placement]\nrequire = { region = [\"eu-west\"] }\n"),
    );
    let before = c.workload("pinned");
    for (args, why) in [
        (vec!["migrate", "pinned", "--to", "beta"], "region=eu-west"),
        (
            vec!["migrate", "pinned", "--to", "alpha"],
            "already runs on alpha",
        ),
        (vec!["migrate", "pinned", "--to", "mars"], "no node named"),
        (
            vec!["migrate", "ghost", "--to", "beta"],
            "no workload named",
        ),
    ] {
        let out = c.tern(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(why),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let after = c.workload("pinned");
    assert_eq!(after["instance"], before["instance"]);
    assert_eq!(after["node"], "alpha");
    assert_eq!(after["status"], "running");
}

/// Wait until the first migration of `workload` has moved bytes.
fn wait_for_transfer(c: &Cluster, workload: &str) {
    c.wait(
        |c| c.migration_of(workload)["bytes"].as_u64().unwrap_or(0) > 0,
        "the transfer to start",
    );
}

/// Start moving `workload` to the other node at 60 MiB/s, without waiting, and wait until the
/// bytes flow; where it was and where it goes.
fn start_slow_migration(c: &Cluster, workload: &str) -> (String, &'static str) {
    let from = c.node_of(workload).expect("node");
    let to = other(&from);
    let out = c.tern(&[
        "migrate",
        workload,
        "--to",
        to,
        "--bandwidth",
        "60MiB",
        "--no-wait",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for_transfer(c, workload);
    (from, to)
}

#[test]
fn a_destination_lost_mid_transfer_leaves_the_workload_running_at_the_source() {
    let mut c = two_regions().start();
    let args = ["128", "300"];
    c.deploy_running(&once("heavy", "bigmem", &args));
    let instance = c.workload("heavy")["instance"].clone();
    let from = c.node_of("heavy").expect("node");
    let to = other(&from);
    // Slow enough that the transfer is under way when the destination dies.
    let migrating = c
        .command(&["migrate", "heavy", "--to", to, "--bandwidth", "100MiB"])
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tern runs");
    wait_for_transfer(&c, "heavy");
    c.kill_agent(to);
    let m = Migrated::of(&migrating.wait_with_output().expect("wait"));
    let r = &m.report;
    assert_eq!(m.code, Some(1), "{r}");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(
        r["failed_step"].is_string() && r["reason"].is_string(),
        "{r}"
    );
    // Still the same instance on the source, and it finishes as if nothing had happened.
    let w = c.workload("heavy");
    assert_eq!(w["node"], from.as_str(), "{w}");
    assert_eq!(w["instance"], instance);
    c.assert_ends_like("heavy", &tern().unmoved("bigmem", &args));
}

#[test]
fn clone_forks_a_running_workload() {
    let c = two_regions().start();
    let args = ["1000000000"];
    c.deploy_running(&once("orig", "compute", &args));
    let from = c.node_of("orig").expect("node");
    let to = other(&from);
    let out = c.tern(&["clone", "orig", "--to", to, "--name", "copy", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(c.workload("copy")["node"], to);
    assert_eq!(c.workload("orig")["node"], from.as_str());
    // Both continue from the same state to the same result.
    let want = tern().unmoved("compute", &args);
    for w in ["orig", "copy"] {
        c.assert_ends_like(w, &want);
    }
}

#[test]
fn drain_moves_every_workload_off_within_the_limits_and_undrain_reverses_it() {
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .controller_args(&["--max-migrations-per-node=1"])
        .start();
    let names = ["w1", "w2", "w3"];
    for n in names {
        c.deploy(&once(n, "compute", &["100000000000"]));
    }
    c.wait(
        |c| names.iter().all(|n| c.workload(n)["status"] == "running"),
        "all running on alpha",
    );
    c.add_node("beta", "region=us-east");
    c.add_node("gamma", "region=ap-south");
    c.wait(|c| c.nodes_up() == 3, "three nodes");
    let out = c.ok(&["drain", "alpha"]);
    assert!(out.contains("empty"), "{out}");
    for n in names {
        let w = c.workload(n);
        assert_eq!(w["status"], "running", "{w}");
        assert_ne!(w["node"], "alpha", "{w}");
    }
    let ms = c.migrations();
    assert_eq!(ms.len(), 3, "{ms:?}");
    for m in &ms {
        assert_eq!(m["outcome"], "committed", "{m}");
        assert_eq!(m["why"], "drain of alpha", "{m}");
    }
    // One migration at a time per node: alpha takes part in all three, so none overlap.
    let mut spans: Vec<(u64, u64)> = ms
        .iter()
        .map(|m| {
            (
                m["requested_unix_ms"].as_u64().expect("start"),
                m["finished_unix_ms"].as_u64().expect("end"),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping migrations: {spans:?}");
    }
    // Nothing new lands on a drained node.
    assert_eq!(c.node("alpha")["schedulable"], false);
    c.deploy(
        &once("late", "compute", &["100000000000"])
            .toml("[placement]\nrequire = { region = [\"eu-west\"] }\n"),
    );
    c.wait(
        |c| {
            c.workload("late")["reason"]
                .as_str()
                .is_some_and(|r| r.contains("is drained (alpha)"))
        },
        "late to wait, with the reason",
    );
    c.ok(&["undrain", "alpha"]);
    c.wait_status("late", "running");
    assert_eq!(c.workload("late")["node"], "alpha");
}

#[test]
fn volumes_move_with_the_workload_and_a_move_back_sends_only_the_delta() {
    let c = two_regions().start();
    let args = ["/data", "150000"];
    c.deploy_running(
        &once("writer", "files", &args)
            .top("volumes = [{ name = \"state\", guest = \"/data\" }]\n"),
    );
    let first = c.node_of("writer").expect("node");
    std::thread::sleep(Duration::from_millis(400));
    let m1 = c.migrate_committed("writer", other(&first));
    std::thread::sleep(Duration::from_millis(200));
    let m2 = c.migrate_committed("writer", &first);
    // What the volume held when it moved back (the program goes on writing).
    let volume = c.node_dir(&first).join("volumes/writer/state");
    let held: usize = files_in(&volume).iter().map(|(_, b)| b.len()).sum();
    c.wait_ended("writer");
    // The files, wherever the program ended, are those of an unmoved run.
    let reference = tempfile::tempdir().expect("tempdir");
    let want = tern().unmoved_in(reference.path(), "/data", "files", &args);
    let got = Ending {
        code: c.exit_code("writer"),
        files: Some(files_in(&volume)),
        ..Ending::default()
    };
    assert_ends_alike("the volume after two moves", &got, &want);
    // Moving back to a node that holds an earlier copy sends only what changed.
    let (b1, b2) = (
        m1["files_bytes"].as_u64().expect("files_bytes"),
        m2["files_bytes"].as_u64().expect("files_bytes"),
    );
    eprintln!("files: first move {b1} bytes, move back {b2} bytes, volume then {held} bytes");
    assert!(b1 > 0, "{m1}");
    assert!(
        (b2 as usize) < held / 2,
        "moving back sent {b2} bytes of files, of {held} (first move {b1})"
    );
}

#[test]
fn a_controller_restarted_mid_migration_leaves_the_workload_in_exactly_one_place() {
    let mut c = two_regions().start();
    let args = ["96", "600"];
    c.deploy_running(&once("steady", "bigmem", &args));
    let (from, to) = start_slow_migration(&c, "steady");
    // The controller goes away while the bytes flow and comes back a moment later.
    c.kill_controller();
    std::thread::sleep(Duration::from_millis(700));
    c.start_controller();
    c.wait(
        |c| !c.migration_of("steady")["outcome"].is_null(),
        "the migration to end",
    );
    let m = c.migration_of("steady");
    let w = c.workload("steady");
    let expected_node = if m["outcome"] == "committed" {
        to
    } else {
        from.as_str()
    };
    assert_eq!(w["node"], expected_node, "{m} {w}");
    // Exactly one instance of it runs, on that node.
    c.wait(
        |c| {
            let running: Vec<String> = c
                .nodes()
                .iter()
                .flat_map(|n| {
                    n["instances"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|i| i["workload"] == "steady" && i["status"] == "running")
                        .map(move |_| n["name"].as_str().unwrap_or("").to_string())
                })
                .collect();
            running == vec![expected_node.to_string()]
        },
        "one instance, where the controller says",
    );
    c.assert_ends_like("steady", &tern().unmoved("bigmem", &args));
}

#[test]
fn a_program_that_ends_during_its_migration_ends_normally_where_it_ran() {
    let c = two_regions().start();
    let args = ["128", "12"];
    c.deploy_running(&once("brief", "bigmem", &args));
    let from = c.node_of("brief").expect("node");
    // At 20 MiB/s the first round alone outlasts the program.
    let m = c.migrate("brief", other(&from), &["--bandwidth", "20MiB"]);
    assert_eq!(m.code, Some(1), "{}", m.report);
    assert_eq!(m.report["outcome"], "failed", "{}", m.report);
    c.wait_ended("brief");
    let w = c.workload("brief");
    assert_eq!(w["node"], from.as_str(), "{w}");
    c.assert_ends_like("brief", &tern().unmoved("bigmem", &args));
}

#[test]
fn an_agent_killed_and_restarted_adopts_its_running_instances() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    let args = ["6000"];
    c.deploy_running(&once("keep", "printer", &args));
    let before = c.workload("keep");
    // A crash of the agent, not of the node: it comes back before the node is declared down.
    c.kill_agent("alpha");
    std::thread::sleep(Duration::from_millis(200));
    c.restart_agent("alpha");
    std::thread::sleep(Duration::from_millis(300));
    let after = c.workload("keep");
    assert_eq!(after["instance"], before["instance"], "{after}");
    assert_eq!(after["restarts"], 0, "{after}");
    // Its output is whole and appears once, though the new agent read the files from the start.
    c.assert_ends_like("keep", &tern().unmoved("printer", &args));
    let w = c.workload("keep");
    assert_eq!(w["instance"], before["instance"], "{w}");
}

#[test]
fn a_source_agent_killed_mid_transfer_and_restarted_takes_the_migration_over() {
    let mut c = two_regions().start();
    let args = ["96", "500"];
    c.deploy_running(&once("survivor", "bigmem", &args));
    let before = c.workload("survivor");
    let (from, to) = start_slow_migration(&c, "survivor");
    // The source's agent crashes mid-transfer and comes back.
    c.kill_agent(&from);
    std::thread::sleep(Duration::from_millis(150));
    c.restart_agent(&from);
    c.wait(
        |c| !c.migration_of("survivor")["outcome"].is_null(),
        "the migration to end",
    );
    // The instance kept moving while its agent was away; the restarted agent asked for the
    // same migration again, took it over and saw it committed.
    let m = c.migration_of("survivor");
    assert_eq!(m["outcome"], "committed", "{m}");
    let w = c.workload("survivor");
    assert_eq!(w["node"], to, "{w}");
    assert_ne!(w["instance"], before["instance"], "{w}");
    c.assert_ends_like("survivor", &tern().unmoved("bigmem", &args));
}

/// One request to the counter on a kept-alive connection; the response's status and body.
fn to_counter(conn: &mut TcpStream, method: &str, path: &str) -> (u16, String) {
    let (status, body, _) = http::request(conn, "counter", method, path);
    (status, body)
}

#[test]
fn a_service_moves_with_its_state_and_answers_at_its_new_endpoint() {
    let c = two_regions().start();
    deploy_service(&c, &counter());
    let first = endpoint(&c, "counter").expect("endpoint");
    let mut conn = TcpStream::connect(&first).expect("connect");
    for i in 1..=50 {
        assert_eq!(
            to_counter(&mut conn, "POST", "/inc/k"),
            (200, format!("{i}\n"))
        );
    }
    assert_eq!(
        to_counter(&mut conn, "GET", "/nothing"),
        (404, "no such thing\n".into())
    );
    let from = c.node_of("counter").expect("node");
    // The connection stays open across the move: it cannot follow the program, which sees
    // its client go away and carries on.
    c.migrate_committed("counter", other(&from));
    c.wait(
        |c| endpoint(c, "counter").is_some_and(|e| e != first),
        "the new endpoint",
    );
    let second = endpoint(&c, "counter").expect("endpoint");
    let mut conn2 = TcpStream::connect(&second).expect("connect");
    assert_eq!(
        to_counter(&mut conn2, "GET", "/count/k"),
        (200, "50\n".into())
    );
    assert_eq!(
        to_counter(&mut conn2, "POST", "/inc/k"),
        (200, "51\n".into())
    );
    assert_eq!(
        to_counter(&mut conn2, "GET", "/total"),
        (200, "51\n".into())
    );
    // Where it was, nothing answers any more.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut rest);
    assert!(
        TcpStream::connect(&first).is_err(),
        "the old endpoint still listens"
    );
    // And back, with the connection to the second place open during that move too.
    c.migrate_committed("counter", &from);
    c.wait(
        |c| endpoint(c, "counter").is_some_and(|e| e != second),
        "the endpoint back home",
    );
    let mut conn3 =
        TcpStream::connect(endpoint(&c, "counter").expect("endpoint")).expect("connect");
    assert_eq!(
        to_counter(&mut conn3, "POST", "/inc/k"),
        (200, "52\n".into())
    );
    assert_eq!(
        to_counter(&mut conn3, "GET", "/count/other"),
        (200, "0\n".into())
    );
}

#[test]
fn the_gateway_routes_by_host_follows_a_move_and_says_404_or_503() {
    let c = two_regions().start();
    let gateway = c.start_gateway("eu-west", &["--hold-timeout", "1s"]);
    let connect = || TcpStream::connect(gateway.addr()).expect("connect to the gateway");
    deploy_service(&c, &counter());

    let mut conn = connect();
    for i in 1..=20 {
        let (status, body, _) = http::request(&mut conn, "counter.example", "POST", "/inc/k");
        assert_eq!((status, body), (200, format!("{i}\n")));
    }
    let (status, body, _) = http::request(&mut conn, "elsewhere.example", "GET", "/total");
    assert_eq!(status, 404);
    assert!(
        body.contains("no workload serves elsewhere.example/total"),
        "{body}"
    );

    // Moved: the same gateway connection reaches it where it is now, with its counts.
    let from = c.node_of("counter").expect("node");
    c.migrate_committed("counter", other(&from));
    for i in 21..=30 {
        let (status, body, _) = http::request(&mut conn, "COUNTER.example:80", "POST", "/inc/k");
        assert_eq!((status, body), (200, format!("{i}\n")));
    }

    // Bad clients get errors of their own; the others go on.
    {
        use std::io::{Read, Write};
        let mut bad = connect();
        bad.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("send");
        let mut answer = String::new();
        let _ = bad.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let mut huge = connect();
        let header = "x".repeat(64 << 10);
        let _ = huge.write_all(
            format!("GET /total HTTP/1.1\r\nHost: counter.example\r\nX-Big: {header}\r\n\r\n")
                .as_bytes(),
        );
        let mut answer = String::new();
        let _ = huge.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }
    let (status, body, _) = http::request(&mut conn, "counter.example", "GET", "/total");
    assert_eq!((status, body), (200, "30\n".into()));

    // Stopped: nothing runs it, so after the hold a 503 that says so, with Retry-After.
    c.ok(&["stop", "counter"]);
    c.wait(
        |c| c.workload("counter")["status"] != "running",
        "counter stopped",
    );
    let mut conn = connect();
    let t = Instant::now();
    let (status, body, head) = http::request(&mut conn, "counter.example", "GET", "/total");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("counter has no running instance"), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "held past its deadline"
    );
}

#[test]
fn a_service_under_load_moves_twenty_times_and_no_request_fails_or_counts_twice() {
    let c = three_regions().start();
    let gateway = c.start_gateway("eu-west", &[]);
    let gw = gateway.addr().to_string();
    deploy_service(&c, &counter());
    let gateways = c.json(&["gateways", "-o", "json"]);
    assert_eq!(gateways[0]["region"], "eu-west", "{gateways}");
    assert_eq!(gateways[0]["address"], gw.as_str(), "{gateways}");

    // Several clients, each on its own kept-alive connection and key, as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let gw = gw.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&gw).expect("connect");
                let mut ok = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, body, _) =
                        http::request(&mut conn, "counter.example", "POST", &format!("/inc/c{k}"));
                    assert_eq!(status, 200, "client {k}, request {}: {body}", ok + 1);
                    ok += 1;
                    // Each answer is the count so far: none lost, none counted twice.
                    assert_eq!(body, format!("{ok}\n"), "client {k}");
                }
                ok
            })
        })
        .collect();
    let nodes = ["alpha", "beta", "gamma"];
    let mut pauses = Vec::new();
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let from = c.node_of("counter").expect("node");
        let at = nodes.iter().position(|n| *n == from).expect("a node");
        let to = nodes[(at + 1 + i % 2) % 3];
        let m = c.json(&["migrate", "counter", "--to", to, "-o", "json"]);
        assert_eq!(m["outcome"], "committed", "move {i}: {m}");
        pauses.push(m["pause_ms"].as_f64().unwrap_or(0.0));
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered: u64 = clients
        .into_iter()
        .map(|t| t.join().expect("a client failed"))
        .sum();
    let mut conn = TcpStream::connect(&gw).expect("connect");
    let (status, total, _) = http::request(&mut conn, "counter.example", "GET", "/total");
    assert_eq!((status, total), (200, format!("{answered}\n")));
    assert!(answered > 1000, "only {answered} requests in 20 moves");
    eprintln!("{answered} requests, 20 moves, pauses {pauses:?} ms");
}

#[test]
fn gateways_count_demand_by_client_region_and_inspect_shows_it() {
    let c = cluster().node("alpha", "region=eu-west").start();
    deploy_service(&c, &counter());
    let eu = c.start_gateway("eu-west", &[]);
    // This one trusts a CDN's header, and maps loopback clients to us-east otherwise.
    let cidrs = c.dir().join("cidrs");
    std::fs::write(&cidrs, "127.0.0.0/8 us-east\n").expect("write");
    let ap = c.start_gateway(
        "ap-south",
        &[
            "--region-header",
            "X-Client-Region",
            "--region-cidrs",
            &cidrs.display().to_string(),
        ],
    );
    let mut a = TcpStream::connect(eu.addr()).expect("connect");
    for _ in 0..30 {
        assert_eq!(
            http::request(&mut a, "counter.example", "POST", "/inc/x").0,
            200
        );
    }
    let mut b = TcpStream::connect(ap.addr()).expect("connect");
    for _ in 0..20 {
        assert_eq!(
            http::request(&mut b, "counter.example", "GET", "/total").0,
            200
        );
    }
    {
        use std::io::Write;
        for _ in 0..5 {
            b.write_all(
                b"GET /total HTTP/1.1\r\nHost: counter.example\r\nX-Client-Region: sa-east\r\n\r\n",
            )
            .expect("send");
            http::read_head(&mut b);
            let mut body = [0u8; 3];
            std::io::Read::read_exact(&mut b, &mut body).expect("body");
        }
    }
    c.wait(
        |c| {
            let v = c.json(&["inspect", "counter"]);
            v["traffic"]["requests"].as_u64() == Some(55)
        },
        "the gateways' reports",
    );
    let t = c.json(&["inspect", "counter"])["traffic"].clone();
    assert_eq!(t["by_region"]["eu-west"], 30, "{t}");
    assert_eq!(t["by_region"]["us-east"], 20, "{t}");
    assert_eq!(t["by_region"]["sa-east"], 5, "{t}");
    assert_eq!(t["errors"], 0, "{t}");
    assert!(t["rate_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{t}");
    assert!(
        t["p50_ms"].as_f64().is_some() && t["p99_ms"].as_f64().is_some(),
        "{t}"
    );
}

#[test]
fn a_restarted_gateway_and_a_lost_node_leave_no_request_hanging() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    deploy_service(&c, &counter());
    let mut g = c.start_gateway("eu-west", &[]);
    let addr = g.addr().to_string();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http::request(&mut conn, "counter.example", "POST", "/inc/k").1,
        "1\n"
    );
    // A gateway restarted on the same address picks the routes up again.
    g.kill();
    let _g = c.start_gateway_on(&addr, "eu-west", &["--hold-timeout", "2s"]);
    let mut conn = TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http::request(&mut conn, "counter.example", "POST", "/inc/k").1,
        "2\n"
    );
    // The node is lost with the instance: held requests end with a 503 by their deadline.
    c.kill_agent("alpha");
    for pid in c.instance_pids("alpha") {
        signal_pid(pid, "-KILL");
    }
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                let t = Instant::now();
                let (status, body, head) =
                    http::request(&mut s, "counter.example", "GET", "/total");
                (status, body, head, t.elapsed())
            })
        })
        .collect();
    // A clear answer for each, in time: 503 (with Retry-After) for a request held until its
    // deadline, or 502 for one sent on a kept-alive connection to the instance as it died (it
    // may have been processed, so it is not sent again).
    for t in clients {
        let (status, body, head, took) = t.join().expect("client");
        match status {
            503 => assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}"),
            502 => assert!(body.starts_with("tern gateway: counter: "), "{body}"),
            _ => panic!("{status} {body}"),
        }
        assert!(took < Duration::from_secs(8), "held {took:?}");
    }
}

#[test]
fn a_slow_client_is_cut_off_without_holding_up_the_others() {
    let c = cluster().node("alpha", "region=eu-west").start();
    deploy_service(&c, &counter());
    let g = c.start_gateway("eu-west", &["--header-timeout", "1s"]);
    let addr = g.addr();
    // Slowloris: a request head dribbled out a byte at a time, never finished.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            use std::io::Write;
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /total HTTP/1.1\r\nHost: counter.example\r\nX-Slow: ")
                .expect("send");
            s
        })
        .collect();
    let mut fast = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for s in &mut slow {
            use std::io::Write;
            let _ = s.write_all(b"a");
        }
        assert_eq!(
            http::request(&mut fast, "counter.example", "POST", "/inc/k").0,
            200
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered > 20, "the others were held up: {answered}");
    // Past the header timeout the slow ones were closed.
    for s in &mut slow {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) => assert!(
                n == 0 || text(&buf[..n]).starts_with("HTTP/1.1 408"),
                "{}",
                text(&buf[..n])
            ),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "still open"
            ),
        }
    }
}

#[test]
fn a_hung_service_gets_a_504_in_time_and_answers_again_once_it_runs() {
    let c = cluster().node("alpha", "region=eu-west").start();
    deploy_service(&c, &counter());
    let g = c.start_gateway(
        "eu-west",
        &["--upstream-timeout", "1s", "--hold-timeout", "5s"],
    );
    let addr = g.addr().to_string();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http::request(&mut conn, "counter.example", "POST", "/inc/k").1,
        "1\n"
    );
    let pids = c.instance_pids("alpha");
    assert_eq!(pids.len(), 1);
    let signal = |sig: &str| signal_pid(pids[0], sig);
    // Hung: the kernel still accepts, nobody answers.
    signal("-STOP");
    let t = Instant::now();
    let (status, body, _) = http::request(&mut conn, "counter.example", "GET", "/total");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("counter did not answer"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    signal("-CONT");
    let mut conn = TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http::request(&mut conn, "counter.example", "GET", "/count/k").1,
        "1\n"
    );
    // Gone (it crashed; its node restarts it): its endpoint refuses, so it leaves routing,
    // and the requests wait for the new instance instead of failing. (A restart is not a
    // move: the new instance starts from nothing.)
    signal("-KILL");
    // (Kept-alive connections to it close with it; a request caught on one as it dies gets
    // a 502, see the lost-node test.)
    std::thread::sleep(Duration::from_millis(200));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                http::request(&mut s, "counter.example", "GET", "/count/k")
            })
        })
        .collect();
    for t in clients {
        let (status, body, _) = t.join().expect("client");
        assert_eq!((status, body), (200, "0\n".into()));
    }
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[test]
fn large_bodies_stream_through_the_gateway_both_ways() {
    use std::io::{Read, Write};
    let c = cluster().node("alpha", "region=eu-west").start();
    deploy_service(&c, &counter());
    let g = c.start_gateway("eu-west", &[]);
    const SIZE: u64 = 64 << 20;
    let byte = |i: u64| (i.wrapping_mul(2654435761) >> 13) as u8;
    // Up: 64 MiB sent in pieces; the service answers its length and checksum.
    let mut s = TcpStream::connect(g.addr()).expect("connect");
    s.write_all(
        format!("POST /sum HTTP/1.1\r\nHost: counter.example\r\nContent-Length: {SIZE}\r\n\r\n")
            .as_bytes(),
    )
    .expect("head");
    let mut sum = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    for at in (0..SIZE).step_by(chunk.len()) {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = byte(at + i as u64);
            sum = (sum + u64::from(*b)) * 31 % 1_000_000_007;
        }
        s.write_all(&chunk).expect("body");
    }
    let head = http::read_head(&mut s);
    let want = format!("{SIZE} {sum}\n");
    let mut answer = vec![0u8; want.len()];
    s.read_exact(&mut answer).expect("answer body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(text(&answer), want);
    // Down: 64 MiB, checked as they come.
    s.write_all(format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: counter.example\r\n\r\n").as_bytes())
        .expect("send");
    let head = http::read_head(&mut s);
    assert_eq!(&head[9..12], "200", "{head}");
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while got < SIZE {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "ended at {got}");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                u64::from(*b),
                (got + i as u64) % 251,
                "byte {}",
                got + i as u64
            );
        }
        got += n as u64;
    }
    // Neither body was held whole by the gateway.
    let peak = peak_rss(g.pid());
    assert!(peak < 48 << 20, "the gateway peaked at {} MiB", peak >> 20);
}

#[test]
fn only_workloads_the_gateways_route_to_are_quiesced_before_they_stop() {
    let c = two_regions().start();
    let _g = c.start_gateway("eu-west", &[]);
    c.wait(
        |c| {
            c.json(&["gateways", "-o", "json"])
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
        "the gateway to follow the controller",
    );
    deploy_service(&c, &counter());
    c.deploy_running(&once("plain", "ticker", &["400", "20", "1"]));
    for name in ["counter", "plain"] {
        let from = c.node_of(name).expect("node");
        c.migrate_committed(name, other(&from));
    }
    let all = c.migrations();
    let quiesced = |name: &str| {
        all.iter()
            .find(|m| m["workload"] == name)
            .map(|m| m["quiesce"].clone())
    };
    assert_eq!(
        quiesced("counter"),
        Some(serde_json::json!(true)),
        "{all:?}"
    );
    assert_eq!(quiesced("plain"), Some(serde_json::json!(false)), "{all:?}");
}
