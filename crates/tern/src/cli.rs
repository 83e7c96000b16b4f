//! Command-line surface: the subcommands users' scripts rely on, each a variant wrapping the
//! flags of its module in `commands` (the variant's doc comment is the command's help).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands;

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

#[derive(Subcommand)]
pub enum Command {
    /// Run a WASI command module, optionally checkpointing it.
    Run(commands::run::Args),
    /// Continue a snapshot in this process.
    Resume(commands::resume::Args),
    /// Receive a program by live migration and run it (the destination of `tern instance
    /// migrate`); it runs only once its source says go.
    Receive(commands::receive::Args),
    /// Act on a running instance through its control socket.
    Instance(commands::instance::Args),
    /// Work with snapshot files.
    Snapshot(commands::snapshot::Args),
    /// Run a bundled program, checkpoint it, resume it in a new process, and check the result
    /// equals an uninterrupted run.
    Demo(commands::demo::Args),
    /// Run the control plane.
    Controller(commands::controller::Args),
    /// Run a node agent.
    Agent(commands::agent::Args),
    /// Run a gateway: an HTTP reverse proxy that sends each request to wherever its workload
    /// (by the profiles' `[http]` host or path prefix) runs now.
    Gateway(commands::gateway::Args),
    /// Start a controller and agents on this machine.
    Up(commands::up::Args),
    /// Stop a cluster started with `tern up --detach`.
    Down(commands::down::Args),
    /// Deploy (or update) the workload a profile describes.
    Deploy(commands::deploy::Args),
    /// List workloads.
    Ps(commands::ps::Args),
    /// List nodes.
    Nodes(commands::nodes::Args),
    /// List the gateways following the controller (region and address).
    Gateways(commands::gateways::Args),
    /// Show a workload's output.
    Logs(commands::logs::Args),
    /// Stop a workload (it stays listed; deploy starts it again).
    Stop(commands::stop::Args),
    /// Remove a workload and its logs.
    Rm(commands::rm::Args),
    /// Move a running workload to another node while it runs (live migration).
    Migrate(commands::migrate::Args),
    /// Fork a running workload: a copy resumes from the same state on another node as a new
    /// workload, while the original keeps running.
    Clone(commands::clone::Args),
    /// Move every workload off a node (live) and keep new ones away, for maintenance.
    Drain(commands::drain::Args),
    /// Let workloads be placed on a drained node again.
    Undrain(commands::undrain::Args),
    /// List migrations with their reports.
    Migrations(commands::migrations::Args),
    /// Why a workload runs where it does: its score on its node and on the best
    /// alternatives, term by term, and whether it will move.
    Explain(commands::explain::Args),
    /// The latency and bandwidth matrix the nodes' probes measured (by region pair and node to
    /// node).
    Network(commands::network::Args),
    /// Stop or restart automatic moves (`pause`, `resume`, `status`).
    Placement(commands::placement::Args),
    /// Run the scheduler on a simulated cluster (no network) and measure it.
    Sim(commands::sim::Args),
    /// Show everything about a workload or a node (JSON).
    Inspect(commands::inspect::Args),
}

impl Command {
    /// Whether the command runs programs or serves: those keep SIGPIPE ignored, since a guest
    /// writing to a closed pipe must get EPIPE, as under `wasmtime run`, not kill Tern.
    fn runs_programs(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Resume(_)
                | Command::Receive(_)
                | Command::Controller(_)
                | Command::Agent(_)
                | Command::Gateway(_)
                | Command::Up(_)
        )
    }
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    // Commands that print listings end quietly when their reader goes away (`tern ps | head`),
    // as Unix tools do.
    if !cli.command.runs_programs() {
        crate::signals::default_sigpipe();
    }
    match cli.command {
        Command::Run(a) => commands::run::execute(a),
        Command::Resume(a) => commands::resume::execute(a),
        Command::Receive(a) => commands::receive::execute(a),
        Command::Instance(a) => commands::instance::execute(a),
        Command::Snapshot(a) => commands::snapshot::execute(a),
        Command::Demo(a) => commands::demo::execute(a),
        Command::Controller(a) => commands::controller::execute(a),
        Command::Agent(a) => commands::agent::execute(a),
        Command::Gateway(a) => commands::gateway::execute(a),
        Command::Up(a) => commands::up::execute(a),
        Command::Down(a) => commands::down::execute(a),
        Command::Deploy(a) => commands::deploy::execute(a),
        Command::Ps(a) => commands::ps::execute(a),
        Command::Nodes(a) => commands::nodes::execute(a),
        Command::Gateways(a) => commands::gateways::execute(a),
        Command::Logs(a) => commands::logs::execute(a),
        Command::Stop(a) => commands::stop::execute(a),
        Command::Rm(a) => commands::rm::execute(a),
        Command::Migrate(a) => commands::migrate::execute(a),
        Command::Clone(a) => commands::clone::execute(a),
        Command::Drain(a) => commands::drain::execute(a),
        Command::Undrain(a) => commands::undrain::execute(a),
        Command::Migrations(a) => commands::migrations::execute(a),
        Command::Explain(a) => commands::explain::execute(a),
        Command::Network(a) => commands::network::execute(a),
        Command::Placement(a) => commands::placement::execute(a),
        Command::Sim(a) => commands::sim::execute(a),
        Command::Inspect(a) => commands::inspect::execute(a),
    }
}
