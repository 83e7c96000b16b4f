//! `tern down`: stop a cluster started with `tern up --detach`.

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn execute(_: Args) -> Result<ExitCode> {
    let stopped = crate::daemons::stop_detached()?;
    println!("stopped {stopped} processes");
    Ok(ExitCode::SUCCESS)
}
