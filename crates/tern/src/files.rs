//! Files other processes read while Tern writes them (addresses, exit codes), and the delay
//! tables that `--delays` names.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Write `text` to `path` so that a reader never sees it half written.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
