//! A real controller and real agents (separate processes on 127.0.0.1), driven through the
//! `tern` CLI as users drive them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{fixture, tern_home, text};

/// A cluster for one test; everything stops when it is dropped.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    controller: Option<Child>,
    agents: Vec<(String, Child)>,
    pub(crate) url: String,
    pub(crate) token: String,
    down_after: &'static str,
    max_blob: usize,
    controller_args: Vec<String>,
    agent_env: Vec<(String, String)>,
    /// Extra arguments of each agent (by node name), also when it is restarted.
    agent_args: Vec<(String, Vec<String>)>,
}

pub(crate) struct Builder {
    nodes: Vec<(String, String)>,
    down_after: &'static str,
    max_blob: usize,
    controller_args: Vec<String>,
    agent_env: Vec<(String, String)>,
    agent_args: Vec<(String, Vec<String>)>,
}

impl Builder {
    pub(crate) fn node(mut self, name: &str, labels: &str) -> Builder {
        self.nodes.push((name.into(), labels.into()));
        self
    }
    fn max_blob(mut self, bytes: usize) -> Builder {
        self.max_blob = bytes;
        self
    }
    /// An environment variable for every agent (and so for the instances it starts).
    pub(crate) fn agent_env(mut self, key: &str, value: &str) -> Builder {
        self.agent_env.push((key.into(), value.into()));
        self
    }
    pub(crate) fn controller_arg(mut self, arg: &str) -> Builder {
        self.controller_args.push(arg.into());
        self
    }
    /// Extra arguments for the agent of node `name` (such as `--cpus 1`).
    pub(crate) fn agent_args(mut self, name: &str, args: &[&str]) -> Builder {
        self.agent_args
            .push((name.into(), args.iter().map(|a| a.to_string()).collect()));
        self
    }

    pub(crate) fn start(self) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            controller: None,
            agents: Vec::new(),
            url: String::new(),
            token: String::new(),
            down_after: self.down_after,
            max_blob: self.max_blob,
            // Tests move workloads themselves, and those that test automatic placement say
            // `tern placement resume` when the stage is set: nothing else moves them meanwhile.
            controller_args: {
                let mut a = self.controller_args.clone();
                a.push("--placement-paused".into());
                a
            },
            agent_env: self.agent_env.clone(),
            agent_args: self.agent_args.clone(),
        };
        c.start_controller();
        for (name, labels) in &self.nodes {
            c.start_agent(name, labels);
        }
        c.wait(|c| c.nodes_up() == self.nodes.len(), "all nodes up");
        c
    }
}

pub(crate) fn cluster() -> Builder {
    Builder {
        nodes: Vec::new(),
        down_after: "1s",
        max_blob: 64 << 20,
        controller_args: Vec::new(),
        agent_env: Vec::new(),
        agent_args: Vec::new(),
    }
}

pub(crate) fn tern_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    cmd.env("TERN_HOME", tern_home());
    cmd
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("controller")
    }

    fn start_controller(&mut self) {
        let _ = std::fs::remove_file(self.data().join("url"));
        // A restarted controller comes back on the same address, where the agents look for it.
        let listen = match self.url.strip_prefix("http://") {
            Some(addr) => addr.to_string(),
            None => "127.0.0.1:0".to_string(),
        };
        let log = std::fs::File::create(self.dir.path().join("controller.log")).expect("log");
        let child = tern_cmd()
            .args(["controller", "--data"])
            .arg(self.data())
            .args(["--listen", &listen, "--down-after", self.down_after])
            .args(["--max-blob-bytes", &self.max_blob.to_string()])
            .args(&self.controller_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("controller starts");
        self.controller = Some(child);
        let url_file = self.data().join("url");
        let started = Instant::now();
        while !url_file.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "controller did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(20));
        self.url = std::fs::read_to_string(&url_file)
            .expect("url")
            .trim()
            .into();
        self.token = std::fs::read_to_string(self.data().join("token"))
            .expect("token")
            .trim()
            .into();
    }

    /// Where a fault for the instances of agent `name` is armed (see tern-runtime's fault.rs).
    pub(crate) fn fault_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.fault"))
    }

    fn agent_command(&self, name: &str, labels: &str) -> Command {
        let mut cmd = tern_cmd();
        cmd.args(["agent", "--controller", &self.url, "--token", &self.token])
            .args(["--name", name, "--labels", labels, "--data"])
            .arg(self.dir.path().join(name))
            // Armed only by the fault-injection tests, which write this file.
            .env("TERN_FAULT_FILE", self.fault_file(name))
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            // The nodes share this machine: each counts its own instances' CPU.
            .args(["--cpu-measure", "instances"]);
        for (n, args) in &self.agent_args {
            if n == name {
                cmd.args(args);
            }
        }
        cmd
    }

    pub(crate) fn start_agent(&mut self, name: &str, labels: &str) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let child = self
            .agent_command(name, labels)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        self.agents.push((name.into(), child));
    }

    pub(crate) fn kill_agent(&mut self, name: &str) {
        let i = self
            .agents
            .iter()
            .position(|(n, _)| n == name)
            .expect("agent");
        let (_, mut child) = self.agents.remove(i);
        // A crash, not a shutdown: its instances are orphaned with it.
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn tern(&self, args: &[&str]) -> Output {
        tern_cmd()
            .args(args)
            .args(["--controller", &self.url, "--token", &self.token])
            .output()
            .expect("tern runs")
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.tern(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "tern {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("json output")
    }

    pub(crate) fn workload(&self, name: &str) -> serde_json::Value {
        self.json(&["ps", "-o", "json"])
            .as_array()
            .expect("array")
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    fn nodes_up(&self) -> usize {
        let out = self.tern(&["nodes", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .map(|a| a.iter().filter(|n| n["status"] == "up").count())
            .unwrap_or(0)
    }

    pub(crate) fn wait(&self, cond: impl Fn(&Cluster) -> bool, what: &str) {
        let started = Instant::now();
        while !cond(self) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, a) in &mut self.agents {
            let _ = Command::new("kill")
                .args(["-TERM", &a.id().to_string()])
                .status();
            let _ = a.wait();
        }
        self.kill_controller();
    }
}

/// A profile for the printer fixture in its own directory.
fn profile(dir: &Path, name: &str, lines: u32, extra: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(fixture("printer"), d.join("printer.wasm")).expect("copy");
    let p = d.join("tern.toml");
    std::fs::write(
        &p,
        format!("name = \"{name}\"\nmodule = \"printer.wasm\"\nargs = [\"{lines}\"]\n{extra}"),
    )
    .expect("write");
    p
}

#[test]
fn deploy_ps_logs_stop_rm() {
    let c = cluster()
        .node("alpha", "region=eu-west,cost=0.1")
        .node("beta", "region=us-east,cost=0.2")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let p = profile(work.path(), "short", 40, "[restart]\npolicy = \"never\"\n");
    let ps = p.display().to_string();
    assert!(c.ok(&["deploy", &ps]).contains("short"));
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
    assert!(c.ok(&["deploy", &ps]).contains("unchanged"));
    assert_eq!(c.workload("short")["generation"], 1);

    // A long one: running on one of the nodes, listed with its node.
    let p = profile(work.path(), "long", 10_000_000, "");
    let lp = p.display().to_string();
    c.ok(&["deploy", &lp]);
    c.wait(
        |c| c.workload("long")["status"] == "running",
        "long running",
    );
    let table = c.ok(&["ps"]);
    assert!(table.lines().next().expect("header").starts_with("NAME"));
    assert!(table.lines().all(|l| l.len() <= 80), "{table}");
    let node = c.workload("long")["node"]
        .as_str()
        .expect("node")
        .to_string();
    assert!(node == "alpha" || node == "beta");
    // A changed profile replaces the instance.
    std::fs::write(
        &p,
        "name = \"long\"\nmodule = \"printer.wasm\"\nargs = [\"10000001\"]\n",
    )
    .expect("write");
    c.ok(&["deploy", &lp]);
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
    assert!(text(&out.stderr).contains("no workload named \"long\""));
}

#[test]
fn constraints_and_pending_reasons() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let p = profile(
        work.path(),
        "pinned",
        10_000_000,
        "[placement]\nrequire = { region = [\"us-east\"] }\n",
    );
    deploy_running(&c, &p, "pinned");
    assert_eq!(c.workload("pinned")["node"], "beta");

    let p = profile(
        work.path(),
        "nowhere",
        10,
        "[placement]\nrequire = { region = [\"mars\"] }\n",
    );
    c.ok(&["deploy", &p.display().to_string()]);
    let w = c.workload("nowhere");
    assert_eq!(w["status"], "pending");
    assert_eq!(w["reason"], "no node is up with region=mars");
    assert!(c.ok(&["ps"]).contains("no node is up with region=mars"));

    let p = profile(
        work.path(),
        "huge",
        10,
        "[limits]\nmemory = \"100000GiB\"\n",
    );
    c.ok(&["deploy", &p.display().to_string()]);
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
    let work = tempfile::tempdir().expect("tempdir");
    let d = work.path().join("spin");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(fixture("compute"), d.join("compute.wasm")).expect("copy");
    let p = d.join("tern.toml");
    std::fs::write(
        &p,
        "name = \"spin\"\nmodule = \"compute.wasm\"\nargs = [\"100000000000\"]\n[limits]\ncpu = 0.25\n",
    )
    .expect("write");
    c.ok(&["deploy", &p.display().to_string()]);
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
    c.wait(
        |c| c.workload("spin")["status"] == "running",
        "spin running",
    );
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
    let work = tempfile::tempdir().expect("tempdir");
    let p = profile(work.path(), "svc", 10_000_000, "");
    deploy_running(&c, &p, "svc");
    let first = c.workload("svc")["node"]
        .as_str()
        .expect("node")
        .to_string();
    c.kill_agent(&first);
    c.wait(
        |c| {
            let w = c.workload("svc");
            w["status"] == "running" && w["node"] != first.as_str()
        },
        "svc running on the other node",
    );
    let nodes = c.json(&["nodes", "-o", "json"]);
    let lost = nodes
        .as_array()
        .expect("array")
        .iter()
        .find(|n| n["name"] == first.as_str())
        .expect("lost node listed");
    assert_eq!(lost["status"], "down");
}

#[test]
fn a_restarted_controller_has_lost_nothing() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    let p = profile(work.path(), "svc", 10_000_000, "");
    deploy_running(&c, &p, "svc");
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
        .max_blob(1 << 20)
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    // A malformed profile: file, line and field.
    let p = profile(work.path(), "bad", 10, "[limits]\nmemory = \"lots\"\n");
    let out = c.tern(&["deploy", &p.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("tern.toml:5:") && err.contains("limits.memory"),
        "{err}"
    );
    // A missing module.
    let d = work.path().join("nomodule");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(
        d.join("tern.toml"),
        "name = \"x\"\nmodule = \"missing.wasm\"\n",
    )
    .expect("write");
    let out = c.tern(&["deploy", &d.join("tern.toml").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.wasm"),
        "{}",
        text(&out.stderr)
    );
    // An oversized upload.
    std::fs::write(d.join("missing.wasm"), vec![0u8; 2 << 20]).expect("write");
    let out = c.tern(&["deploy", &d.join("tern.toml").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("413"), "{}", text(&out.stderr));
    // A wrong token.
    let out = tern_cmd()
        .args(["ps", "--controller", &c.url, "--token", "nope"])
        .output()
        .expect("tern runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    // An unknown workload.
    let out = c.tern(&["stop", "ghost"]);
    assert!(text(&out.stderr).contains("no workload named \"ghost\""));
    // Nothing was created by any of it.
    assert_eq!(c.json(&["ps", "-o", "json"]), serde_json::json!([]));
    // A second agent with a name that is taken and up is refused.
    let elsewhere = c.dir.path().join("another-machine");
    let out = tern_cmd()
        .args(["agent", "--controller", &c.url, "--token", &c.token])
        .args(["--name", "alpha", "--labels", "region=us-east", "--data"])
        .arg(&elsewhere)
        .output()
        .expect("agent runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already registered"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stderr).contains("another agent uses"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn crashed_instances_restart_per_policy() {
    let c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    // The printer exits with code 3: a failure, so on-failure restarts it, with backoff.
    let p = profile(
        work.path(),
        "flaky",
        5,
        "[restart]\npolicy = \"on-failure\"\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n",
    );
    c.ok(&["deploy", &p.display().to_string()]);
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
    let p = profile(work.path(), "once", 5, "[restart]\npolicy = \"never\"\n");
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(|c| c.workload("once")["status"] == "failed", "once ended");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.workload("once")["restarts"], 0);
    assert_eq!(c.workload("once")["generation"], 1);
}

#[test]
fn files_are_shipped_and_volumes_persist() {
    let c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    let d = work.path().join("files");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(fixture("files"), d.join("files.wasm")).expect("copy");
    std::fs::write(d.join("notes.txt"), "shipped\n").expect("write");
    // The fixture works in the directory it is given and lists it at the end: the shipped
    // file is there.
    let p = d.join("tern.toml");
    std::fs::write(
        &p,
        "name = \"shipped\"\nmodule = \"files.wasm\"\nargs = [\"/etc\", \"5\"]\nfiles = [{ host = \"notes.txt\", guest = \"/etc/notes.txt\" }]\n[restart]\npolicy = \"never\"\n",
    )
    .expect("write");
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(
        |c| c.workload("shipped")["status"] == "exited",
        "shipped ended",
    );
    c.wait(
        |c| c.ok(&["logs", "shipped"]).contains("done "),
        "its output",
    );
    assert!(c.ok(&["logs", "shipped"]).contains("entry notes.txt"));

    // A volume outlives the instance: a second run appends to the first one's log.
    let profile = |steps: u32| {
        format!("name = \"vol\"\nmodule = \"files.wasm\"\nargs = [\"/data\", \"{steps}\"]\nvolumes = [{{ name = \"data\", guest = \"/data\" }}]\n[restart]\npolicy = \"never\"\n")
    };
    std::fs::write(&p, profile(20)).expect("write");
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(
        |c| c.workload("vol")["status"] == "exited",
        "first run ended",
    );
    std::fs::write(&p, profile(21)).expect("write");
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(
        |c| c.workload("vol")["status"] == "exited" && c.workload("vol")["generation"] == 2,
        "second run ended",
    );
    let log = std::fs::read_to_string(c.dir.path().join("alpha/volumes/vol/data/log.txt"))
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
    let mut up = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["up", "--nodes", "2", "--delays"])
        .arg(&delays)
        .env("TERN_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern up");
    let context = home.path().join("context.json");
    let started = Instant::now();
    let with_home = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(args)
            .env("TERN_HOME", home.path())
            .output()
            .expect("tern runs")
    };
    // Every other command finds the cluster through the context file.
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cluster came up"
        );
        if context.exists() {
            let out = with_home(&["nodes", "-o", "json"]);
            let nodes: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if nodes.as_array().is_some_and(|a| a.len() == 2) {
                let regions: Vec<&str> = nodes
                    .as_array()
                    .expect("array")
                    .iter()
                    .filter_map(|n| n["labels"]["region"].as_str())
                    .collect();
                assert_eq!(regions.len(), 2);
                assert_ne!(regions[0], regions[1], "different regions");
                // One gateway per region.
                let started = Instant::now();
                loop {
                    let out = with_home(&["gateways", "-o", "json"]);
                    let gws: serde_json::Value =
                        serde_json::from_slice(&out.stdout).unwrap_or_default();
                    let mut got: Vec<&str> = gws
                        .as_array()
                        .map(|a| a.iter().filter_map(|g| g["region"].as_str()).collect())
                        .unwrap_or_default();
                    got.sort();
                    let mut want = regions.clone();
                    want.sort();
                    if got == want {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "gateways {gws} for regions {want:?}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                // The agents' probes see the delay table's geography.
                let started = Instant::now();
                loop {
                    let out = with_home(&["network", "-o", "json"]);
                    let net: serde_json::Value =
                        serde_json::from_slice(&out.stdout).unwrap_or_default();
                    let rtt = net["regions"]["links"]
                        .as_array()
                        .and_then(|l| l.iter().find(|x| x["a"] != x["b"]))
                        .and_then(|l| l["rtt_ms"].as_f64());
                    if rtt.is_some_and(|r| r >= 40.0) {
                        assert!(rtt < Some(80.0), "{net}");
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "no link measured: {net}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status();
    let status = up.wait().expect("tern up exits");
    assert_eq!(status.code(), Some(0));
    assert!(!context.exists(), "the context is removed with the cluster");
    let out = with_home(&["ps"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("tern up"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_api_is_described_and_guarded() {
    let c = cluster().start();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{}{path}", c.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().expect("request")
    };
    assert_eq!(get("/openapi.json", None).status(), 401);
    assert_eq!(get("/v1/workloads", Some("wrong")).status(), 401);
    let doc: serde_json::Value = get("/openapi.json", Some(&c.token)).json().expect("json");
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
    let schema: serde_json::Value = get("/v1/profile-schema", Some(&c.token))
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
        .put(format!("{}/v1/blobs/{wrong}", c.url))
        .bearer_auth(&c.token)
        .body(b"hello".to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        get(&format!("/v1/blobs/{wrong}"), Some(&c.token)).status(),
        404
    );
    // Unauthenticated writes change nothing either.
    let r = http
        .post(format!("{}/v1/workloads/x/stop", c.url))
        .send()
        .expect("post");
    assert_eq!(r.status(), 401);
}

/// A profile for any fixture, in its own directory.
pub(crate) fn fixture_profile(
    dir: &Path,
    name: &str,
    fixture_name: &str,
    args: &[&str],
    extra: &str,
) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(fixture(fixture_name), d.join("m.wasm")).expect("copy");
    let p = d.join("tern.toml");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    std::fs::write(
        &p,
        format!(
            "name = \"{name}\"\nmodule = \"m.wasm\"\nargs = [{}]\n[restart]\npolicy = \"never\"\n{extra}",
            args.join(", ")
        ),
    )
    .expect("write");
    p
}

/// What the program prints when nothing moves it.
pub(crate) fn unmoved(fixture_name: &str, args: &[&str]) -> (String, Option<i32>) {
    let mut a = vec![
        "run".to_string(),
        fixture(fixture_name).display().to_string(),
        "--".into(),
    ];
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = crate::harness::tern(&a);
    (text(&out.stdout), out.status.code())
}

/// Deploy the profile at `p` and wait until its workload `name` runs.
pub(crate) fn deploy_running(c: &Cluster, p: &Path, name: &str) {
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(
        |c| c.workload(name)["status"] == "running",
        &format!("{name} running"),
    );
}

/// The other node of a two-node cluster of alpha and beta.
pub(crate) fn other(node: &str) -> &'static str {
    if node == "alpha" {
        "beta"
    } else {
        "alpha"
    }
}

/// The cluster's first migration (Null before there is one).
pub(crate) fn first_migration(c: &Cluster) -> serde_json::Value {
    c.json(&["migrations", "-o", "json"])[0].clone()
}

pub(crate) fn stdout_of(c: &Cluster, workload: &str) -> String {
    let out = c.tern(&["logs", workload]);
    text(&out.stdout)
}

#[test]
fn migrate_moves_a_running_workload_and_its_output_stays_one_stream() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .node("gamma", "region=ap-south")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["9000"];
    let p = fixture_profile(work.path(), "talk", "printer", &args, "");
    deploy_running(&c, &p, "talk");
    let mut node = c.workload("talk")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let mut moves = 0;
    for to in ["alpha", "beta", "gamma", "alpha", "beta", "gamma"] {
        if to == node {
            continue;
        }
        let out = c.tern(&["migrate", "talk", "--to", to, "-o", "json"]);
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if m["outcome"] != "committed" && c.workload("talk")["status"] != "running" {
            break; // the program ended first
        }
        assert_eq!(out.status.code(), Some(0), "{m} {}", text(&out.stderr));
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
    let (want, code) = unmoved("printer", &args);
    assert_eq!(c.workload("talk")["exit_code"], code.expect("code"));
    // Every line exactly once, in order, across all the nodes it ran on.
    c.wait(
        |c| stdout_of(c, "talk").len() >= want.len(),
        "all output in the logs",
    );
    assert_eq!(stdout_of(&c, "talk"), want);
    let list = c.json(&["migrations", "-o", "json"]);
    assert_eq!(
        list.as_array()
            .expect("array")
            .iter()
            .filter(|m| m["outcome"] == "committed")
            .count(),
        moves
    );
}

#[test]
fn a_workload_ping_pongs_twenty_times_and_computes_the_same_result() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .node("gamma", "region=ap-south")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["1500000000"];
    let p = fixture_profile(work.path(), "pong", "compute", &args, "");
    deploy_running(&c, &p, "pong");
    let nodes = ["alpha", "beta", "gamma"];
    let mut moves = 0;
    for i in 0..60 {
        if moves == 20 {
            break;
        }
        let here = c.workload("pong")["node"]
            .as_str()
            .unwrap_or("")
            .to_string();
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
    c.wait(|c| c.workload("pong")["status"] != "running", "pong to end");
    let (want, code) = unmoved("compute", &args);
    assert_eq!(c.workload("pong")["exit_code"], code.expect("code"));
    c.wait(
        |c| !stdout_of(c, "pong").is_empty(),
        "the result in the logs",
    );
    assert_eq!(stdout_of(&c, "pong"), want);
}

#[test]
fn a_migration_that_cannot_happen_is_refused_and_changes_nothing() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let p = fixture_profile(
        work.path(),
        "pinned",
        "compute",
        &["100000000000"],
        "[placement]\nrequire = { region = [\"eu-west\"] }\n",
    );
    deploy_running(&c, &p, "pinned");
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

#[test]
fn a_destination_lost_mid_transfer_leaves_the_workload_running_at_the_source() {
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["128", "300"];
    let p = fixture_profile(work.path(), "heavy", "bigmem", &args, "");
    deploy_running(&c, &p, "heavy");
    let instance = c.workload("heavy")["instance"].clone();
    let from = c.workload("heavy")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let to = other(&from);
    // Slow enough that the transfer is under way when the destination dies.
    let migrating = tern_cmd()
        .args([
            "migrate",
            "heavy",
            "--to",
            to,
            "--bandwidth",
            "100MiB",
            "-o",
            "json",
        ])
        .args(["--controller", &c.url, "--token", &c.token])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tern runs");
    c.wait(
        |c| first_migration(c)["bytes"].as_u64().unwrap_or(0) > 0,
        "the transfer to start",
    );
    c.kill_agent(to);
    let out = migrating.wait_with_output().expect("wait");
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{m}");
    assert_eq!(m["outcome"], "failed", "{m}");
    assert!(
        m["failed_step"].is_string() && m["reason"].is_string(),
        "{m}"
    );
    // Still the same instance on the source, and it finishes as if nothing had happened.
    let w = c.workload("heavy");
    assert_eq!(w["node"], from.as_str(), "{w}");
    assert_eq!(w["instance"], instance);
    c.wait(
        |c| c.workload("heavy")["status"] != "running",
        "heavy to end",
    );
    let (want, code) = unmoved("bigmem", &args);
    assert_eq!(c.workload("heavy")["exit_code"], code.expect("code"));
    c.wait(|c| stdout_of(c, "heavy").len() >= want.len(), "all output");
    assert_eq!(stdout_of(&c, "heavy"), want);
}

#[test]
fn clone_forks_a_running_workload() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["1000000000"];
    let p = fixture_profile(work.path(), "orig", "compute", &args, "");
    deploy_running(&c, &p, "orig");
    let from = c.workload("orig")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let to = other(&from);
    let out = c.tern(&["clone", "orig", "--to", to, "--name", "copy", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(c.workload("copy")["node"], to);
    assert_eq!(c.workload("orig")["node"], from.as_str());
    // Both continue from the same state to the same result.
    c.wait(|c| c.workload("orig")["status"] != "running", "orig to end");
    c.wait(|c| c.workload("copy")["status"] != "running", "copy to end");
    let (want, code) = unmoved("compute", &args);
    for w in ["orig", "copy"] {
        assert_eq!(c.workload(w)["exit_code"], code.expect("code"), "{w}");
        c.wait(|c| !stdout_of(c, w).is_empty(), "the result in the logs");
        assert_eq!(stdout_of(&c, w), want, "{w}");
    }
}

#[test]
fn drain_moves_every_workload_off_within_the_limits_and_undrain_reverses_it() {
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .controller_arg("--max-migrations-per-node=1")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let names = ["w1", "w2", "w3"];
    for n in names {
        let p = fixture_profile(work.path(), n, "compute", &["100000000000"], "");
        c.ok(&["deploy", &p.display().to_string()]);
    }
    c.wait(
        |c| names.iter().all(|n| c.workload(n)["status"] == "running"),
        "all running on alpha",
    );
    c.start_agent("beta", "region=us-east");
    c.start_agent("gamma", "region=ap-south");
    c.wait(|c| c.nodes_up() == 3, "three nodes");
    let out = c.ok(&["drain", "alpha"]);
    assert!(out.contains("empty"), "{out}");
    for n in names {
        let w = c.workload(n);
        assert_eq!(w["status"], "running", "{w}");
        assert_ne!(w["node"], "alpha", "{w}");
    }
    let ms = c.json(&["migrations", "-o", "json"]);
    let ms = ms.as_array().expect("array");
    assert_eq!(ms.len(), 3, "{ms:?}");
    for m in ms {
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
    let nodes = c.json(&["nodes", "-o", "json"]);
    let alpha = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "alpha").cloned())
        .expect("alpha");
    assert_eq!(alpha["schedulable"], false);
    let p = fixture_profile(
        work.path(),
        "late",
        "compute",
        &["100000000000"],
        "[placement]\nrequire = { region = [\"eu-west\"] }\n",
    );
    c.ok(&["deploy", &p.display().to_string()]);
    c.wait(
        |c| {
            c.workload("late")["reason"]
                .as_str()
                .is_some_and(|r| r.contains("is drained (alpha)"))
        },
        "late to wait, with the reason",
    );
    c.ok(&["undrain", "alpha"]);
    c.wait(
        |c| c.workload("late")["status"] == "running",
        "late runs on alpha",
    );
    assert_eq!(c.workload("late")["node"], "alpha");
}

#[test]
fn volumes_move_with_the_workload_and_a_move_back_sends_only_the_delta() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["/data", "150000"];
    let p = fixture_profile(
        work.path(),
        "writer",
        "files",
        &args,
        "volumes = [{ name = \"state\", guest = \"/data\" }]\n",
    );
    // `volumes` is a top-level key: put it before the tables.
    let text_now = std::fs::read_to_string(&p).expect("read");
    let (head, tables) = text_now.split_once("[restart]").expect("tables");
    let vol = "volumes = [{ name = \"state\", guest = \"/data\" }]\n";
    std::fs::write(
        &p,
        format!("{head}{vol}[restart]{}", tables.replace(vol, "")),
    )
    .expect("write");
    deploy_running(&c, &p, "writer");
    let first = c.workload("writer")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let second = if first == "alpha" { "beta" } else { "alpha" };
    std::thread::sleep(Duration::from_millis(400));
    let m1 = c.json(&["migrate", "writer", "--to", second, "-o", "json"]);
    assert_eq!(m1["outcome"], "committed", "{m1}");
    std::thread::sleep(Duration::from_millis(200));
    let m2 = c.json(&["migrate", "writer", "--to", &first, "-o", "json"]);
    assert_eq!(m2["outcome"], "committed", "{m2}");
    // What the volume held when it moved back (the program goes on writing).
    let volume = c.dir.path().join(&first).join("volumes/writer/state");
    let held: usize = crate::harness::files_in(&volume)
        .iter()
        .map(|(_, b)| b.len())
        .sum();
    c.wait(
        |c| c.workload("writer")["status"] != "running",
        "writer to end",
    );
    // The files, wherever the program ended, are those of an unmoved run.
    let reference = work.path().join("reference");
    std::fs::create_dir_all(&reference).expect("mkdir");
    let out = crate::harness::tern(&[
        "run",
        "--dir",
        &format!("{}::/data", reference.display()),
        &fixture("files").display().to_string(),
        "--",
        args[0],
        args[1],
    ]);
    assert_eq!(
        c.workload("writer")["exit_code"],
        out.status.code().expect("code")
    );
    let got = crate::harness::files_in(&volume);
    let want = crate::harness::files_in(&reference);
    assert!(
        got == want,
        "the volume differs from an unmoved run's directory"
    );
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
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["96", "600"];
    let p = fixture_profile(work.path(), "steady", "bigmem", &args, "");
    deploy_running(&c, &p, "steady");
    let from = c.workload("steady")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let to = other(&from);
    let out = c.tern(&[
        "migrate",
        "steady",
        "--to",
        to,
        "--bandwidth",
        "60MiB",
        "--no-wait",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    c.wait(
        |c| first_migration(c)["bytes"].as_u64().unwrap_or(0) > 0,
        "the transfer to start",
    );
    // The controller goes away while the bytes flow and comes back a moment later.
    c.kill_controller();
    std::thread::sleep(Duration::from_millis(700));
    c.start_controller();
    c.wait(
        |c| !first_migration(c)["outcome"].is_null(),
        "the migration to end",
    );
    let m = first_migration(&c);
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
            let nodes = c.json(&["nodes", "-o", "json"]);
            let running: Vec<String> = nodes
                .as_array()
                .into_iter()
                .flatten()
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
    c.wait(
        |c| c.workload("steady")["status"] != "running",
        "steady to end",
    );
    let (want, code) = unmoved("bigmem", &args);
    assert_eq!(c.workload("steady")["exit_code"], code.expect("code"));
    c.wait(|c| stdout_of(c, "steady").len() >= want.len(), "all output");
    assert_eq!(stdout_of(&c, "steady"), want);
}

#[test]
fn a_program_that_ends_during_its_migration_ends_normally_where_it_ran() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["128", "12"];
    let p = fixture_profile(work.path(), "brief", "bigmem", &args, "");
    deploy_running(&c, &p, "brief");
    let from = c.workload("brief")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let to = other(&from);
    // At 20 MiB/s the first round alone outlasts the program.
    let out = c.tern(&[
        "migrate",
        "brief",
        "--to",
        to,
        "--bandwidth",
        "20MiB",
        "-o",
        "json",
    ]);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{m}");
    assert_eq!(m["outcome"], "failed", "{m}");
    c.wait(
        |c| c.workload("brief")["status"] != "running",
        "brief to end",
    );
    let w = c.workload("brief");
    assert_eq!(w["node"], from.as_str(), "{w}");
    let (want, code) = unmoved("bigmem", &args);
    assert_eq!(w["exit_code"], code.expect("code"));
    c.wait(|c| stdout_of(c, "brief").len() >= want.len(), "all output");
    assert_eq!(stdout_of(&c, "brief"), want);
}

#[test]
fn an_agent_killed_and_restarted_adopts_its_running_instances() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["6000"];
    let p = fixture_profile(work.path(), "keep", "printer", &args, "");
    deploy_running(&c, &p, "keep");
    let before = c.workload("keep");
    // A crash of the agent, not of the node: it comes back before the node is declared down.
    c.kill_agent("alpha");
    std::thread::sleep(Duration::from_millis(200));
    c.start_agent("alpha", "region=eu-west");
    std::thread::sleep(Duration::from_millis(300));
    let after = c.workload("keep");
    assert_eq!(after["instance"], before["instance"], "{after}");
    assert_eq!(after["restarts"], 0, "{after}");
    c.wait(|c| c.workload("keep")["status"] != "running", "keep to end");
    let (want, code) = unmoved("printer", &args);
    let w = c.workload("keep");
    assert_eq!(w["instance"], before["instance"], "{w}");
    assert_eq!(w["exit_code"], code.expect("code"), "{w}");
    // Its output is whole and appears once, though the new agent read the files from the start.
    c.wait(|c| stdout_of(c, "keep").len() >= want.len(), "all output");
    assert_eq!(stdout_of(&c, "keep"), want);
}

#[test]
fn a_source_agent_killed_mid_transfer_and_restarted_takes_the_migration_over() {
    let mut c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let args = ["96", "500"];
    let p = fixture_profile(work.path(), "survivor", "bigmem", &args, "");
    deploy_running(&c, &p, "survivor");
    let before = c.workload("survivor");
    let from = before["node"].as_str().expect("node").to_string();
    let to = other(&from);
    let labels = if from == "alpha" {
        "region=eu-west"
    } else {
        "region=us-east"
    };
    let out = c.tern(&[
        "migrate",
        "survivor",
        "--to",
        to,
        "--bandwidth",
        "60MiB",
        "--no-wait",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    c.wait(
        |c| first_migration(c)["bytes"].as_u64().unwrap_or(0) > 0,
        "the transfer to start",
    );
    // The source's agent crashes mid-transfer and comes back.
    c.kill_agent(&from);
    std::thread::sleep(Duration::from_millis(150));
    c.start_agent(&from, labels);
    c.wait(
        |c| !first_migration(c)["outcome"].is_null(),
        "the migration to end",
    );
    // The instance kept moving while its agent was away; the restarted agent asked for the
    // same migration again, took it over and saw it committed.
    let m = first_migration(&c);
    assert_eq!(m["outcome"], "committed", "{m}");
    let w = c.workload("survivor");
    assert_eq!(w["node"], to, "{w}");
    assert_ne!(w["instance"], before["instance"], "{w}");
    c.wait(
        |c| c.workload("survivor")["status"] != "running",
        "survivor to end",
    );
    let (want, code) = unmoved("bigmem", &args);
    let w = c.workload("survivor");
    assert_eq!(w["exit_code"], code.expect("code"), "{w}");
    c.wait(
        |c| stdout_of(c, "survivor").len() >= want.len(),
        "all output",
    );
    assert_eq!(stdout_of(&c, "survivor"), want);
}

/// One request to the counter on a kept-alive connection; the response's status and body.
fn http(conn: &mut std::net::TcpStream, method: &str, path: &str) -> (u16, String) {
    let (status, body, _) = http_to(conn, "counter", method, path);
    (status, body)
}

fn endpoint(c: &Cluster, workload: &str) -> Option<String> {
    c.workload(workload)["endpoints"][0]["address"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_service_moves_with_its_state_and_answers_at_its_new_endpoint() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let first = endpoint(&c, "counter").expect("endpoint");
    let mut conn = std::net::TcpStream::connect(&first).expect("connect");
    for i in 1..=50 {
        assert_eq!(http(&mut conn, "POST", "/inc/k"), (200, format!("{i}\n")));
    }
    assert_eq!(
        http(&mut conn, "GET", "/nothing"),
        (404, "no such thing\n".into())
    );
    let from = c.workload("counter")["node"]
        .as_str()
        .expect("node")
        .to_string();
    // The connection stays open across the move: it cannot follow the program, which sees
    // its client go away and carries on.
    let m = c.json(&["migrate", "counter", "--to", other(&from), "-o", "json"]);
    assert_eq!(m["outcome"], "committed", "{m}");
    c.wait(
        |c| endpoint(c, "counter").is_some_and(|e| e != first),
        "the new endpoint",
    );
    let second = endpoint(&c, "counter").expect("endpoint");
    let mut conn2 = std::net::TcpStream::connect(&second).expect("connect");
    assert_eq!(http(&mut conn2, "GET", "/count/k"), (200, "50\n".into()));
    assert_eq!(http(&mut conn2, "POST", "/inc/k"), (200, "51\n".into()));
    assert_eq!(http(&mut conn2, "GET", "/total"), (200, "51\n".into()));
    // Where it was, nothing answers any more.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut rest);
    assert!(
        std::net::TcpStream::connect(&first).is_err(),
        "the old endpoint still listens"
    );
    // And back, with the connection to the second place open during that move too.
    let m = c.json(&["migrate", "counter", "--to", &from, "-o", "json"]);
    assert_eq!(m["outcome"], "committed", "{m}");
    c.wait(
        |c| endpoint(c, "counter").is_some_and(|e| e != second),
        "the endpoint back home",
    );
    let mut conn3 =
        std::net::TcpStream::connect(endpoint(&c, "counter").expect("endpoint")).expect("connect");
    assert_eq!(http(&mut conn3, "POST", "/inc/k"), (200, "52\n".into()));
    assert_eq!(http(&mut conn3, "GET", "/count/other"), (200, "0\n".into()));
}

/// A request through the gateway on a kept-alive connection, for `host`.
pub(crate) fn http_to(
    conn: &mut std::net::TcpStream,
    host: &str,
    method: &str,
    path: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    conn.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("receive");
        assert_eq!(n, 1, "connection ended mid-response: {}", text(&head));
        head.push(byte[0]);
    }
    let head = text(&head);
    let status = head[9..12].parse().expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("body");
    (status, text(&body), head)
}

#[test]
fn the_gateway_routes_by_host_follows_a_move_and_says_404_or_503() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let addr_file = c.dir.path().join("gateway.addr");
    let mut gateway = tern_cmd()
        .args(["gateway", "--listen", "127.0.0.1:0", "--region", "eu-west"])
        .args([
            "--controller",
            &c.url,
            "--token",
            &c.token,
            "--hold-timeout",
            "1s",
        ])
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    let started = Instant::now();
    while !addr_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gw = std::fs::read_to_string(&addr_file).expect("addr");
    let connect = || std::net::TcpStream::connect(gw.trim()).expect("connect to the gateway");

    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());

    let mut conn = connect();
    for i in 1..=20 {
        let (status, body, _) = http_to(&mut conn, "counter.example", "POST", "/inc/k");
        assert_eq!((status, body), (200, format!("{i}\n")));
    }
    let (status, body, _) = http_to(&mut conn, "elsewhere.example", "GET", "/total");
    assert_eq!(status, 404);
    assert!(
        body.contains("no workload serves elsewhere.example/total"),
        "{body}"
    );

    // Moved: the same gateway connection reaches it where it is now, with its counts.
    let from = c.workload("counter")["node"]
        .as_str()
        .expect("node")
        .to_string();
    let m = c.json(&["migrate", "counter", "--to", other(&from), "-o", "json"]);
    assert_eq!(m["outcome"], "committed", "{m}");
    for i in 21..=30 {
        let (status, body, _) = http_to(&mut conn, "COUNTER.example:80", "POST", "/inc/k");
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
    let (status, body, _) = http_to(&mut conn, "counter.example", "GET", "/total");
    assert_eq!((status, body), (200, "30\n".into()));

    // Stopped: nothing runs it, so after the hold a 503 that says so, with Retry-After.
    c.ok(&["stop", "counter"]);
    c.wait(
        |c| c.workload("counter")["status"] != "running",
        "counter stopped",
    );
    let mut conn = connect();
    let t = Instant::now();
    let (status, body, head) = http_to(&mut conn, "counter.example", "GET", "/total");
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
    let _ = gateway.kill();
    let _ = gateway.wait();
}

/// A gateway process for the cluster; returns it and the address it listens on.
/// A process that is killed when dropped, also when a test fails half-way.
pub(crate) struct Reaped(Child);

pub(crate) trait Reap {
    fn reaped(self) -> Reaped;
}

impl Reap for Child {
    fn reaped(self) -> Reaped {
        Reaped(self)
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(c: &Cluster, region: &str) -> (Reaped, String) {
    let addr_file = c.dir.path().join(format!("gateway-{region}.addr"));
    let child = tern_cmd()
        .args(["gateway", "--listen", "127.0.0.1:0", "--region", region])
        .args(["--controller", &c.url, "--token", &c.token])
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    let started = Instant::now();
    while !addr_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = std::fs::read_to_string(&addr_file).expect("addr");
    (child, addr.trim().to_string())
}

#[test]
fn a_service_under_load_moves_twenty_times_and_no_request_fails_or_counts_twice() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .node("gamma", "region=ap-south")
        .start();
    let (mut gateway, gw) = start_gateway(&c, "eu-west");
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
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
                let mut conn = std::net::TcpStream::connect(&gw).expect("connect");
                let mut ok = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, body, _) =
                        http_to(&mut conn, "counter.example", "POST", &format!("/inc/c{k}"));
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
        let from = c.workload("counter")["node"]
            .as_str()
            .expect("node")
            .to_string();
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
    let mut conn = std::net::TcpStream::connect(&gw).expect("connect");
    let (status, total, _) = http_to(&mut conn, "counter.example", "GET", "/total");
    assert_eq!((status, total), (200, format!("{answered}\n")));
    assert!(answered > 1000, "only {answered} requests in 20 moves");
    eprintln!("{answered} requests, 20 moves, pauses {pauses:?} ms");
    let _ = gateway.kill();
    let _ = gateway.wait();
}

/// Deploy the counter service (host counter.example) and wait for its endpoint.
fn deploy_counter(c: &Cluster, work: &Path) {
    let d = work.join("counter");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(fixture("counter"), d.join("counter.wasm")).expect("copy");
    let p = d.join("tern.toml");
    std::fs::write(
        &p,
        "name = \"counter\"\nmodule = \"counter.wasm\"\nports = [8080]\n\
         [http]\nhost = \"counter.example\"\n",
    )
    .expect("write");
    deploy_running(c, &p, "counter");
    c.wait(
        |c| endpoint(c, "counter").is_some(),
        "the counter's endpoint",
    );
}

#[test]
fn gateways_count_demand_by_client_region_and_inspect_shows_it() {
    let c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let (mut eu, eu_addr) = start_gateway(&c, "eu-west");
    // This one trusts a CDN's header, and maps loopback clients to us-east otherwise.
    let cidrs = work.path().join("cidrs");
    std::fs::write(&cidrs, "127.0.0.0/8 us-east\n").expect("write");
    let addr_file = c.dir.path().join("gateway-ap.addr");
    let mut ap = tern_cmd()
        .args(["gateway", "--listen", "127.0.0.1:0", "--region", "ap-south"])
        .args(["--controller", &c.url, "--token", &c.token])
        .args(["--region-header", "X-Client-Region", "--region-cidrs"])
        .arg(&cidrs)
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    c.wait(|_| addr_file.exists(), "the second gateway");
    let ap_addr = std::fs::read_to_string(&addr_file).expect("addr");
    let mut a = std::net::TcpStream::connect(&eu_addr).expect("connect");
    for _ in 0..30 {
        assert_eq!(http_to(&mut a, "counter.example", "POST", "/inc/x").0, 200);
    }
    let mut b = std::net::TcpStream::connect(ap_addr.trim()).expect("connect");
    for _ in 0..20 {
        assert_eq!(http_to(&mut b, "counter.example", "GET", "/total").0, 200);
    }
    {
        use std::io::Write;
        for _ in 0..5 {
            b.write_all(
                b"GET /total HTTP/1.1\r\nHost: counter.example\r\nX-Client-Region: sa-east\r\n\r\n",
            )
            .expect("send");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(std::io::Read::read(&mut b, &mut byte).expect("read"), 1);
                head.push(byte[0]);
            }
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
    let _ = eu.kill();
    let _ = ap.kill();
    let _ = eu.wait();
    let _ = ap.wait();
}

#[test]
fn a_restarted_gateway_and_a_lost_node_leave_no_request_hanging() {
    let mut c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let (mut g, addr) = start_gateway(&c, "eu-west");
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http_to(&mut conn, "counter.example", "POST", "/inc/k").1,
        "1\n"
    );
    // A gateway restarted on the same address picks the routes up again.
    let _ = g.kill();
    let _ = g.wait();
    let restarted = tern_cmd()
        .args(["gateway", "--listen", &addr, "--region", "eu-west"])
        .args([
            "--controller",
            &c.url,
            "--token",
            &c.token,
            "--hold-timeout",
            "2s",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    let mut g = restarted;
    let started = Instant::now();
    let mut conn = loop {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway not back"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        http_to(&mut conn, "counter.example", "POST", "/inc/k").1,
        "2\n"
    );
    // The node is lost with the instance: held requests end with a 503 by their deadline.
    c.kill_agent("alpha");
    for pid in crate::faults::instance_pids(&c, "alpha") {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).expect("connect");
                let t = Instant::now();
                let (status, body, head) = http_to(&mut s, "counter.example", "GET", "/total");
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
    let _ = g.kill();
    let _ = g.wait();
}

#[test]
fn a_slow_client_is_cut_off_without_holding_up_the_others() {
    let c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let addr_file = c.dir.path().join("gateway.addr");
    let mut g = tern_cmd()
        .args(["gateway", "--listen", "127.0.0.1:0", "--region", "eu-west"])
        .args([
            "--controller",
            &c.url,
            "--token",
            &c.token,
            "--header-timeout",
            "1s",
        ])
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    c.wait(|_| addr_file.exists(), "the gateway");
    let addr = std::fs::read_to_string(&addr_file).expect("addr");
    let addr = addr.trim();
    // Slowloris: a request head dribbled out a byte at a time, never finished.
    let mut slow: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /total HTTP/1.1\r\nHost: counter.example\r\nX-Slow: ")
                .expect("send");
            s
        })
        .collect();
    let mut fast = std::net::TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for s in &mut slow {
            use std::io::Write;
            let _ = s.write_all(b"a");
        }
        assert_eq!(
            http_to(&mut fast, "counter.example", "POST", "/inc/k").0,
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
    let _ = g.kill();
    let _ = g.wait();
}

#[test]
fn a_hung_service_gets_a_504_in_time_and_answers_again_once_it_runs() {
    let c = cluster().node("alpha", "region=eu-west").start();
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let addr_file = c.dir.path().join("gateway.addr");
    let _g = tern_cmd()
        .args(["gateway", "--listen", "127.0.0.1:0", "--region", "eu-west"])
        .args(["--controller", &c.url, "--token", &c.token])
        .args(["--upstream-timeout", "1s", "--hold-timeout", "5s"])
        .arg("--addr-file")
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
        .reaped();
    c.wait(|_| addr_file.exists(), "the gateway");
    let addr = std::fs::read_to_string(&addr_file).expect("addr");
    let addr = addr.trim().to_string();
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http_to(&mut conn, "counter.example", "POST", "/inc/k").1,
        "1\n"
    );
    let pids = crate::faults::instance_pids(&c, "alpha");
    assert_eq!(pids.len(), 1);
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, &pids[0].to_string()])
            .status();
    };
    // Hung: the kernel still accepts, nobody answers.
    signal("-STOP");
    let t = Instant::now();
    let (status, body, _) = http_to(&mut conn, "counter.example", "GET", "/total");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("counter did not answer"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    signal("-CONT");
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    assert_eq!(
        http_to(&mut conn, "counter.example", "GET", "/count/k").1,
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
                let mut s = std::net::TcpStream::connect(&addr).expect("connect");
                http_to(&mut s, "counter.example", "GET", "/count/k")
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
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let (g, addr) = start_gateway(&c, "eu-west");
    const SIZE: u64 = 64 << 20;
    let byte = |i: u64| (i.wrapping_mul(2654435761) >> 13) as u8;
    // Up: 64 MiB sent in pieces; the service answers its length and checksum.
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
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
    let mut head = Vec::new();
    let mut one = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut one).expect("answer"), 1);
        head.push(one[0]);
    }
    let mut answer = String::new();
    let want = format!("{SIZE} {sum}\n");
    let mut rest = vec![0u8; want.len()];
    s.read_exact(&mut rest).expect("answer body");
    answer.push_str(&text(&rest));
    assert!(text(&head).starts_with("HTTP/1.1 200"), "{}", text(&head));
    assert_eq!(answer, want);
    // Down: 64 MiB, checked as they come.
    let (status, _, head) = {
        s.write_all(
            format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: counter.example\r\n\r\n").as_bytes(),
        )
        .expect("send");
        let mut h = Vec::new();
        while !h.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut one).expect("answer"), 1);
            h.push(one[0]);
        }
        let h = text(&h);
        (h[9..12].to_string(), (), h)
    };
    assert_eq!(status, "200", "{head}");
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
    let peak = peak_rss(g.id());
    assert!(peak < 48 << 20, "the gateway peaked at {} MiB", peak >> 20);
}

#[test]
fn only_workloads_the_gateways_route_to_are_quiesced_before_they_stop() {
    let c = cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
        .start();
    let (_g, _addr) = start_gateway(&c, "eu-west");
    c.wait(
        |c| {
            c.json(&["gateways", "-o", "json"])
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
        "the gateway to follow the controller",
    );
    let work = tempfile::tempdir().expect("tempdir");
    deploy_counter(&c, work.path());
    let p = fixture_profile(work.path(), "plain", "ticker", &["400", "20", "1"], "");
    deploy_running(&c, &p, "plain");
    for name in ["counter", "plain"] {
        let from = c.workload(name)["node"].as_str().expect("node").to_string();
        let m = c.json(&["migrate", name, "--to", other(&from), "-o", "json"]);
        assert_eq!(m["outcome"], "committed", "{m}");
    }
    let all = c.json(&["migrations", "-o", "json"]);
    let quiesced = |name: &str| {
        all.as_array()
            .and_then(|a| a.iter().find(|m| m["workload"] == name))
            .map(|m| m["quiesce"].clone())
    };
    assert_eq!(quiesced("counter"), Some(serde_json::json!(true)), "{all}");
    assert_eq!(quiesced("plain"), Some(serde_json::json!(false)), "{all}");
}
