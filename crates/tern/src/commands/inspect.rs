//! `tern inspect`: everything the controller knows about a workload (with what its gateways
//! saw in the last minute) or, failing that, a node, as JSON.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::ClusterArgs;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let api = a.cluster.api()?;
    let name = a.name;
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
