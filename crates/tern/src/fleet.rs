//! The fleet commands: `tern controller`, `tern agent`, `tern up`/`down`, and the client side of
//! `deploy`, `ps`, `nodes`, `logs`, `stop`, `rm`, `inspect`. The cluster is found through the
//! context file `$TERN_HOME/context.json` that `tern up` writes (or `--controller`/`--token`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tern_api::{
    DeployReply, ErrorReply, FileBlob, LogsReply, MigrateRequest, Migration, Node, Stream,
    Workload, WorkloadSpec, WorkloadStatus,
};

use tern_profile::format_size;

use crate::cli::tern_home;

/// Where the CLI finds the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterContext {
    pub controller: String,
    pub token: String,
    /// Processes started by `tern up --detach`, for `tern down`.
    #[serde(default)]
    pub pids: Vec<u32>,
}

fn context_path() -> Result<PathBuf> {
    Ok(tern_home()?.join("context.json"))
}

pub fn load_context(controller: Option<String>, token: Option<String>) -> Result<ClusterContext> {
    if let (Some(c), Some(t)) = (&controller, &token) {
        return Ok(ClusterContext {
            controller: c.clone(),
            token: t.clone(),
            pids: Vec::new(),
        });
    }
    let path = context_path()?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no cluster: {} is missing (start one with `tern up`, or give --controller and --token)",
            path.display()
        )
    })?;
    let mut ctx: ClusterContext =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if let Some(c) = controller {
        ctx.controller = c;
    }
    if let Some(t) = token {
        ctx.token = t;
    }
    Ok(ctx)
}

/// A blocking client of the controller's API.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    pub fn new(ctx: &ClusterContext) -> Result<Api> {
        Ok(Api {
            base: ctx.controller.trim_end_matches('/').to_string(),
            token: ctx.token.clone(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        })
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("cannot reach the controller at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().unwrap_or_default();
        let msg = serde_json::from_slice::<ErrorReply>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        bail!("{msg} ({status})")
    }

    pub fn get<R: serde::de::DeserializeOwned>(&self, path: &str) -> Result<R> {
        Ok(self
            .send(self.http.get(format!("{}{path}", self.base)))?
            .json()?)
    }

    pub fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R> {
        Ok(self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))?
            .json()?)
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.send(self.http.delete(format!("{}{path}", self.base)))?;
        Ok(())
    }

    pub fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        let d = tern_snapshot::digest(&bytes);
        self.send(
            self.http
                .put(format!("{}/v1/blobs/{d}", self.base))
                .body(bytes),
        )?;
        Ok(d)
    }
}

pub fn controller(config: tern_controller::Config) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let data = config.data_dir.clone();
    rt.block_on(async move {
        let c = tern_controller::Controller::start(config)
            .await
            .context("starting the controller")?;
        // `tern up` waits for this file to learn the address.
        let url = c.url();
        std::fs::write(data.join("url"), &url).context("writing the url file")?;
        eprintln!(
            "tern controller: listening on {url} (token in {})",
            data.join("token").display()
        );
        wait_for_signal().await;
        c.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `tern gateway`: serve until SIGINT or SIGTERM.
pub fn gateway(config: tern_gateway::Config, addr_file: Option<PathBuf>) -> Result<ExitCode> {
    // One event loop, as an nginx worker: measured 26.5k requests/s against 20.4k for Tokio's
    // work-stealing pool on two vCPUs (whose thread hand-offs cost more than they bring when
    // the load generator and the service share the cores). One loop per core (SO_REUSEPORT)
    // is the way to more cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let region = config.region.clone();
        let g = tern_gateway::start(config)
            .await
            .context("starting the gateway")?;
        if let Some(f) = &addr_file {
            crate::instance::write_atomically(f, &g.addr.to_string())?;
        }
        eprintln!("tern gateway: listening on {} (region {region})", g.addr);
        wait_for_signal().await;
        drop(g);
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub struct AgentArgs {
    pub controller: String,
    pub token: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: PathBuf,
    pub address: String,
    pub delays: Option<PathBuf>,
    pub cpu_measure: tern_agent::CpuMeasure,
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
}

/// Read a delay table (`--delays`).
pub fn read_delays(path: &Path) -> Result<tern_profile::DelayTable> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(tern_profile::parse_delays(
        &path.display().to_string(),
        &text,
    )?)
}

pub fn agent(a: AgentArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let delays = match &a.delays {
        Some(f) => read_delays(f)?,
        None => Default::default(),
    };
    if a.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        bail!("--cpus must be a positive number");
    }
    let capacity = match (a.cpus, a.memory) {
        (None, None) => None,
        (cpus, memory) => {
            let machine = tern_agent::machine_capacity();
            Some(tern_api::Capacity {
                cpus: cpus.unwrap_or(machine.cpus),
                memory: memory.unwrap_or(machine.memory),
            })
        }
    };
    let config = tern_agent::Config {
        controller: a.controller,
        token: a.token,
        name: a.name,
        labels: a.labels,
        data_dir: a.data,
        address: a.address,
        tern_exe: std::env::current_exe().context("finding the tern executable")?,
        capacity,
        heartbeat: Duration::from_secs(1),
        delays: Arc::new(delays),
        cpu_measure: a.cpu_measure,
    };
    tern_agent::run(config, stop)?;
    Ok(ExitCode::SUCCESS)
}

pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("label {part:?}: expected key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// The local cluster's nodes: regions and costs differ so that placement has a choice.
const REGIONS: [(&str, &str); 3] = [
    ("eu-west", "0.12"),
    ("us-east", "0.08"),
    ("ap-south", "0.05"),
];

pub fn up(nodes: usize, detach: bool, delays: Option<&Path>) -> Result<ExitCode> {
    // Read it here so that a bad table is refused before anything starts.
    let delays = match delays {
        Some(f) => {
            read_delays(f)?;
            Some(std::fs::canonicalize(f)?)
        }
        None => None,
    };
    let delay_args: Vec<std::ffi::OsString> = match &delays {
        Some(f) => vec!["--delays".into(), f.clone().into_os_string()],
        None => Vec::new(),
    };
    let home = tern_home()?;
    let base = home.join("cluster");
    let exe = std::env::current_exe()?;
    let cdata = base.join("controller");
    std::fs::create_dir_all(&cdata)?;
    let _ = std::fs::remove_file(cdata.join("url"));
    let mut children = Vec::new();
    let log = |name: &str| -> Result<std::fs::File> {
        Ok(std::fs::File::create(base.join(format!("{name}.log")))?)
    };
    let controller = std::process::Command::new(&exe)
        .args(["controller", "--data"])
        .arg(&cdata)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(log("controller")?)
        .stderr(log("controller")?)
        .spawn()
        .context("starting the controller")?;
    children.push(controller);
    let url = wait_for_file(&cdata.join("url"))?;
    let token = std::fs::read_to_string(cdata.join("token"))?
        .trim()
        .to_string();
    for i in 0..nodes {
        let (region, cost) = REGIONS[i % REGIONS.len()];
        let name = format!("node-{}", i + 1);
        let labels = format!(
            "region={region},zone={region}-a,provider=local,arch={},cost={cost}",
            std::env::consts::ARCH
        );
        let child = std::process::Command::new(&exe)
            .args([
                "agent",
                "--controller",
                &url,
                "--token",
                &token,
                "--name",
                &name,
                "--labels",
                &labels,
                "--data",
            ])
            .arg(base.join(&name))
            // The nodes share this machine: each counts its own instances' CPU.
            .args(["--cpu-measure", "instances"])
            .args(&delay_args)
            .stdout(log(&name)?)
            .stderr(log(&name)?)
            .spawn()
            .with_context(|| format!("starting agent {name}"))?;
        children.push(child);
    }
    // One gateway per region of the cluster, on a port of its own.
    let mut gateways = Vec::new();
    for (region, _) in REGIONS.iter().take(nodes.min(REGIONS.len())) {
        let addr_file = base.join(format!("gateway-{region}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let name = format!("gateway-{region}");
        let child = std::process::Command::new(&exe)
            .args(["gateway", "--listen", "127.0.0.1:0", "--region", region])
            .args(["--controller", &url, "--token", &token, "--addr-file"])
            .arg(&addr_file)
            .args(&delay_args)
            .stdout(log(&name)?)
            .stderr(log(&name)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        children.push(child);
        gateways.push((region, addr_file));
    }
    let ctx = ClusterContext {
        controller: url.clone(),
        token,
        pids: if detach {
            children.iter().map(|c| c.id()).collect()
        } else {
            Vec::new()
        },
    };
    std::fs::write(context_path()?, serde_json::to_vec_pretty(&ctx)?)?;
    let api = Api::new(&ctx)?;
    for _ in 0..100 {
        let n: Vec<Node> = api.get("/v1/nodes")?;
        if n.len() >= nodes {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("controller: {url}");
    println!(
        "nodes:      {nodes} ({})",
        REGIONS
            .iter()
            .take(nodes.min(3))
            .map(|r| r.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (region, addr_file) in &gateways {
        println!(
            "gateway:    {} ({region})",
            wait_for_file(addr_file)?.trim()
        );
    }
    println!("context:    {}", context_path()?.display());
    if detach {
        println!("stop with:  tern down");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Ctrl-C stops the cluster");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Agents first (they stop their instances), then the controller.
    for c in children.iter_mut().rev() {
        terminate(c.id());
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(context_path()?);
    Ok(ExitCode::SUCCESS)
}

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

fn wait_for_file(path: &Path) -> Result<String> {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return Ok(s.trim().to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "the controller did not start (see {})",
        path.with_file_name("../controller.log").display()
    )
}

pub fn down() -> Result<ExitCode> {
    let ctx = load_context(None, None)?;
    if ctx.pids.is_empty() {
        bail!("the cluster in the context was not started with `tern up --detach`");
    }
    for pid in ctx.pids.iter().rev() {
        terminate(*pid);
    }
    std::fs::remove_file(context_path()?)?;
    println!("stopped {} processes", ctx.pids.len());
    Ok(ExitCode::SUCCESS)
}

pub fn deploy(ctx: &ClusterContext, profile_path: &Path) -> Result<ExitCode> {
    let text = std::fs::read_to_string(profile_path)
        .with_context(|| format!("reading {}", profile_path.display()))?;
    let name = profile_path.display().to_string();
    let profile = tern_profile::parse(&name, &text)?;
    let dir = profile_path.parent().unwrap_or(Path::new("."));
    let tty = std::io::stderr().is_terminal();
    let say = |s: &str| {
        if tty {
            eprintln!("{s}");
        }
    };
    let api = Api::new(ctx)?;
    let module_path = dir.join(&profile.module);
    let module = std::fs::read(&module_path)
        .with_context(|| format!("{name}: module {}", module_path.display()))?;
    say(&format!(
        "uploading {} ({} bytes)",
        profile.module,
        module.len()
    ));
    let module = api.put_blob(module)?;
    let mut files = Vec::new();
    for f in &profile.files {
        let p = dir.join(&f.host);
        let bytes = std::fs::read(&p).with_context(|| format!("{name}: file {}", p.display()))?;
        say(&format!("uploading {} ({} bytes)", f.host, bytes.len()));
        files.push(FileBlob {
            guest: f.guest.clone(),
            digest: api.put_blob(bytes)?,
        });
    }
    let spec = WorkloadSpec {
        profile,
        module,
        files,
    };
    let reply: DeployReply = api.post("/v1/workloads", &spec)?;
    let w = reply.workload;
    if !reply.changed {
        println!("{}: unchanged ({})", w.name, status(&w));
        return Ok(ExitCode::SUCCESS);
    }
    say("placing and starting");
    // Follow it until it runs or settles.
    let mut last = w;
    for _ in 0..100 {
        if !matches!(
            last.status,
            tern_api::WorkloadStatus::Pending | tern_api::WorkloadStatus::Starting
        ) || (last.status == tern_api::WorkloadStatus::Pending
            && last.reason.as_deref() != Some("waiting for placement"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        last = api.get(&format!("/v1/workloads/{}", last.name))?;
    }
    println!(
        "{}: {}{}",
        last.name,
        status(&last),
        last.node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn status(w: &Workload) -> String {
    serde_json::to_value(w.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn ps(ctx: &ClusterContext, json: bool) -> Result<ExitCode> {
    let ws: Vec<Workload> = Api::new(ctx)?.get("/v1/workloads")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ws)?);
        return Ok(ExitCode::SUCCESS);
    }
    table(
        &["NAME", "STATUS", "NODE", "RESTARTS", "REASON"],
        ws.iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    status(w),
                    w.node.clone().unwrap_or_else(|| "-".into()),
                    w.restarts.to_string(),
                    w.reason.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn gateways(ctx: &ClusterContext, json: bool) -> Result<ExitCode> {
    let gs: Vec<tern_api::GatewayInfo> = Api::new(ctx)?.get("/v1/gateways")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&gs)?);
        return Ok(ExitCode::SUCCESS);
    }
    table(
        &["REGION", "ADDRESS", "ID"],
        gs.iter()
            .map(|g| vec![g.region.clone(), g.address.clone(), g.id.clone()])
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn nodes(ctx: &ClusterContext, json: bool) -> Result<ExitCode> {
    let ns: Vec<Node> = Api::new(ctx)?.get("/v1/nodes")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ns)?);
        return Ok(ExitCode::SUCCESS);
    }
    table(
        &[
            "NAME",
            "STATUS",
            "REGION",
            "CPU",
            "MEMORY FREE",
            "INSTANCES",
        ],
        ns.iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    {
                        let status = serde_json::to_value(n.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        if n.draining {
                            format!("{status},drained")
                        } else {
                            status
                        }
                    },
                    n.labels
                        .get("region")
                        .cloned()
                        .unwrap_or_else(|| "-".into()),
                    format!("{:.0}%", n.usage.cpu_load * 100.0),
                    format_size(n.usage.memory_free),
                    n.instances.len().to_string(),
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logs(ctx: &ClusterContext, workload: &str, follow: bool) -> Result<ExitCode> {
    let api = Api::new(ctx)?;
    let mut from = 0u64;
    loop {
        let r: LogsReply = api.get(&format!("/v1/workloads/{workload}/logs?from={from}"))?;
        for c in &r.chunks {
            match c.stream {
                Stream::Stdout => {
                    print!("{}", c.data);
                    let _ = std::io::stdout().flush();
                }
                Stream::Stderr => eprint!("{}", c.data),
            }
        }
        from = r.next;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if r.chunks.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn stop(ctx: &ClusterContext, workload: &str) -> Result<ExitCode> {
    let w: Workload = Api::new(ctx)?.post(&format!("/v1/workloads/{workload}/stop"), &())?;
    println!("{}: {}", w.name, status(&w));
    Ok(ExitCode::SUCCESS)
}

pub fn rm(ctx: &ClusterContext, workload: &str) -> Result<ExitCode> {
    Api::new(ctx)?.delete(&format!("/v1/workloads/{workload}"))?;
    println!("{workload}: removed");
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(ctx: &ClusterContext, name: &str) -> Result<ExitCode> {
    let api = Api::new(ctx)?;
    let v: serde_json::Value = match api.get::<serde_json::Value>(&format!("/v1/workloads/{name}"))
    {
        Ok(mut v) => {
            // What its gateways saw over the last minute: rate, errors, latency, and where
            // the requests came from.
            if let Ok(t) = api.get::<serde_json::Value>(&format!("/v1/workloads/{name}/traffic")) {
                v["traffic"] = t;
            }
            v
        }
        Err(_) => api
            .get(&format!("/v1/nodes/{name}"))
            .with_context(|| format!("no workload or node named {name:?}"))?,
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

/// `tern migrate` and `tern clone`: ask for the move, then (unless `no_wait`) follow it with a
/// progress bar on a terminal and print its report.
pub fn migrate(
    ctx: &ClusterContext,
    workload: &str,
    req: &MigrateRequest,
    clone: bool,
    no_wait: bool,
    json: bool,
) -> Result<ExitCode> {
    let api = Api::new(ctx)?;
    let verb = if clone { "clone" } else { "migrate" };
    let m: Migration = api.post(&format!("/v1/workloads/{workload}/{verb}"), req)?;
    if no_wait {
        if json {
            println!("{}", serde_json::to_string_pretty(&m)?);
        } else {
            println!(
                "{}: {} {} → {} ({})",
                m.id, m.workload, m.from, m.to, m.phase
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stderr().is_terminal() && !json;
    let m = loop {
        let m: Migration = api.get(&format!("/v1/migrations/{}", m.id))?;
        if tty {
            let width = 24;
            let filled = (m.round as usize).min(width);
            eprint!(
                "\r{} → {} [{}{}] {:<13} round {:>2}  {:>9}",
                m.from,
                m.to,
                "#".repeat(filled),
                ".".repeat(width - filled),
                m.phase,
                m.round,
                format_size(m.bytes)
            );
        }
        if m.outcome.is_some() {
            break m;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    if tty {
        eprintln!();
    }
    // The source's own figures arrive with its next heartbeat after the commit.
    let m = if m.committed() && m.total_ms == 0.0 {
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut m = m;
        while m.total_ms == 0.0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(30));
            m = api.get(&format!("/v1/migrations/{}", m.id))?;
        }
        m
    } else {
        m
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        print_migration(&m);
    }
    Ok(if m.committed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_migration(m: &Migration) {
    println!(
        "{} {}: {} → {}: {}",
        m.id,
        m.workload,
        m.from,
        m.to,
        m.state()
    );
    if let (Some(step), Some(reason)) = (&m.failed_step, &m.reason) {
        println!("  failed at {step}: {reason}");
    }
    for (i, r) in m.rounds.iter().enumerate() {
        println!(
            "  round {:>2}  {:>10} raw  {:>10} wire  {:>8.1} ms{}",
            i,
            format_size(r.raw_bytes),
            format_size(r.wire_bytes),
            r.ms,
            if i + 1 == m.rounds.len() {
                "  stop-and-copy"
            } else {
                ""
            }
        );
    }
    if m.committed() {
        println!(
            "  pause {:.2} ms, total {:.1} ms, {} on the wire ({} raw) at {:.0} MiB/s; written pages found by {}",
            m.pause_ms,
            m.total_ms,
            format_size(m.bytes),
            format_size(m.bytes_raw),
            m.bandwidth_mib_s,
            m.tracker
        );
    }
}

pub fn migrations(ctx: &ClusterContext, json: bool) -> Result<ExitCode> {
    let ms: Vec<Migration> = Api::new(ctx)?.get("/v1/migrations")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ms)?);
        return Ok(ExitCode::SUCCESS);
    }
    table(
        &[
            "ID", "WORKLOAD", "FROM", "TO", "OUTCOME", "PAUSE", "TOTAL", "BYTES", "WHY",
        ],
        ms.iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.workload.clone(),
                    m.from.clone(),
                    m.to.clone(),
                    m.state().to_string(),
                    format!("{:.1}ms", m.pause_ms),
                    format!("{:.0}ms", m.total_ms),
                    format_size(m.bytes),
                    match (&m.failed_step, &m.reason) {
                        (Some(s), Some(r)) => format!("{s}: {r}"),
                        _ => m.why.clone(),
                    },
                ]
            })
            .collect(),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn drain(ctx: &ClusterContext, node: &str, no_wait: bool) -> Result<ExitCode> {
    let api = Api::new(ctx)?;
    let _: Node = api.post(&format!("/v1/nodes/{node}/drain"), &())?;
    println!("{node}: drained (no new workloads); moving its workloads off");
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let mut reported: Vec<String> = Vec::new();
    loop {
        let ms: Vec<Migration> = api.get("/v1/migrations")?;
        for m in &ms {
            if m.from != node || m.outcome.is_none() || reported.contains(&m.id) {
                continue;
            }
            if m.why.starts_with("drain") {
                print_migration(m);
            }
            reported.push(m.id.clone());
        }
        let ws: Vec<Workload> = api.get("/v1/workloads")?;
        let left: Vec<&Workload> = ws
            .iter()
            .filter(|w| {
                w.node.as_deref() == Some(node)
                    && matches!(w.status, WorkloadStatus::Running | WorkloadStatus::Starting)
            })
            .collect();
        if left.is_empty() {
            println!(
                "{node}: empty after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn undrain(ctx: &ClusterContext, node: &str) -> Result<ExitCode> {
    let _: Node = Api::new(ctx)?.post(&format!("/v1/nodes/{node}/undrain"), &())?;
    println!("{node}: schedulable again");
    Ok(ExitCode::SUCCESS)
}
