//! A real cluster on this machine: a controller, agents and gateways, each its own `tern`
//! process on 127.0.0.1, driven through the `tern` CLI as users drive it. Everything it
//! started stops when it is dropped, also when a test fails half-way.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::ending::{assert_ends_alike, Ending};
use crate::profile::Profile;
use crate::tern::{stop, succeeded, text, wait_for_content, wait_until, Tern};

/// How long a process may take to start (write its address) before a test gives up.
const START: Duration = Duration::from_secs(30);

/// How long [`Cluster::wait`] waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// What a cluster is made of; [`Builder::start`] starts it. Nothing is added that is not
/// asked for, except `--placement-paused` (see [`Builder::placement_running`]).
#[derive(Debug, Clone)]
pub struct Builder {
    tern: Tern,
    nodes: Vec<(String, String)>,
    controller_args: Vec<String>,
    down_after: Option<String>,
    max_blob_bytes: Option<usize>,
    every_agent_args: Vec<String>,
    agent_args: Vec<(String, Vec<String>)>,
    agent_env: Vec<(String, String)>,
    fault_files: bool,
    placement_paused: bool,
    gateways: Vec<(String, Vec<String>)>,
}

impl Builder {
    /// A node `name` with `labels` (`region=eu-west,cost=0.1`).
    pub fn node(mut self, name: &str, labels: &str) -> Builder {
        self.nodes.push((name.into(), labels.into()));
        self
    }

    /// Arguments of the controller (such as `--rebalance-every 500ms`).
    pub fn controller_args(mut self, args: &[&str]) -> Builder {
        self.controller_args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The controller's `--down-after` (how long without a heartbeat before a node is down).
    pub fn down_after(mut self, duration: &str) -> Builder {
        self.down_after = Some(duration.into());
        self
    }

    /// The controller's `--max-blob-bytes` (the largest module or file it accepts).
    pub fn max_blob_bytes(mut self, bytes: usize) -> Builder {
        self.max_blob_bytes = Some(bytes);
        self
    }

    /// Arguments of every agent, also of those started later.
    pub fn every_agent_args(mut self, args: &[&str]) -> Builder {
        self.every_agent_args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Arguments of the agent of node `name` (such as `--memory 256MiB`), also when it is
    /// restarted.
    pub fn agent_args(mut self, name: &str, args: &[&str]) -> Builder {
        self.agent_args
            .push((name.into(), args.iter().map(|a| a.to_string()).collect()));
        self
    }

    /// An environment variable of every agent (and so of the instances it starts).
    pub fn agent_env(mut self, key: &str, value: &str) -> Builder {
        self.agent_env.push((key.into(), value.into()));
        self
    }

    /// Each agent's instances look for a fault to inject in [`Cluster::fault_file`] (see
    /// tern-runtime's `fault.rs`); nothing is armed until a test writes that file.
    pub fn fault_files(mut self) -> Builder {
        self.fault_files = true;
        self
    }

    /// Let the scheduler move workloads from the start. By default placement is paused: only
    /// the moves a test or a benchmark makes happen, until it says `tern placement resume`.
    pub fn placement_running(mut self) -> Builder {
        self.placement_paused = false;
        self
    }

    /// A gateway for `region` with `args`, started once the nodes are up and stopped with the
    /// cluster; its address is [`Cluster::gateway_addr`].
    pub fn gateway(mut self, region: &str, args: &[&str]) -> Builder {
        self.gateways
            .push((region.into(), args.iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Start the controller, then the agents, and wait until every node is up; then the
    /// gateways.
    pub fn start(self) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            controller: None,
            agents: Vec::new(),
            gateways: Vec::new(),
            url: String::new(),
            token: String::new(),
            started: AtomicUsize::new(0),
            spec: self,
        };
        c.start_controller();
        let nodes = c.spec.nodes.clone();
        for (name, labels) in &nodes {
            c.add_node(name, labels);
        }
        c.wait(|c| c.nodes_up() == nodes.len(), "all nodes up");
        for (region, args) in c.spec.gateways.clone() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let g = c.start_gateway(&region, &args);
            c.gateways.push((region, g));
        }
        c
    }

    /// The controller's arguments after `--data` and `--listen`.
    fn controller_command_args(&self) -> Vec<String> {
        let mut args = self.controller_args.clone();
        if let Some(d) = &self.down_after {
            args.extend(["--down-after".to_string(), d.clone()]);
        }
        if let Some(b) = self.max_blob_bytes {
            args.extend(["--max-blob-bytes".to_string(), b.to_string()]);
        }
        if self.placement_paused {
            args.push("--placement-paused".into());
        }
        args
    }
}

struct Agent {
    name: String,
    labels: String,
    /// None while it is down (killed and not restarted).
    child: Option<Child>,
}

/// A running cluster; see [`Cluster::builder`].
pub struct Cluster {
    /// What it was built of; restarted processes start the same way.
    spec: Builder,
    dir: tempfile::TempDir,
    controller: Option<Child>,
    agents: Vec<Agent>,
    gateways: Vec<(String, Gateway)>,
    url: String,
    token: String,
    /// How many gateways were started, for their file names.
    started: AtomicUsize,
}

impl Cluster {
    /// A cluster of `tern` processes (with `tern`'s home, which holds the compiled modules).
    pub fn builder(tern: Tern) -> Builder {
        Builder {
            tern,
            nodes: Vec::new(),
            controller_args: Vec::new(),
            down_after: None,
            max_blob_bytes: None,
            every_agent_args: Vec::new(),
            agent_args: Vec::new(),
            agent_env: Vec::new(),
            fault_files: false,
            placement_paused: true,
            gateways: Vec::new(),
        }
    }

    /// The cluster's own directory: the controller's and each node's data, the logs
    /// (`controller.log`, `<node>.log`, `gateway-<n>.log`) and the profiles it deployed.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory of node `name`'s agent.
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn data(&self) -> PathBuf {
        self.dir().join("controller")
    }

    /// A log file of the cluster's, appended to (a restarted process goes on in the same one).
    fn log(&self, name: &str) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join(name))
            .expect("log file")
    }

    /// Start the controller (again, after [`Cluster::kill_controller`]: on the same address,
    /// where the agents look for it) and wait until it listens.
    pub fn start_controller(&mut self) {
        let _ = std::fs::remove_file(self.data().join("url"));
        let listen = match self.url.strip_prefix("http://") {
            Some(addr) => addr.to_string(),
            None => "127.0.0.1:0".to_string(),
        };
        let child = self
            .spec
            .tern
            .command()
            .args(["controller", "--data"])
            .arg(self.data())
            .args(["--listen", &listen])
            .args(self.spec.controller_command_args())
            .stdout(Stdio::null())
            .stderr(self.log("controller.log"))
            .spawn()
            .expect("controller starts");
        self.controller = Some(child);
        self.url = wait_for_content(
            &self.data().join("url"),
            START,
            "the controller to start",
            || self.tail("controller.log"),
        );
        self.token = std::fs::read_to_string(self.data().join("token"))
            .expect("token")
            .trim()
            .into();
    }

    /// Kill the controller (-9): a crash; its agents and their instances go on.
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where a fault for the instances of node `name` is armed (see
    /// [`Builder::fault_files`]).
    pub fn fault_file(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.fault"))
    }

    /// The command that starts node `name`'s agent with `labels` (not started: tests of what
    /// an agent refuses run it themselves).
    pub fn agent_command(&self, name: &str, labels: &str) -> Command {
        let spec = &self.spec;
        let mut cmd = spec.tern.command();
        cmd.args(["agent", "--controller", &self.url, "--token", &self.token])
            .args(["--name", name, "--labels", labels, "--data"])
            .arg(self.node_dir(name));
        if spec.fault_files {
            cmd.env("TERN_FAULT_FILE", self.fault_file(name));
        }
        cmd.envs(spec.agent_env.iter().map(|(k, v)| (k, v)))
            .args(&spec.every_agent_args);
        for (n, args) in &spec.agent_args {
            if n == name {
                cmd.args(args);
            }
        }
        cmd
    }

    fn spawn_agent(&self, name: &str, labels: &str) -> Child {
        self.agent_command(name, labels)
            .stdout(Stdio::null())
            .stderr(self.log(&format!("{name}.log")))
            .spawn()
            .expect("agent starts")
    }

    /// Start an agent for a new node (it does not wait for the node to be up).
    pub fn add_node(&mut self, name: &str, labels: &str) {
        assert!(
            self.agents.iter().all(|a| a.name != name),
            "node {name} was added before"
        );
        let child = self.spawn_agent(name, labels);
        self.agents.push(Agent {
            name: name.into(),
            labels: labels.into(),
            child: Some(child),
        });
    }

    fn agent(&mut self, name: &str) -> &mut Agent {
        let i = self.agent_index(name);
        &mut self.agents[i]
    }

    fn agent_index(&self, name: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this cluster"))
    }

    /// Kill node `name`'s agent (-9): a crash, not a shutdown; its instances are orphaned.
    pub fn kill_agent(&mut self, name: &str) {
        let mut child = self.agent(name).child.take().expect("the agent runs");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start node `name`'s agent again, with the labels and arguments it had.
    pub fn restart_agent(&mut self, name: &str) {
        let labels = self.agent(name).labels.clone();
        assert!(
            self.agent(name).child.is_none(),
            "{name}'s agent still runs"
        );
        let child = self.spawn_agent(name, &labels);
        self.agent(name).child = Some(child);
    }

    /// The pid of node `name`'s agent.
    pub fn agent_pid(&self, name: &str) -> u32 {
        let agent = &self.agents[self.agent_index(name)];
        agent.child.as_ref().expect("the agent runs").id()
    }

    /// A command for `tern args… --controller <url> --token <token>` (not started).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.spec.tern.command();
        cmd.args(args)
            .args(["--controller", &self.url, "--token", &self.token]);
        cmd
    }

    /// Run `tern args…` against the cluster.
    pub fn tern(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("tern runs")
    }

    /// Run `tern args…`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.tern(args))
    }

    /// The JSON that `tern args…` (which must succeed) prints; give `-o json` in `args`.
    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("json output")
    }

    /// The JSON that `tern args… -o json` prints, whatever its exit code (Null if none).
    pub fn try_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_slice(&self.tern(&a).stdout).unwrap_or_default()
    }

    /// `tern <what> -o json`, which lists things.
    fn list(&self, what: &str) -> Vec<Value> {
        match self.json(&[what, "-o", "json"]) {
            Value::Array(a) => a,
            v => panic!("tern {what} -o json printed {v}, not a list"),
        }
    }

    /// `tern ps -o json`: every workload.
    pub fn workloads(&self) -> Vec<Value> {
        self.list("ps")
    }

    /// Workload `name` as `tern ps -o json` lists it (Null if it is not listed).
    pub fn workload(&self, name: &str) -> Value {
        find(self.workloads(), "name", name).unwrap_or_default()
    }

    /// The node workload `name` is on, if any.
    pub fn node_of(&self, name: &str) -> Option<String> {
        self.workload(name)["node"].as_str().map(str::to_string)
    }

    /// `tern nodes -o json`: every node.
    pub fn nodes(&self) -> Vec<Value> {
        self.list("nodes")
    }

    /// Node `name` as `tern nodes -o json` lists it.
    pub fn node(&self, name: &str) -> Value {
        find(self.nodes(), "name", name).unwrap_or_else(|| panic!("node {name} is not listed"))
    }

    /// How many nodes are up (0 while the controller does not answer).
    pub fn nodes_up(&self) -> usize {
        let out = self.tern(&["nodes", "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .map(|a| a.iter().filter(|n| n["status"] == "up").count())
            .unwrap_or(0)
    }

    /// `tern migrations -o json`: every migration, the first first.
    pub fn migrations(&self) -> Vec<Value> {
        self.list("migrations")
    }

    /// The first migration of workload `name` (Null before there is one).
    pub fn migration_of(&self, name: &str) -> Value {
        find(self.migrations(), "workload", name).unwrap_or_default()
    }

    /// `tern migrate <name> --to <to> -o json <extra…>`, whatever its outcome.
    pub fn migrate(&self, name: &str, to: &str, extra: &[&str]) -> Migrated {
        let mut args = vec!["migrate", name, "--to", to, "-o", "json"];
        args.extend_from_slice(extra);
        Migrated::of(&self.tern(&args))
    }

    /// Move workload `name` to node `to`, which must succeed; the migration's report.
    pub fn migrate_committed(&self, name: &str, to: &str) -> Value {
        let m = self.json(&["migrate", name, "--to", to, "-o", "json"]);
        assert_eq!(m["outcome"], "committed", "{name} to {to}: {m}");
        m
    }

    /// What the workload printed so far (its standard output, through the controller).
    pub fn logs(&self, name: &str) -> String {
        text(&self.tern(&["logs", name]).stdout)
    }

    /// Write `profile` in the cluster's directory (`profiles/<name>/tern.toml`); its path.
    pub fn write(&self, profile: &Profile) -> PathBuf {
        profile.write(&self.dir().join("profiles"))
    }

    /// Write and deploy `profile`, which must be accepted; what `tern deploy` said.
    pub fn deploy(&self, profile: &Profile) -> String {
        let p = self.write(profile);
        self.ok(&["deploy", &p.display().to_string()])
    }

    /// Deploy `profile` and wait until its workload runs.
    pub fn deploy_running(&self, profile: &Profile) {
        self.deploy(profile);
        self.wait_status(profile.name(), "running");
    }

    /// Wait until workload `name`'s status is `status`.
    pub fn wait_status(&self, name: &str, status: &str) {
        self.wait(
            |c| c.workload(name)["status"] == status,
            &format!("{name} {status}"),
        );
    }

    /// Wait until workload `name` has ended (exited or failed).
    pub fn wait_ended(&self, name: &str) {
        self.wait(
            |c| {
                let s = &c.workload(name)["status"];
                s == "exited" || s == "failed"
            },
            &format!("{name} to end"),
        );
    }

    /// Workload `name`'s exit code (None before it ends).
    pub fn exit_code(&self, name: &str) -> Option<i32> {
        self.workload(name)["exit_code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
    }

    /// The check most cluster tests end with: wait for workload `name` to end and for all its
    /// output to reach its logs; then its exit code and its output are byte for byte those of
    /// `want`, an unmoved run of the same program ([`Tern::unmoved`]), however often it moved.
    pub fn assert_ends_like(&self, name: &str, want: &Ending) {
        self.wait_ended(name);
        let len = want.stdout.as_ref().map_or(0, Vec::len);
        self.wait(
            |c| c.logs(name).len() >= len,
            &format!("all output of {name} ({len} bytes)"),
        );
        let got = Ending {
            code: self.exit_code(name),
            stdout: Some(self.logs(name).into_bytes()),
            ..Ending::default()
        };
        assert_ends_alike(name, &got, want);
    }

    /// Wait up to [`WAIT`] for `cond`.
    pub fn wait(&self, cond: impl Fn(&Cluster) -> bool, what: &str) {
        self.wait_for(WAIT, what, cond);
    }

    /// Wait up to `timeout` for `cond`; past it, panic with the migrations and the end of
    /// each log.
    pub fn wait_for(&self, timeout: Duration, what: &str, cond: impl Fn(&Cluster) -> bool) {
        wait_until(
            timeout,
            Duration::from_millis(100),
            what,
            || cond(self),
            || self.recent(),
        );
    }

    /// The cluster's recent state, for a failure message: its migrations and the last lines
    /// of the controller's and each agent's log.
    pub fn recent(&self) -> String {
        let mut s = String::new();
        for what in ["ps", "migrations"] {
            let out = self.tern(&[what]);
            s.push_str(&format!("\n--- tern {what} ---\n{}", text(&out.stdout)));
        }
        let logs = std::iter::once("controller".to_string())
            .chain(self.agents.iter().map(|a| a.name.clone()));
        for name in logs {
            s.push_str(&self.tail(&format!("{name}.log")));
        }
        s
    }

    /// The last lines of one of the cluster's logs, under a heading.
    fn tail(&self, log: &str) -> String {
        const LINES: usize = 30;
        let text = std::fs::read_to_string(self.dir().join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
        format!("\n--- {log} (last {LINES} lines) ---\n{tail}")
    }

    /// The pids of the processes running instances of this cluster (`tern run` or `tern
    /// receive` with a control socket) below `<dir>/<under>` (`""`: of any node).
    pub fn instance_pids(&self, under: &str) -> Vec<u32> {
        let dir = self.dir().join(under).to_string_lossy().into_owned();
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

    /// Start a gateway for `region` (`tern gateway --listen 127.0.0.1:0 --region <region>
    /// <args…>`) and wait until it listens; it stops when the handle is dropped.
    pub fn start_gateway(&self, region: &str, args: &[&str]) -> Gateway {
        self.start_gateway_on("127.0.0.1:0", region, args)
    }

    /// The same on address `listen` (such as that of a gateway that was there before).
    pub fn start_gateway_on(&self, listen: &str, region: &str, args: &[&str]) -> Gateway {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let addr_file = self.dir().join(format!("gateway-{n}.addr"));
        let child = self
            .command(&["gateway", "--listen", listen, "--region", region])
            .args(args)
            .arg("--addr-file")
            .arg(&addr_file)
            .stdout(Stdio::null())
            .stderr(self.log(&format!("gateway-{n}.log")))
            .spawn()
            .expect("gateway starts");
        let mut g = Gateway {
            child,
            addr: String::new(),
        };
        g.addr = wait_for_content(&addr_file, START, "the gateway to start", || {
            self.tail(&format!("gateway-{n}.log"))
        });
        g
    }

    /// The address of the gateway the builder started for `region`.
    pub fn gateway_addr(&self, region: &str) -> &str {
        self.gateways
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, g)| g.addr())
            .unwrap_or_else(|| panic!("no gateway for {region} in this cluster"))
    }
}

/// The first of `list` whose `key` is `value`.
fn find(list: Vec<Value>, key: &str, value: &str) -> Option<Value> {
    list.into_iter().find(|v| v[key] == value)
}

impl Drop for Cluster {
    /// Gateways, then agents (SIGTERM: each stops its instances), then the controller.
    fn drop(&mut self) {
        self.gateways.clear();
        for a in &mut self.agents {
            if let Some(child) = &mut a.child {
                stop(child, "-TERM", Duration::from_secs(20));
            }
        }
        if let Some(c) = &mut self.controller {
            stop(c, "-TERM", Duration::from_secs(5));
        }
    }
}

/// A gateway process; killed when dropped.
pub struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    /// The address it listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it (-9) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What `tern migrate … -o json` said: its exit code and report (Null if it printed none).
#[derive(Debug, Clone)]
pub struct Migrated {
    pub code: Option<i32>,
    pub report: Value,
    pub stderr: String,
}

impl Migrated {
    pub fn of(out: &Output) -> Migrated {
        Migrated {
            code: out.status.code(),
            report: serde_json::from_slice(&out.stdout).unwrap_or_default(),
            stderr: text(&out.stderr),
        }
    }
}
