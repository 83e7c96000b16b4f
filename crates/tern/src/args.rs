//! Flags several commands share (checkpointing, listening sockets, where the cluster is, the
//! output format) and the parsers of flag values. Users' scripts rely on these names and
//! defaults, so they are defined once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::client::{Api, ClusterContext};

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

impl ClusterArgs {
    /// The cluster these flags name, the context file filling in what they leave out.
    pub fn context(self) -> Result<ClusterContext> {
        crate::client::load_context(self.controller, self.token)
    }

    /// A client of that cluster's controller.
    pub fn api(self) -> Result<Api> {
        Api::new(&self.context()?)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct Output {
    /// Output format: table (default) or json.
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

impl Output {
    pub fn json(&self) -> bool {
        self.output == "json"
    }
}

/// The flags of a command that shows one thing the controller serves: `-o json` and the
/// cluster.
#[derive(clap::Args, Clone, Debug)]
pub struct Listing {
    #[command(flatten)]
    out: Output,
    #[command(flatten)]
    cluster: ClusterArgs,
}

impl Listing {
    /// GET `path`. With `-o json` it is printed as the controller sent it and None comes
    /// back (the command is done); else the value, for a table.
    pub fn fetch<T: serde::de::DeserializeOwned + serde::Serialize>(
        self,
        path: &str,
    ) -> Result<Option<T>> {
        let json = self.out.json();
        let value: T = self.cluster.api()?.get(path)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(None);
        }
        Ok(Some(value))
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    tern_profile::parse_size(s).ok_or_else(|| format!("{s:?}: expected a size such as 512MiB"))
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

/// `--env K=V` sets K; `--env K` passes this process's K, and leaves it unset in the
/// program when this process has none (as `wasmtime run` does).
pub fn parse_env(env: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in env {
        match e.split_once('=') {
            Some(("", _)) => bail!("--env {e:?}: empty name"),
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None if e.is_empty() => bail!("--env: empty name"),
            None => match std::env::var_os(e) {
                None => {}
                Some(v) => match v.into_string() {
                    Ok(v) => out.push((e.clone(), v)),
                    Err(_) => bail!("--env {e}: this process's value is not UTF-8"),
                },
            },
        }
    }
    Ok(out)
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
