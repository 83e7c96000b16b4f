//! The processes of a cluster on this machine (`tern up`, `tern down`): a controller, agents
//! and one gateway per region, each a `tern` child process logging to a file under
//! `$TERN_HOME/cluster`, found again through the context file.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tern_api::Node;

use crate::client::{context_path, load_context, Api, ClusterContext};
use crate::files::read_delays;
use crate::home::tern_home;

/// The local cluster's nodes: regions and costs differ so that placement has a choice.
pub const REGIONS: [(&str, &str); 3] = [
    ("eu-west", "0.12"),
    ("us-east", "0.08"),
    ("ap-south", "0.05"),
];

/// A cluster started by [`start`].
pub struct LocalCluster {
    pub url: String,
    /// Each gateway's region and the file it writes its address to once it listens.
    pub gateways: Vec<(&'static str, PathBuf)>,
    children: Vec<Child>,
}

/// Start a controller, `nodes` agents and the gateways, write the context file (with the
/// processes' ids when `detach`, for `tern down`), and wait (5 s at most) until the nodes
/// have registered.
pub fn start(nodes: usize, detach: bool, delays: Option<&Path>) -> Result<LocalCluster> {
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
        gateways.push((*region, addr_file));
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
    Ok(LocalCluster {
        url,
        gateways,
        children,
    })
}

impl LocalCluster {
    /// Stop it and remove the context file. Agents first (they stop their instances), then
    /// the controller.
    pub fn stop(mut self) -> Result<()> {
        for c in self.children.iter_mut().rev() {
            terminate(c.id());
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(context_path()?);
        Ok(())
    }
}

/// Stop the processes of the cluster in the context file, which `tern up --detach` started
/// (in reverse order, as [`LocalCluster::stop`]), and remove the file. Returns how many.
pub fn stop_detached() -> Result<usize> {
    let ctx = load_context(None, None)?;
    if ctx.pids.is_empty() {
        bail!("the cluster in the context was not started with `tern up --detach`");
    }
    for pid in ctx.pids.iter().rev() {
        terminate(*pid);
    }
    std::fs::remove_file(context_path()?)?;
    Ok(ctx.pids.len())
}

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// The contents of a file a child process writes once it is ready (its address), waiting
/// 5 s at most.
pub fn wait_for_file(path: &Path) -> Result<String> {
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
