//! Where Tern keeps its state on this machine (`$TERN_HOME`, default `~/.tern`): the module
//! cache, the cluster context, `tern up`'s cluster and the demo.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Where Tern keeps its state: `$TERN_HOME`, default `~/.tern`.
pub fn tern_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("TERN_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither TERN_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".tern"))
}

/// The runtime, with its cache of instrumented and compiled modules under the Tern home.
pub fn runtime() -> Result<tern_runtime::Runtime> {
    let dir = tern_home()?.join("cache");
    tern_runtime::Runtime::new(&dir)
        .with_context(|| format!("opening the module cache in {}", dir.display()))
}
