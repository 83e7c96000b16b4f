//! `tern placement pause|resume|status`: stop or restart the scheduler's automatic moves, or
//! show how its last pass went.

use std::process::ExitCode;

use anyhow::Result;
use tern_api::PlacementState;

use crate::args::ClusterArgs;

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_parser = ["pause", "resume", "status"])]
    action: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let action = a.action.as_str();
    let api = a.cluster.api()?;
    let st: PlacementState = match action {
        "pause" => api.post("/v1/placement/pause", &())?,
        "resume" => api.post("/v1/placement/resume", &())?,
        _ => api.get("/v1/placement")?,
    };
    println!(
        "automatic placement: {}",
        if st.paused { "paused" } else { "on" }
    );
    println!(
        "rebalance every {} ms; a move needs {} passes in a row",
        st.rebalance_every_ms, st.confirm_passes
    );
    if let Some(at) = st.last_pass_unix_ms {
        let ago = tern_api::unix_ms().saturating_sub(at);
        println!(
            "last pass {:.1} s ago: {:.2} ms, {} candidates, {} moves started",
            ago as f64 / 1e3,
            st.last_pass_ms,
            st.candidates,
            st.started
        );
    }
    Ok(ExitCode::SUCCESS)
}
