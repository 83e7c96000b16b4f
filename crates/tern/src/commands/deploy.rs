//! `tern deploy`: upload a profile's module and files, hand the workload to the controller,
//! and follow it until it runs or settles.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use tern_api::{DeployReply, FileBlob, Workload, WorkloadSpec, WorkloadStatus};

use crate::args::ClusterArgs;
use crate::table::word;

#[derive(clap::Args)]
pub struct Args {
    profile: PathBuf,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let ctx = a.cluster.context()?;
    let profile_path = a.profile.as_path();
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
    let api = crate::client::Api::new(&ctx)?;
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
        println!("{}: unchanged ({})", w.name, word(w.status));
        return Ok(ExitCode::SUCCESS);
    }
    say("placing and starting");
    // Follow it until it runs or settles.
    let mut last: Workload = w;
    for _ in 0..100 {
        if !matches!(
            last.status,
            WorkloadStatus::Pending | WorkloadStatus::Starting
        ) || (last.status == WorkloadStatus::Pending
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
        word(last.status),
        last.node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
