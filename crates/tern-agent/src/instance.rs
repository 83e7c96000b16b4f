//! One assigned instance: its directory, its `tern run` process, its output files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_api::{Assignment, InstanceReport, InstanceStatus, LogChunk, Stream};

use crate::cgroup::{CpuControl, Group};
use crate::client::Client;
use crate::{Config, Error, Result};

/// `tern run` exits with this code when the program trapped.
const TRAP_EXIT_CODE: i32 = 134;
/// At most this much output per stream goes into one heartbeat.
const MAX_OUTPUT_PER_BEAT: u64 = 256 << 10;

pub(crate) struct Instance {
    assignment: Assignment,
    dir: PathBuf,
    child: Option<Child>,
    started: Instant,
    status: InstanceStatus,
    exit_code: Option<i32>,
    error: Option<String>,
    /// Per stream: bytes acknowledged by the controller, and bytes sent but not yet acknowledged.
    out: [(u64, u64); 2],
    /// The acknowledged offsets again, for a migration's commit to send the rest from.
    acked: Arc<[AtomicU64; 2]>,
    /// Started as the destination of a migration (`tern receive`), not yet told to go.
    pub(crate) receiving: bool,
    last_usage: crate::node::ProcessUsage,
    /// Cores used between the last two polls, and when the last one was.
    cpu_cores: f64,
    last_poll: Option<(Instant, u64)>,
    /// Present while a process with a CPU limit runs; dropping it removes the group.
    cgroup: Option<Group>,
    /// The process of an instance adopted from an earlier run of the agent (not our child).
    adopted_pid: Option<u32>,
    /// An adopted instance paused in a migration, waiting for the controller's verdict.
    pub(crate) awaiting_verdict: Option<String>,
}

impl Instance {
    pub(crate) fn id(&self) -> &str {
        &self.assignment.instance
    }

    /// Prepare the instance's directory and start it; a failure to do so is reported as the
    /// instance's failure, not the agent's.
    pub(crate) fn start(
        config: &Config,
        client: &Client,
        cpu_control: &CpuControl,
        orphan_after: Duration,
        assignment: Assignment,
    ) -> Instance {
        Instance::launch(config, client, cpu_control, orphan_after, assignment, false)
    }

    /// Prepare the destination of a migration: a `tern receive` that listens for the source.
    pub(crate) fn receive(
        config: &Config,
        client: &Client,
        cpu_control: &CpuControl,
        orphan_after: Duration,
        assignment: Assignment,
    ) -> Instance {
        Instance::launch(config, client, cpu_control, orphan_after, assignment, true)
    }

    /// Instances an earlier run of this agent left running (they outlive it for a while):
    /// each answers a `watch` on its control socket, which makes this agent its owner.
    pub(crate) fn adopt_all(config: &Config) -> Vec<Instance> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(config.data_dir.join("instances")) else {
            return out;
        };
        for d in dirs.flatten() {
            let dir = d.path();
            let Ok(text) = std::fs::read_to_string(dir.join("assignment.json")) else {
                continue;
            };
            let Ok(assignment) = serde_json::from_str::<Assignment>(&text) else {
                continue;
            };
            let Some((pid, awaiting_verdict)) = watch(&dir.join("control.sock"), Duration::ZERO)
            else {
                continue;
            };
            out.push(Instance {
                assignment,
                dir,
                child: None,
                started: Instant::now(),
                status: InstanceStatus::Running,
                exit_code: None,
                error: None,
                out: [(0, 0); 2],
                acked: Arc::default(),
                receiving: false,
                last_usage: Default::default(),
                cpu_cores: 0.0,
                last_poll: None,
                cgroup: None,
                adopted_pid: Some(pid),
                awaiting_verdict,
            });
        }
        out
    }

    fn launch(
        config: &Config,
        client: &Client,
        cpu_control: &CpuControl,
        orphan_after: Duration,
        assignment: Assignment,
        receiving: bool,
    ) -> Instance {
        let dir = config.data_dir.join("instances").join(&assignment.instance);
        let mut i = Instance {
            assignment,
            dir,
            child: None,
            started: Instant::now(),
            status: InstanceStatus::Starting,
            exit_code: None,
            error: None,
            out: [(0, 0); 2],
            acked: Arc::default(),
            receiving,
            last_usage: Default::default(),
            cpu_cores: 0.0,
            last_poll: None,
            cgroup: None,
            adopted_pid: None,
            awaiting_verdict: None,
        };
        match i.spawn(config, client, cpu_control, orphan_after) {
            Ok(child) => {
                i.child = Some(child);
                i.status = InstanceStatus::Running;
                // This agent owns the instance while this connection stays open.
                let socket = i.control_socket();
                std::thread::spawn(move || {
                    let _ = watch(&socket, Duration::from_secs(30));
                });
            }
            Err(e) => {
                i.status = InstanceStatus::Failed;
                i.error = Some(e.to_string());
            }
        }
        i
    }

    fn spawn(
        &mut self,
        config: &Config,
        client: &Client,
        cpu_control: &CpuControl,
        orphan_after: Duration,
    ) -> Result<Child> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let spec = &self.assignment.spec;
        let profile = &spec.profile;
        let root = self.dir.join("root");
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let module = fetch_blob(config, client, &spec.module)?;
        for f in &spec.files {
            let src = fetch_blob(config, client, &f.digest)?;
            let dest = root.join(f.guest.trim_start_matches('/'));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(&src, &dest).map_err(io(&dest))?;
        }
        let mut cmd = Command::new(&config.tern_exe);
        if self.receiving {
            // Arguments and environment arrive with the program's state.
            let _ = std::fs::remove_file(self.port_file());
            cmd.arg("receive")
                .arg("--listen")
                .arg(format!("{}:0", listen_host(&config.address)))
                .arg("--port-file")
                .arg(self.port_file());
        } else {
            cmd.arg("run");
            for (k, v) in &profile.env {
                cmd.arg("--env").arg(format!("{k}={v}"));
            }
        }
        let _ = std::fs::remove_file(self.exit_file());
        cmd.arg("--control")
            .arg(self.control_socket())
            .arg("--orphan-timeout")
            .arg(format!("{}ms", orphan_after.as_millis()))
            .arg("--exit-file")
            .arg(self.exit_file());
        if let Some(bytes) = profile.limits.memory {
            cmd.arg("--max-memory").arg(bytes.to_string());
        }
        cmd.arg("--dir").arg(format!("{}::/", root.display()));
        for v in &profile.volumes {
            // Volumes outlive instances: they belong to the workload on this node.
            let host = config
                .data_dir
                .join("volumes")
                .join(&self.assignment.workload)
                .join(&v.name);
            std::fs::create_dir_all(&host).map_err(io(&host))?;
            cmd.arg("--dir")
                .arg(format!("{}::{}", host.display(), v.guest));
        }
        // The service's sockets, on this node's address at ports the kernel picks (several
        // instances of one profile may share a node); where they landed is reported.
        let _ = std::fs::remove_file(self.endpoints_file());
        if !profile.ports.is_empty() {
            let host = listen_host(&config.address);
            let any_port = if host.contains(':') {
                format!("[{host}]:0")
            } else {
                format!("{host}:0")
            };
            for _ in &profile.ports {
                cmd.arg("--tcplisten").arg(&any_port);
            }
            cmd.arg("--endpoints-file").arg(self.endpoints_file());
        }
        cmd.arg(&module);
        if !self.receiving {
            cmd.arg("--").args(&profile.args);
        }
        let stdout = File::create(self.dir.join("stdout")).map_err(io(&self.dir))?;
        let stderr = File::create(self.dir.join("stderr")).map_err(io(&self.dir))?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .current_dir(&self.dir);
        // Recorded so that a restarted agent can adopt the instance.
        let record = serde_json::to_vec(&self.assignment).unwrap_or_default();
        std::fs::write(self.dir.join("assignment.json"), record).map_err(io(&self.dir))?;
        if let Some(cpus) = profile.limits.cpu {
            let group = cpu_control
                .create(&self.assignment.instance, cpus)
                .map_err(io(&self.dir))?;
            join_in_child(&mut cmd, group.procs_file());
            self.cgroup = Some(group);
        }
        cmd.spawn().map_err(io(&config.tern_exe))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn exit_file(&self) -> PathBuf {
        self.dir.join("exit")
    }

    pub(crate) fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn port_file(&self) -> PathBuf {
        self.dir.join("port")
    }

    fn endpoints_file(&self) -> PathBuf {
        self.dir.join("endpoints")
    }

    /// Where its listening sockets listen, once they do (profile `ports` order).
    pub(crate) fn endpoints(&self) -> Vec<String> {
        std::fs::read_to_string(self.endpoints_file())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Where a receiving instance listens, once it does.
    pub(crate) fn listening(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.port_file()).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    pub(crate) fn acked(&self) -> Arc<[AtomicU64; 2]> {
        self.acked.clone()
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.child.is_some() || self.adopted_pid.is_some()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id()).or(self.adopted_pid)
    }

    /// Kill the process and wait until it is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.adopted_pid.take() {
            crate::node::kill(pid);
            let until = Instant::now() + Duration::from_secs(2);
            while crate::node::alive(pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.cgroup = None;
    }

    /// The exit of a process that is not our child, as it wrote it to its exit file.
    fn adopted_exit(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.exit_file()).ok()?;
        match text.trim() {
            "trap" => Some(TRAP_EXIT_CODE),
            "migrated" => Some(0),
            t => t.parse().ok(),
        }
    }

    pub(crate) fn last_error(&self) -> String {
        self.error
            .clone()
            .unwrap_or_else(|| last_line(&self.dir.join("stderr")))
    }

    /// Notice an exit, and enforce the wall-time limit.
    pub(crate) fn poll(&mut self) {
        let Some(pid) = self.pid() else {
            return;
        };
        if let Some(limit) = self.assignment.spec.profile.limits.wall_time {
            if self.started.elapsed() > limit {
                self.kill();
                self.status = InstanceStatus::Failed;
                self.error = Some(format!("exceeded its wall time of {limit:?}"));
                return;
            }
        }
        self.last_usage = crate::node::process(pid);
        let now = Instant::now();
        let used = self.last_usage.cpu_ms;
        if let Some((at, cpu_ms)) = self.last_poll {
            let wall = now.duration_since(at).as_secs_f64();
            // Shorter periods say more about the clock tick than about the program.
            if wall >= 0.5 {
                self.cpu_cores = used.saturating_sub(cpu_ms) as f64 / 1e3 / wall;
                self.last_poll = Some((now, used));
            }
        } else {
            self.last_poll = Some((now, used));
        }
        let ended: Option<Option<i32>> = match self.child.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.code()),
                Ok(None) => None,
                Err(e) => {
                    self.status = InstanceStatus::Failed;
                    self.error = Some(e.to_string());
                    None
                }
            },
            None if crate::node::alive(pid) => None,
            None => Some(self.adopted_exit()),
        };
        let Some(code) = ended else {
            return;
        };
        self.child = None;
        self.adopted_pid = None;
        self.cgroup = None;
        match code {
            Some(TRAP_EXIT_CODE) => {
                self.status = InstanceStatus::Failed;
                self.exit_code = Some(TRAP_EXIT_CODE);
                self.error = Some(last_line(&self.dir.join("stderr")));
            }
            Some(code) => {
                self.status = InstanceStatus::Exited;
                self.exit_code = Some(code);
            }
            None => {
                self.status = InstanceStatus::Failed;
                self.error = Some("killed by a signal".into());
            }
        }
    }

    pub(crate) fn report(&self) -> InstanceReport {
        InstanceReport {
            id: self.assignment.instance.clone(),
            workload: self.assignment.workload.clone(),
            status: self.status,
            exit_code: self.exit_code,
            error: self.error.clone(),
            cpu_ms: self.last_usage.cpu_ms,
            memory: self.last_usage.rss,
            state_bytes: self.last_usage.anon,
            cpu_cores: self.cpu_cores,
            endpoints: self.endpoints(),
        }
    }

    /// New output since what the controller acknowledged, cut at a UTF-8 boundary.
    pub(crate) fn take_output(&mut self) -> Vec<LogChunk> {
        let mut out = Vec::new();
        for (k, (name, stream)) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)]
            .into_iter()
            .enumerate()
        {
            let (acked, _) = self.out[k];
            let Ok(mut f) = File::open(self.dir.join(name)) else {
                continue;
            };
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(acked)).is_err()
                || f.take(MAX_OUTPUT_PER_BEAT).read_to_end(&mut buf).is_err()
            {
                continue;
            }
            // An incomplete character at the end waits for the next beat; invalid bytes
            // elsewhere are shown as replacement characters.
            let used = match std::str::from_utf8(&buf) {
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                _ => buf.len(),
            };
            let text = String::from_utf8_lossy(&buf[..used]).into_owned();
            self.out[k].1 = acked + used as u64;
            if !text.is_empty() {
                out.push(LogChunk {
                    instance: self.assignment.instance.clone(),
                    workload: self.assignment.workload.clone(),
                    stream,
                    data: text,
                    offset: acked,
                    end: acked + used as u64,
                });
            }
        }
        out
    }

    pub(crate) fn ack_output(&mut self) {
        for (k, s) in self.out.iter_mut().enumerate() {
            s.0 = s.1.max(s.0);
            self.acked[k].store(s.0, Ordering::SeqCst);
        }
    }

    pub(crate) fn unsend_output(&mut self) {
        for s in &mut self.out {
            s.1 = s.0;
        }
    }

    pub(crate) fn stop(&mut self) {
        self.kill();
    }
}

/// The host part of the node's advertised address, to listen on for migrations.
fn listen_host(address: &str) -> String {
    match address.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => address
            .rsplit_once(':')
            .filter(|(_, p)| p.parse::<u16>().is_ok())
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| address.to_string()),
    }
}

/// Output of the instance in `dir` from the acknowledged offsets to the end, as chunks that
/// say which bytes they hold.
pub(crate) fn output_tail(
    dir: &Path,
    instance: &str,
    workload: &str,
    acked: &[AtomicU64; 2],
) -> Vec<LogChunk> {
    let mut out = Vec::new();
    for (k, (name, stream)) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)]
        .into_iter()
        .enumerate()
    {
        let from = acked[k].load(Ordering::SeqCst);
        let Ok(mut f) = File::open(dir.join(name)) else {
            continue;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
            continue;
        }
        if buf.is_empty() {
            continue;
        }
        out.push(LogChunk {
            instance: instance.to_string(),
            workload: workload.to_string(),
            stream,
            data: String::from_utf8_lossy(&buf).into_owned(),
            offset: from,
            end: from + buf.len() as u64,
        });
    }
    out
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().last().map(str::to_string))
        .unwrap_or_else(|| "trapped".into())
}

/// The blob's path in the node's cache, fetched and verified if missing.
fn fetch_blob(config: &Config, client: &Client, digest: &str) -> Result<PathBuf> {
    let Some(hex) = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Err(Error::Blob {
            digest: digest.into(),
            message: "not a sha256 digest".into(),
        });
    };
    let dir = config.data_dir.join("blobs");
    let path = dir.join(hex);
    if path.exists() {
        return Ok(path);
    }
    let bytes = client.blob(digest)?;
    let got = tern_snapshot::digest(&bytes);
    if got != digest {
        return Err(Error::Blob {
            digest: digest.into(),
            message: format!("received bytes hash to {got}"),
        });
    }
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let tmp = dir.join(format!("{hex}.part"));
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Move the child into its cgroup before it runs anything, so that no moment of its life
/// escapes the limit.
#[allow(unsafe_code)]
fn join_in_child(cmd: &mut Command, procs: std::ffi::CString) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; open, write and
    // close are, and the path was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" means the writing process itself.
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// Become the owner of the instance behind `socket` (retrying until it listens, up to
/// `patience`); returns its pid, and keeps the connection open in a thread for as long as
/// this process lives: an instance whose owner is gone stops itself after a while.
fn watch(socket: &Path, patience: Duration) -> Option<(u32, Option<String>)> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let until = Instant::now() + patience;
    let conn = loop {
        match UnixStream::connect(socket) {
            Ok(c) => break c,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    };
    let mut w = conn.try_clone().ok()?;
    let mut line = serde_json::to_vec(&tern_api::InstanceCommand::Watch).ok()?;
    line.push(b'\n');
    w.write_all(&line).ok()?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut r = BufReader::new(conn);
    let mut answer = String::new();
    r.read_line(&mut answer).ok()?;
    let (pid, awaiting) = match serde_json::from_str(&answer).ok()? {
        tern_api::InstanceEvent::Watching {
            pid,
            awaiting_verdict,
        } => (pid, awaiting_verdict),
        _ => return None,
    };
    let _ = r.get_ref().set_read_timeout(None);
    std::thread::spawn(move || {
        let _w = w;
        let mut rest = String::new();
        while matches!(r.read_line(&mut rest), Ok(n) if n > 0) {
            rest.clear();
        }
    });
    Some((pid, awaiting))
}
