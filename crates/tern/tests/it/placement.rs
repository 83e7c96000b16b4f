//! Automatic placement on a real local cluster: the scheduler moves workloads on its own when
//! demand shifts, a node is overloaded or a cheaper node has room; noise moves nothing; and a
//! move that made latency worse is taken back. Geography comes from a delay table that the
//! agents' probes and the gateways apply, so the scheduler has to measure it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tern_testkit::{http, Gateway};

use crate::harness::{cluster, counter, deploy_service, once, tern, text, Cluster};

/// Write a delay table; its path, as the `--delays` flags take it.
fn delays(dir: &Path, toml: &str) -> String {
    let p = dir.join("delays.toml");
    std::fs::write(&p, toml).expect("write");
    p.display().to_string()
}

/// Wait up to `secs` for `cond`.
fn wait_for(c: &Cluster, secs: u64, what: &str, cond: impl Fn(&Cluster) -> bool) {
    c.wait_for(Duration::from_secs(secs), what, cond);
}

/// The node workload `w` is on ("" if none).
fn node_of(c: &Cluster, w: &str) -> String {
    c.node_of(w).unwrap_or_default()
}

fn auto_migrations(c: &Cluster) -> Vec<serde_json::Value> {
    c.migrations()
        .into_iter()
        .filter(|m| m["auto"] == true)
        .collect()
}

/// Move `w` to `node` by hand (placement is paused) unless it is there.
fn put_on(c: &Cluster, w: &str, node: &str) {
    if node_of(c, w) != node {
        c.migrate_committed(w, node);
    }
    assert_eq!(node_of(c, w), node);
}

/// Clients sending `POST /inc/k` through a gateway until stopped; each answer must be the
/// next count (none failed, none counted twice).
struct Clients {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Clients {
    fn start(gateway: &str, first: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let addr = gateway.to_string();
        let thread = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
            let mut next = first;
            while !s.load(Ordering::SeqCst) {
                let (status, body, _) =
                    http::request(&mut conn, "counter.example", "POST", "/inc/k");
                assert_eq!((status, body), (200, format!("{next}\n")));
                next += 1;
            }
            next - first
        });
        Clients {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop; how many requests were answered.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("every request was answered with the next count")
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_service_moves_to_the_region_its_demand_comes_from() {
    let work = tempfile::tempdir().expect("tempdir");
    let d = delays(
        work.path(),
        "[[link]]\nbetween = [\"eu-west\", \"ap-south\"]\ndelay = \"120ms\"\n",
    );
    let c = cluster()
        .node("eu", "region=eu-west")
        .node("ap", "region=ap-south")
        .agent_args("eu", &["--delays", &d])
        .agent_args("ap", &["--delays", &d])
        .controller_args(&["--rebalance-every", "500ms"])
        .start();
    deploy_counter(&c, "");
    put_on(&c, "counter", "eu");
    // The probes see the made-up distance.
    wait_for(&c, 20, "a measured link", |c| {
        c.json(&["inspect", "eu"])["links"]
            .as_array()
            .and_then(|l| l.first().cloned())
            .and_then(|l| l["rtt_ms"].as_f64())
            .is_some_and(|rtt| rtt >= 120.0)
    });
    let gw = start_gateway_with(&c, "ap-south", &d);
    let clients = Clients::start(gw.addr(), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert!(auto_migrations(&c).is_empty(), "nothing moves while paused");
    assert!(c
        .ok(&["placement", "resume"])
        .contains("automatic placement: on"));
    wait_for(&c, 60, "the counter in ap-south", |c| {
        node_of(c, "counter") == "ap"
    });
    let moves = auto_migrations(&c);
    assert_eq!(moves.len(), 1, "{moves:?}");
    let why = moves[0]["why"].as_str().unwrap_or("");
    assert!(
        why.starts_with("placement:") && why.contains("proximity"),
        "{why}"
    );
    assert_eq!(moves[0]["outcome"], "committed");
    // Nearer now: requests no longer cross the 120 ms link.
    std::thread::sleep(Duration::from_secs(3));
    let answered = clients.finish();
    assert!(answered > 20, "{answered}");
    let e = c.json(&["explain", "counter", "-o", "json"]);
    assert_eq!(e["node"], "ap", "{e}");
    assert_eq!(e["explanation"]["verdict"]["kind"], "stay", "{e}");
    let alt = &e["explanation"]["alternatives"][0];
    assert_eq!(alt["node"], "eu", "{e}");
    assert!(
        e["explanation"]["current"]["terms"]["proximity"].as_f64()
            > alt["terms"]["proximity"].as_f64(),
        "{e}"
    );
    let table = c.ok(&["explain", "counter"]);
    assert!(
        table.contains("PROXIMITY") && table.contains("stays:"),
        "{table}"
    );
    assert_eq!(auto_migrations(&c).len(), 1, "and it stays there");
}

/// Deploy the counter service (host `counter.example`) with `extra` profile lines; a short
/// cooldown, since moves by hand count too.
fn deploy_counter(c: &Cluster, extra: &str) {
    let extra = if extra.contains("[migration]") {
        extra.replace("[migration]\n", "[migration]\ncooldown = \"1s\"\n")
    } else {
        format!("{extra}[migration]\ncooldown = \"1s\"\n")
    };
    deploy_service(c, &counter().toml(&extra));
}

/// A gateway for `region` that applies the delay table at `delays` to its clients.
fn start_gateway_with(c: &Cluster, region: &str, delays: &str) -> Gateway {
    let g = c.start_gateway(region, &["--delays", delays]);
    std::thread::sleep(Duration::from_millis(50));
    g
}

#[test]
fn workloads_leave_an_overloaded_node_for_idle_ones() {
    let c = cluster()
        .node("a", "region=eu-west")
        .node("b", "region=eu-west")
        .node("c", "region=eu-west")
        .controller_args(&["--rebalance-every", "500ms"])
        .start();
    // The injected contention: a busy program that must stay on b.
    let hog = once("hog", "compute", &["100000000000"])
        .toml("[placement]\nexclude_nodes = [\"a\", \"c\"]\n[migration]\nlive = false\n");
    c.deploy_running(&hog);
    // A short cooldown: being put on b by hand counts as a move.
    let busy = once("busy", "compute", &["100000000000"]).toml("[migration]\ncooldown = \"1s\"\n");
    c.deploy_running(&busy);
    put_on(&c, "busy", "b");
    let light =
        once("light", "ticker", &["1000000", "50", "1"]).toml("[migration]\ncooldown = \"1s\"\n");
    c.deploy_running(&light);
    put_on(&c, "light", "b");
    wait_for(&c, 20, "b measured busy", |c| {
        c.json(&["inspect", "b"])["usage"]["cpu_busy"]
            .as_f64()
            .is_some_and(|x| x > 0.8)
    });
    c.ok(&["placement", "resume"]);
    wait_for(&c, 60, "its workloads off b", |c| {
        ["busy", "light"].iter().all(|w| {
            let n = node_of(c, w);
            n == "a" || n == "c"
        })
    });
    // And then they stay where they went.
    std::thread::sleep(Duration::from_secs(2));
    let moves = auto_migrations(&c);
    assert_eq!(moves.len(), 2, "{moves:?}");
    for m in &moves {
        assert_eq!(m["from"], "b", "{m}");
        let why = m["why"].as_str().unwrap_or("");
        assert!(why.contains("performance"), "{why}");
    }
    assert_eq!(node_of(&c, "hog"), "b", "the pinned one stays");
    for w in ["hog", "busy", "light"] {
        c.ok(&["rm", w]);
    }
}

/// Deploy `filler`: 200 MiB promised, kept off `other` and unmovable, so that the node with
/// 256 MiB has no room for another 128 MiB until it is removed.
fn fill(c: &Cluster, other: &str) {
    let filler = once("filler", "ticker", &["1000000", "200", "1"]).toml(&format!(
        "[limits]\nmemory = \"200MiB\"\n[placement]\nexclude_nodes = [\"{other}\"]\n\
             [migration]\nlive = false\n"
    ));
    c.deploy_running(&filler);
}

#[test]
fn a_workload_that_weighs_cost_moves_to_a_cheaper_node_once_it_has_room() {
    let c = cluster()
        .node("cheap", "region=eu-west,cost=1")
        .node("dear", "region=eu-west,cost=10")
        .agent_args("cheap", &["--memory", "256MiB"])
        .controller_args(&["--rebalance-every", "500ms"])
        .start();
    fill(&c, "dear");
    let thrifty = once("thrifty", "ticker", &["1000000", "200", "1"])
        .toml("[limits]\nmemory = \"128MiB\"\n[migration]\nweights = { cost = 1.0 }\n");
    c.deploy_running(&thrifty);
    assert_eq!(node_of(&c, "thrifty"), "dear", "the cheap node has no room");
    c.ok(&["placement", "resume"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(auto_migrations(&c).is_empty());
    let e = c.json(&["explain", "thrifty", "-o", "json"]);
    let infeasible = e["explanation"]["infeasible"].to_string();
    assert!(infeasible.contains("cheap"), "{e}");
    c.ok(&["rm", "filler"]);
    wait_for(&c, 60, "thrifty on the cheap node", |c| {
        node_of(c, "thrifty") == "cheap"
    });
    let moves = auto_migrations(&c);
    assert_eq!(moves.len(), 1, "{moves:?}");
    let why = moves[0]["why"].as_str().unwrap_or("");
    assert!(why.contains("cost"), "{why}");
    // Its ticks went on across the move: the state moved, it did not restart.
    let out = c.logs("thrifty");
    let ticks: Vec<&str> = out.lines().collect();
    for (i, l) in ticks.iter().enumerate() {
        assert!(l.starts_with(&format!("tick {i} ")), "line {i}: {l}");
    }
    c.ok(&["rm", "thrifty"]);
}

#[test]
fn noise_of_ten_percent_on_every_metric_moves_nothing() {
    let c = cluster()
        .node("a", "region=eu-west")
        .node("b", "region=eu-west")
        .node("c", "region=eu-west")
        .controller_args(&["--rebalance-every", "300ms", "--metric-noise", "0.1"])
        .start();
    // A short cooldown (being put in place by hand counts as a move), so that only the
    // scheduler's judgement keeps them where they are.
    let cooldown = "[migration]\ncooldown = \"1s\"\n";
    let busy = once("busy", "compute", &["100000000000"]).toml(cooldown);
    c.deploy_running(&busy);
    put_on(&c, "busy", "a");
    for (name, node) in [("tick-b", "b"), ("tick-c", "c")] {
        let p = once(name, "ticker", &["1000000", "50", "4"]).toml(cooldown);
        c.deploy_running(&p);
        put_on(&c, name, node);
    }
    let hand_moves = c.migrations().len();
    c.ok(&["placement", "resume"]);
    std::thread::sleep(Duration::from_secs(12));
    let st = c.ok(&["placement", "status"]);
    assert!(st.contains("last pass"), "{st}");
    assert!(auto_migrations(&c).is_empty(), "{}", c.ok(&["migrations"]));
    assert_eq!(c.migrations().len(), hand_moves);
    for w in ["busy", "tick-b", "tick-c"] {
        let e = c.json(&["explain", w, "-o", "json"]);
        assert_eq!(e["explanation"]["verdict"]["kind"], "stay", "{e}");
    }
    for w in ["busy", "tick-b", "tick-c"] {
        c.ok(&["rm", w]);
    }
}

#[test]
fn a_move_that_made_latency_worse_is_taken_back() {
    let work = tempfile::tempdir().expect("tempdir");
    // The cheap node has a bad route to the clients: the gateways see it, the probes between
    // nodes (all in one region) do not, so the scheduler's model cannot know.
    let d = delays(
        work.path(),
        "[[link]]\nbetween = [\"eu-west\", \"b\"]\ndelay = \"60ms\"\napplies_to = \"clients\"\n",
    );
    let c = cluster()
        .node("a", "region=eu-west,cost=10")
        .node("b", "region=eu-west,cost=1")
        .agent_args("a", &["--delays", &d])
        .agent_args("b", &["--delays", &d, "--memory", "256MiB"])
        .controller_args(&["--rebalance-every", "500ms"])
        .start();
    fill(&c, "a");
    deploy_counter(
        &c,
        "[limits]\nmemory = \"128MiB\"\n[migration]\nweights = { cost = 1.0 }\n",
    );
    assert_eq!(node_of(&c, "counter"), "a");
    let gw = start_gateway_with(&c, "eu-west", &d);
    let clients = Clients::start(gw.addr(), 1);
    c.ok(&["placement", "resume"]);
    // Latency before the move, for the comparison after it.
    std::thread::sleep(Duration::from_secs(3));
    c.ok(&["rm", "filler"]);
    wait_for(&c, 90, "the move to b and the move back", |c| {
        auto_migrations(c)
            .iter()
            .filter(|m| m["outcome"] == "committed")
            .count()
            == 2
            && node_of(c, "counter") == "a"
    });
    let moves = auto_migrations(&c);
    assert_eq!(
        (moves[0]["from"].as_str(), moves[0]["to"].as_str()),
        (Some("a"), Some("b"))
    );
    assert!(
        moves[0]["why"].as_str().unwrap_or("").contains("cost"),
        "{moves:?}"
    );
    assert!(
        moves[0]["regression"]
            .as_str()
            .unwrap_or("")
            .contains("moved back"),
        "{moves:?}"
    );
    assert_eq!(
        (moves[1]["from"].as_str(), moves[1]["to"].as_str()),
        (Some("b"), Some("a"))
    );
    assert!(
        moves[1]["why"]
            .as_str()
            .unwrap_or("")
            .contains("regression"),
        "{moves:?}"
    );
    // And it stays off b, although b is still cheaper.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(auto_migrations(&c).len(), 2);
    let e = c.json(&["explain", "counter", "-o", "json"]);
    assert_eq!(e["avoid"][0]["node"], "b", "{e}");
    assert!(c.ok(&["explain", "counter"]).contains("b: avoided"));
    let answered = clients.finish();
    assert!(answered > 40, "{answered}");
}

#[test]
fn placement_commands_refuse_what_they_cannot_do() {
    let c = cluster().node("a", "region=eu-west").start();
    let out = c.tern(&["explain", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no workload named"),
        "{}",
        text(&out.stderr)
    );
    let out = c.tern(&["placement", "sideways"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let st = c.ok(&["placement", "status"]);
    assert!(st.contains("paused"), "{st}");
    assert!(c.ok(&["placement", "resume"]).contains(": on"));
    assert!(c.ok(&["placement", "pause"]).contains("paused"));
    // A bad delay table is refused with where it is wrong, before anything starts.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = delays(
        dir.path(),
        "[[link]]\nbetween = [\"a\", \"b\"]\ndelay = \"soon\"\n",
    );
    let out = tern().with_home(dir.path()).run(&["up", "--delays", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("delays.toml:3") && err.contains("delay"),
        "{err}"
    );
    let out = tern().run(&["sim", "--nodes", "0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sim_places_and_rebalances_a_simulated_cluster() {
    let out = tern().run(&[
        "sim",
        "--nodes",
        "200",
        "--workloads",
        "3000",
        "--rebalance",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        r["placements_per_sec"].as_f64().is_some_and(|x| x > 0.0),
        "{r}"
    );
    assert!(r["p99_decision_ms"].as_f64().is_some(), "{r}");
    assert!(r["rebalance_ms"].as_f64().is_some(), "{r}");
    assert!(r["placed"].as_u64().is_some_and(|p| p >= 2850), "{r}");
    assert!(
        r["moves"].as_u64().is_some_and(|m| m > 0),
        "the perturbation moves some: {r}"
    );
}

#[test]
fn the_demo_runs_and_every_check_in_it_passes() {
    let home = tempfile::tempdir().expect("home");
    let out = tern().with_home(home.path()).run(&["demo"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("stdout identical, stderr identical, exit code identical"),
        "{stdout}"
    );
    assert!(stdout.contains("unmoved run: identical"), "{stdout}");
    assert!(stdout.contains("moved to node-3 (ap-south)"), "{stdout}");
    assert!(stdout.contains("placement: proximity"), "{stdout}");
    assert!(
        !home.path().join("context.json").exists(),
        "the cluster is down"
    );
}
