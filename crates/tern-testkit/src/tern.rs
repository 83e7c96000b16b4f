//! The `tern` binary run as a separate process, the way users and scripts run it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `tern` binary with the Tern home (`TERN_HOME`) and environment it runs with.
///
/// The path of the binary comes from the caller, because only the tern crate's own tests and
/// benchmarks know it: `env!("CARGO_BIN_EXE_tern")`.
#[derive(Debug, Clone)]
pub struct Tern {
    bin: PathBuf,
    home: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Tern {
    pub fn new(bin: impl Into<PathBuf>, home: impl Into<PathBuf>) -> Tern {
        Tern {
            bin: bin.into(),
            home: home.into(),
            env: Vec::new(),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The same binary with another Tern home, as on a machine that has never seen a module.
    pub fn with_home(&self, home: impl Into<PathBuf>) -> Tern {
        Tern {
            home: home.into(),
            ..self.clone()
        }
    }

    /// The same with one more environment variable for every command.
    pub fn with_env(&self, key: &str, value: &str) -> Tern {
        let mut t = self.clone();
        t.env.push((key.into(), value.into()));
        t
    }

    /// A command for `tern`, with its home and environment and no arguments yet.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("TERN_HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Run `tern args…` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("tern runs")
    }

    /// Run `tern args…`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    /// Start `tern up args…` (a whole cluster in the foreground); see [`Up`].
    pub fn up(&self, args: &[&str]) -> Up {
        let log = |name: &str| {
            std::fs::File::create(self.home.join(name)).expect("a log file in the Tern home")
        };
        std::fs::create_dir_all(&self.home).expect("the Tern home");
        let child = self
            .command()
            .arg("up")
            .args(args)
            .stdout(log("up.out"))
            .stderr(log("up.err"))
            .spawn()
            .expect("tern up starts");
        Up {
            child,
            ended: false,
        }
    }
}

/// `tern up` running in the foreground. Dropped, it is interrupted (as by Ctrl-C) and waited
/// for, also when a test fails half-way.
pub struct Up {
    child: Child,
    ended: bool,
}

impl Up {
    /// Ctrl-C: SIGINT, and how it ended.
    pub fn interrupt(&mut self) -> ExitStatus {
        signal(&self.child, "-INT");
        self.ended = true;
        self.child.wait().expect("tern up exits")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if !self.ended {
            stop(&mut self.child, "-INT", Duration::from_secs(10));
        }
    }
}

/// The standard output of `tern args…`, which must have succeeded (exit code 0).
pub(crate) fn succeeded(args: &[&str], out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "tern {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Send a signal (`-TERM`, `-INT`, `-KILL`…) to a process, with `kill(1)`.
pub fn signal_pid(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn signal(child: &Child, sig: &str) {
    signal_pid(child.id(), sig);
}

/// Stop a child with `sig` and wait for it; killed outright if it takes longer than `grace`.
pub(crate) fn stop(child: &mut Child, sig: &str, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, sig);
    let started = Instant::now();
    while started.elapsed() < grace {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Bytes as text, for messages and comparisons of output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The files of a directory (not below it), by name, sorted.
pub type Files = Vec<(String, Vec<u8>)>;

/// The files directly in `dir`, each with its content.
pub fn files_in(dir: &Path) -> Files {
    let mut out: Files = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The workspace's fixture `name` (`fixtures/<name>.wasm`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(format!("{name}.wasm"))
}

/// Wait until `cond` holds, looking every `poll`; past `timeout`, panic with `what` and the
/// `context` (called only then, for the state that explains the failure).
pub fn wait_until(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() >= timeout {
            panic!(
                "timed out after {:.0?} waiting for {what}{}",
                timeout,
                context()
            );
        }
        std::thread::sleep(poll);
    }
}

/// The content of a file that another process writes once it is ready (an address, a URL),
/// trimmed; waits until it is there and not empty. Past `timeout`, panics with `context` (such
/// as the end of that process's log).
pub fn wait_for_content(
    path: &Path,
    timeout: Duration,
    what: &str,
    context: impl FnOnce() -> String,
) -> String {
    let mut content = String::new();
    wait_until(
        timeout,
        Duration::from_millis(10),
        what,
        || {
            content = std::fs::read_to_string(path).unwrap_or_default();
            !content.trim().is_empty()
        },
        || format!(" ({} never appeared){}", path.display(), context()),
    );
    content.trim().to_string()
}
