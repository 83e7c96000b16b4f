//! Command-line surface: the flags users' scripts rely on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Run WebAssembly programs anywhere, and move them while they run"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// Checkpoint at the first safe point after this long (e.g. 250ms, 2s).
    #[arg(long, value_parser = parse_duration, requires = "checkpoint_to")]
    pub checkpoint_after: Option<Duration>,
    /// Where to write the snapshot (also on SIGUSR1).
    #[arg(long)]
    pub checkpoint_to: Option<PathBuf>,
    /// Put the module itself into the snapshot instead of only its digest.
    #[arg(long)]
    pub embed_module: bool,
    /// Compress memory pages (LZ4): a smaller file, but a resume must decompress every page
    /// instead of mapping the file.
    #[arg(long)]
    pub compress: bool,
    /// Largest size of the program's memory (e.g. 512MiB); growing beyond it fails.
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Take commands (live migration) on this Unix socket.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
    /// With --control: stop once nobody has watched the instance (`watch` on the control
    /// socket, as its agent does) for this long.
    #[arg(long, value_parser = parse_duration, requires = "control")]
    pub orphan_timeout: Option<Duration>,
    /// Write the program's exit code (or "trap", "error") to this file when it ends, for an
    /// agent that is not this process's parent.
    #[arg(long)]
    pub exit_file: Option<PathBuf>,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    tern_profile::parse_size(s).ok_or_else(|| format!("{s:?}: expected a size such as 512MiB"))
}

/// Listening sockets for a service: the program gets them as preopened sockets.
#[derive(clap::Args, Debug, Default)]
pub struct ServiceArgs {
    /// Listen on HOST:PORT (port 0: any free port) and give the socket to the program as a
    /// preopened socket, after the directories, in the order given. The program finds their
    /// descriptor numbers in TERN_LISTEN_FDS (comma-separated) and their count in LISTEN_FDS.
    #[arg(long = "tcplisten", value_name = "HOST:PORT")]
    pub tcplisten: Vec<std::net::SocketAddr>,
    /// Write the addresses actually listened on to this file, one per line, in order.
    #[arg(long, value_name = "FILE")]
    pub endpoints_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a WASI command module, optionally checkpointing it.
    Run {
        /// Environment variable for the program: K=V, or K to pass this process's value.
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Grant a host directory: HOST_DIR[::GUEST_DIR].
        #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
        dirs: Vec<String>,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// The module (.wasm).
        module: PathBuf,
        /// Arguments for the program (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Continue a snapshot in this process.
    Resume {
        /// Grant a host directory: HOST_DIR[::GUEST_DIR] (must cover the snapshot's preopens).
        #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
        dirs: Vec<String>,
        /// The module, when it is neither embedded nor in the local cache.
        #[arg(long)]
        module: Option<PathBuf>,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// The snapshot file.
        snapshot: PathBuf,
    },
    /// Receive a program by live migration and run it (the destination of `tern instance
    /// migrate`); it runs only once its source says go.
    Receive {
        /// Where to listen for the source.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Write the address actually listened on to this file.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Give up if no source connects within this long.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        accept_timeout: Duration,
        /// Grant a host directory: HOST_DIR[::GUEST_DIR] (must cover the program's preopens).
        #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
        dirs: Vec<String>,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// The program's module (.wasm).
        module: PathBuf,
    },
    /// Act on a running instance through its control socket.
    Instance {
        #[command(subcommand)]
        command: InstanceCmd,
    },
    /// Work with snapshot files.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Run a bundled program, checkpoint it, resume it in a new process, and check the result
    /// equals an uninterrupted run.
    Demo {
        /// Checkpoint this long after the start (default: half of the uninterrupted run).
        #[arg(long, value_parser = parse_duration)]
        after: Option<Duration>,
    },
    /// Run the control plane.
    Controller {
        /// Data directory (store, blobs, token).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7420")]
        listen: std::net::SocketAddr,
        /// Mark a node down after this long without a heartbeat.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        down_after: Duration,
        /// Largest module or file accepted, in bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_blob_bytes: usize,
        /// Migrations under way at once that one node takes part in.
        #[arg(long, default_value_t = 2)]
        max_migrations_per_node: usize,
        /// Migrations under way at once in the whole cluster.
        #[arg(long, default_value_t = 4)]
        max_migrations: usize,
        /// Start with automatic placement paused (`tern placement resume` starts it).
        #[arg(long)]
        placement_paused: bool,
        /// How often the rebalancer scores every workload on every node.
        #[arg(long, value_parser = parse_duration, default_value = "2s")]
        rebalance_every: Duration,
        /// Passes in a row a better node must stay better before a workload moves there.
        #[arg(long, default_value_t = 2)]
        confirm_passes: u32,
        /// Multiply every metric the scheduler sees by a random factor within ±this (0.1 for
        /// ±10%): for testing that noise moves nothing.
        #[arg(long, default_value_t = 0.0)]
        metric_noise: f64,
    },
    /// Run a node agent.
    Agent {
        #[arg(long)]
        controller: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        name: String,
        /// k=v,... (provider, region, zone, arch, cost, or any label of yours).
        #[arg(long, default_value = "")]
        labels: String,
        /// Data directory (blobs, instances, volumes).
        #[arg(long)]
        data: PathBuf,
        /// Address other nodes use to reach this one.
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
        /// A delay table (TOML: `[[link]] between = [A, B]`, `delay`): made-up latency added
        /// to this node's links.
        #[arg(long, value_name = "FILE")]
        delays: Option<PathBuf>,
        /// Where the node's busy CPU is measured: `host` (the machine) or `instances` (the
        /// sum of its instances, for several nodes on one machine).
        #[arg(long, default_value = "host", value_parser = ["host", "instances"])]
        cpu_measure: String,
        /// CPUs the node offers (default: the machine's).
        #[arg(long)]
        cpus: Option<f64>,
        /// Memory the node offers, e.g. 4GiB (default: the machine's).
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
    },
    /// Run a gateway: an HTTP reverse proxy that sends each request to wherever its workload
    /// (by the profiles' `[http]` host or path prefix) runs now.
    Gateway {
        /// Where clients connect.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        controller: String,
        #[arg(long)]
        token: String,
        /// The region whose clients this gateway serves.
        #[arg(long)]
        region: String,
        /// How long a request may wait for its workload to run somewhere (then 503).
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        hold_timeout: Duration,
        /// How many requests may wait at once (more get a 503 at once).
        #[arg(long, default_value_t = 1000)]
        max_held: usize,
        /// Write the address actually listened on to this file.
        #[arg(long)]
        addr_file: Option<PathBuf>,
        /// Count a request's demand for the region this header names (set by a trusted
        /// proxy in front, such as a CDN).
        #[arg(long, value_name = "HEADER")]
        region_header: Option<String>,
        /// Count a request's demand by client address: a file of `ADDRESS/LEN REGION` lines.
        #[arg(long, value_name = "FILE")]
        region_cidrs: Option<PathBuf>,
        /// Close a connection whose client takes longer than this to send a request head.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        header_timeout: Duration,
        /// Largest request head accepted, in bytes (larger: 431).
        #[arg(long, default_value_t = 16 << 10)]
        max_header_bytes: usize,
        /// How long a service may take to start its answer (then 504, not sent again).
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        upstream_timeout: Duration,
        /// A delay table: made-up latency from this gateway's clients to the nodes.
        #[arg(long, value_name = "FILE")]
        delays: Option<PathBuf>,
    },
    /// Start a controller and agents on this machine.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Return once it runs; `tern down` stops it.
        #[arg(long)]
        detach: bool,
        /// A delay table (made-up geography) for the agents' links and the gateways.
        #[arg(long, value_name = "FILE")]
        delays: Option<PathBuf>,
    },
    /// Stop a cluster started with `tern up --detach`.
    Down,
    /// Deploy (or update) the workload a profile describes.
    Deploy {
        profile: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List workloads.
    Ps {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List nodes.
    Nodes {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List the gateways following the controller (region and address).
    Gateways {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Show a workload's output.
    Logs {
        workload: String,
        /// Keep following new output.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Stop a workload (it stays listed; deploy starts it again).
    Stop {
        workload: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Remove a workload and its logs.
    Rm {
        workload: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Move a running workload to another node while it runs (live migration).
    Migrate {
        workload: String,
        /// The destination node.
        #[arg(long)]
        to: String,
        /// Bytes per second on the wire (e.g. 100MiB).
        #[arg(long, value_parser = parse_size)]
        bandwidth: Option<u64>,
        /// Return once the migration is recorded instead of following it.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Fork a running workload: a copy resumes from the same state on another node as a new
    /// workload, while the original keeps running.
    Clone {
        workload: String,
        #[arg(long)]
        to: String,
        /// The new workload's name.
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_size)]
        bandwidth: Option<u64>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Move every workload off a node (live) and keep new ones away, for maintenance.
    Drain {
        node: String,
        /// Return at once instead of waiting until the node is empty.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Let workloads be placed on a drained node again.
    Undrain {
        node: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List migrations with their reports.
    Migrations {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Why a workload runs where it does: its score on its node and on the best
    /// alternatives, term by term, and whether it will move.
    Explain {
        workload: String,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// The latency and bandwidth matrix the nodes' probes measured (by region pair and node to
    /// node).
    Network {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Stop or restart automatic moves (`pause`, `resume`, `status`).
    Placement {
        #[arg(value_parser = ["pause", "resume", "status"])]
        action: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Run the scheduler on a simulated cluster (no network) and measure it.
    Sim {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 150_000)]
        workloads: usize,
        /// Then run one full rebalance pass after a shift of demand and load.
        #[arg(long)]
        rebalance: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        out: Output,
    },
    /// Show everything about a workload or a node (JSON).
    Inspect {
        name: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// Where the cluster is; by default from the context file `tern up` writes.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Controller URL (default: from $TERN_HOME/context.json).
    #[arg(long, global = true)]
    pub controller: Option<String>,
    /// API token (default: from $TERN_HOME/context.json).
    #[arg(long, global = true)]
    pub token: Option<String>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct Output {
    /// Output format: table (default) or json.
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

impl Output {
    fn json(&self) -> bool {
        self.output == "json"
    }
}

#[derive(Subcommand)]
pub enum InstanceCmd {
    /// Move the program of the instance behind SOCKET to the `tern receive` at ADDR while it
    /// runs, and print the migration's report.
    Migrate {
        /// The instance's control socket (`--control` of `tern run`).
        socket: PathBuf,
        #[arg(long)]
        to: String,
        /// Bytes per second on the wire (e.g. 100MiB).
        #[arg(long, value_parser = parse_size)]
        bandwidth: Option<u64>,
        #[arg(long)]
        max_rounds: Option<u32>,
        /// Find written pages by hashing every page each round instead of asking the kernel.
        #[arg(long)]
        hashing: bool,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Show what a snapshot holds.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// A duration flag, read as a profile's durations are (`1h30m` here means what `cooldown =
/// "1h30m"` means there).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = tern_profile::parse_duration(s).ok_or_else(|| {
        format!("{s:?}: expected a duration with a unit, such as 250ms, 2s, 5m or 1h30m")
    })?;
    // Timeouts are added to `Instant::now()`, which panics on overflow; nobody means more.
    if d > Duration::from_secs(1_000_000_000) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(d)
}

/// Where Tern keeps its state: `$TERN_HOME`, default `~/.tern`.
pub fn tern_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("TERN_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither TERN_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".tern"))
}

pub fn runtime() -> Result<tern_runtime::Runtime> {
    let dir = tern_home()?.join("cache");
    tern_runtime::Runtime::new(&dir)
        .with_context(|| format!("opening the module cache in {}", dir.display()))
}

pub fn parse_dirs(dirs: &[String]) -> Result<Vec<tern_wasi::Preopen>> {
    dirs.iter()
        .map(|d| {
            let (host, guest) = match d.split_once("::") {
                Some((h, g)) => (h, g),
                None => (d.as_str(), d.as_str()),
            };
            if host.is_empty() || guest.is_empty() {
                bail!("--dir {d:?}: expected HOST_DIR[::GUEST_DIR]");
            }
            Ok(tern_wasi::Preopen {
                host: PathBuf::from(host),
                guest: guest.to_string(),
            })
        })
        .collect()
}

pub fn parse_env(env: &[String]) -> Result<Vec<(String, String)>> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some(("", _)) => bail!("--env {e:?}: empty name"),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Ok((e.clone(), std::env::var(e).unwrap_or_default())),
        })
        .collect()
}

fn migrate_request(
    to: String,
    bandwidth: Option<u64>,
    name: Option<String>,
) -> tern_api::MigrateRequest {
    tern_api::MigrateRequest {
        to,
        options: tern_api::TransferOptions {
            bandwidth,
            ..Default::default()
        },
        name,
    }
}

fn ctx(c: ClusterArgs) -> Result<crate::fleet::ClusterContext> {
    crate::fleet::load_context(c.controller, c.token)
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    // Commands that print listings end quietly when their reader goes away (`tern ps | head`),
    // as Unix tools do. Commands that run programs keep SIGPIPE ignored: a guest writing to a
    // closed pipe must get EPIPE, as under `wasmtime run`, not kill Tern.
    if !matches!(
        cli.command,
        Command::Run { .. }
            | Command::Resume { .. }
            | Command::Receive { .. }
            | Command::Controller { .. }
            | Command::Agent { .. }
            | Command::Gateway { .. }
            | Command::Up { .. }
    ) {
        crate::run::default_sigpipe();
    }
    match cli.command {
        Command::Run {
            env,
            dirs,
            service,
            checkpoint,
            module,
            args,
        } => crate::run::run(
            &module,
            parse_env(&env)?,
            parse_dirs(&dirs)?,
            args,
            &service,
            &checkpoint,
        ),
        Command::Resume {
            dirs,
            module,
            service,
            checkpoint,
            snapshot,
        } => crate::run::resume(
            &snapshot,
            module.as_deref(),
            parse_dirs(&dirs)?,
            &service,
            &checkpoint,
        ),
        Command::Receive {
            listen,
            port_file,
            accept_timeout,
            dirs,
            service,
            checkpoint,
            module,
        } => crate::run::receive(
            &module,
            listen,
            port_file.as_deref(),
            accept_timeout,
            parse_dirs(&dirs)?,
            &service,
            &checkpoint,
        ),
        Command::Instance {
            command:
                InstanceCmd::Migrate {
                    socket,
                    to,
                    bandwidth,
                    max_rounds,
                    hashing,
                    out,
                },
        } => crate::instance::migrate_command(
            &socket,
            &to,
            tern_api::TransferOptions {
                bandwidth,
                max_rounds,
                force_hashing: hashing,
                link_delay_ms: 0,
            },
            out.json(),
        ),
        Command::Snapshot {
            command: SnapshotCommand::Inspect { file, json },
        } => crate::run::inspect(&file, json),
        Command::Demo { after } => crate::demo::demo(after),
        Command::Controller {
            data,
            listen,
            down_after,
            max_blob_bytes,
            max_migrations_per_node,
            max_migrations,
            placement_paused,
            rebalance_every,
            confirm_passes,
            metric_noise,
        } => {
            let mut config = tern_controller::Config::new(data, listen);
            config.down_after = down_after;
            config.max_blob_bytes = max_blob_bytes;
            config.max_migrations_per_node = max_migrations_per_node;
            config.max_migrations = max_migrations;
            config.placement_paused = placement_paused;
            config.rebalance_every = rebalance_every;
            config.confirm_passes = confirm_passes;
            if !(0.0..1.0).contains(&metric_noise) {
                bail!("--metric-noise must be at least 0 and below 1, not {metric_noise}");
            }
            config.metric_noise = metric_noise;
            crate::fleet::controller(config)
        }
        Command::Drain {
            node,
            no_wait,
            cluster,
        } => crate::fleet::drain(&ctx(cluster)?, &node, no_wait),
        Command::Undrain { node, cluster } => crate::fleet::undrain(&ctx(cluster)?, &node),
        Command::Gateway {
            listen,
            controller,
            token,
            region,
            hold_timeout,
            max_held,
            addr_file,
            region_header,
            region_cidrs,
            header_timeout,
            max_header_bytes,
            upstream_timeout,
            delays,
        } => {
            let mut config = tern_gateway::Config::new(listen, &controller, &token, &region);
            config.hold_timeout = hold_timeout;
            config.max_held = max_held;
            config.header_timeout = header_timeout;
            config.max_header_bytes = max_header_bytes;
            config.upstream_timeout = upstream_timeout;
            config.region_header = region_header;
            if let Some(f) = delays {
                config.delays = std::sync::Arc::new(crate::fleet::read_delays(&f)?);
            }
            if let Some(f) = region_cidrs {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                config.region_cidrs = tern_gateway::demand::parse_cidrs(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            }
            crate::fleet::gateway(config, addr_file)
        }
        Command::Agent {
            controller,
            token,
            name,
            labels,
            data,
            address,
            delays,
            cpu_measure,
            cpus,
            memory,
        } => crate::fleet::agent(crate::fleet::AgentArgs {
            controller,
            token,
            name,
            labels: crate::fleet::parse_labels(&labels)?,
            data,
            address,
            delays,
            cpu_measure: if cpu_measure == "instances" {
                tern_agent::CpuMeasure::Instances
            } else {
                tern_agent::CpuMeasure::Host
            },
            cpus,
            memory,
        }),
        Command::Up {
            nodes,
            detach,
            delays,
        } => crate::fleet::up(nodes, detach, delays.as_deref()),
        Command::Explain {
            workload,
            out,
            cluster,
        } => crate::placement::explain(&ctx(cluster)?, &workload, out.json()),
        Command::Network { out, cluster } => crate::placement::network(&ctx(cluster)?, out.json()),
        Command::Placement { action, cluster } => {
            crate::placement::placement(&ctx(cluster)?, &action)
        }
        Command::Sim {
            nodes,
            workloads,
            rebalance,
            seed,
            out,
        } => crate::placement::sim(nodes, workloads, rebalance, seed, out.json()),
        Command::Down => crate::fleet::down(),
        Command::Deploy { profile, cluster } => crate::fleet::deploy(&ctx(cluster)?, &profile),
        Command::Ps { out, cluster } => crate::fleet::ps(&ctx(cluster)?, out.json()),
        Command::Nodes { out, cluster } => crate::fleet::nodes(&ctx(cluster)?, out.json()),
        Command::Gateways { out, cluster } => crate::fleet::gateways(&ctx(cluster)?, out.json()),
        Command::Logs {
            workload,
            follow,
            cluster,
        } => crate::fleet::logs(&ctx(cluster)?, &workload, follow),
        Command::Stop { workload, cluster } => crate::fleet::stop(&ctx(cluster)?, &workload),
        Command::Rm { workload, cluster } => crate::fleet::rm(&ctx(cluster)?, &workload),
        Command::Inspect { name, cluster } => crate::fleet::inspect(&ctx(cluster)?, &name),
        Command::Migrate {
            workload,
            to,
            bandwidth,
            no_wait,
            out,
            cluster,
        } => crate::fleet::migrate(
            &ctx(cluster)?,
            &workload,
            &migrate_request(to, bandwidth, None),
            false,
            no_wait,
            out.json(),
        ),
        Command::Clone {
            workload,
            to,
            name,
            bandwidth,
            no_wait,
            out,
            cluster,
        } => crate::fleet::migrate(
            &ctx(cluster)?,
            &workload,
            &migrate_request(to, bandwidth, Some(name)),
            true,
            no_wait,
            out.json(),
        ),
        Command::Migrations { out, cluster } => {
            crate::fleet::migrations(&ctx(cluster)?, out.json())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    /// `tern controller --down-after 1h30m` was refused while a profile's `cooldown = "1h30m"`
    /// was accepted: the flags now read durations with the profile's parser.
    #[test]
    fn durations_read_as_in_a_profile() {
        for text in ["1h30m", "1d", "90s", "500us", "2m30s"] {
            assert_eq!(
                parse_duration(text).ok(),
                tern_profile::parse_duration(text),
                "{text}"
            );
        }
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }
}
