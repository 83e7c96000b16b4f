//! `tern demo`: the whole cycle on bundled programs (see the `demo` module).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::args::parse_duration;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint this long after the start (default: half of the uninterrupted run).
    #[arg(long, value_parser = parse_duration)]
    after: Option<Duration>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    crate::demo::demo(a.after)
}
