//! What the node has and uses, read from `/proc`.

use tern_api::{Capacity, Usage};

fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(crate) fn capacity() -> Capacity {
    Capacity {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0),
        memory: meminfo("MemTotal:").unwrap_or(1 << 30),
    }
}

/// Busy fraction of all CPUs between two samples of `/proc/stat`.
#[derive(Default)]
pub(crate) struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    fn sample(&mut self) -> f64 {
        let Some((busy, total)) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            let line = s.lines().next()?;
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
            let total: u64 = v.iter().sum();
            Some((total - idle, total))
        }) else {
            return 0.0;
        };
        let load = match self.last {
            Some((b0, t0)) if total > t0 => (busy - b0.min(busy)) as f64 / (total - t0) as f64,
            _ => 0.0,
        };
        self.last = Some((busy, total));
        load
    }
}

/// Where a node's busy CPU is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CpuMeasure {
    /// The whole machine (`/proc/stat`): right when the node is a machine of its own.
    #[default]
    Host,
    /// The sum of the node's instances: right when several nodes share one machine (`tern
    /// up`), where the machine's figure would be every node's.
    Instances,
}

/// Successive readings of the machine's CPU and network counters.
#[derive(Default)]
pub(crate) struct Sampler {
    cpu: CpuSampler,
    net: Option<(std::time::Instant, u64, u64)>,
}

/// CPUs the host has, as `/proc/stat` counts them.
fn host_cpus() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let n = text
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    (n > 0).then_some(n as f64)
}

/// Bytes received and sent by all interfaces so far.
fn net_bytes() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/dev").ok()?;
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let (_, fields) = line.split_once(':')?;
        let f: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

/// What the node uses now; `instance_cores` is the sum of its instances' cores.
pub(crate) fn usage(s: &mut Sampler, cpus: f64, measure: CpuMeasure, instance_cores: f64) -> Usage {
    let total = meminfo("MemTotal:").unwrap_or(0);
    let free = meminfo("MemAvailable:").unwrap_or(0);
    let host = s.cpu.sample();
    // The busy fraction covers every CPU of the host (`/proc/stat`), which may be more than
    // this process may use (a container's affinity).
    let machine_cpus = host_cpus().unwrap_or_else(|| capacity().cpus);
    let cpu_busy = match measure {
        CpuMeasure::Host => host * machine_cpus,
        CpuMeasure::Instances => instance_cores,
    }
    .clamp(0.0, cpus.max(0.0))
        // An empty sum is -0.0, which would print as "-0%".
        + 0.0;
    let (mut net_rx_bytes_s, mut net_tx_bytes_s) = (0.0, 0.0);
    if let Some((rx, tx)) = net_bytes() {
        let now = std::time::Instant::now();
        if let Some((at, rx0, tx0)) = s.net {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            net_rx_bytes_s = rx.saturating_sub(rx0) as f64 / secs;
            net_tx_bytes_s = tx.saturating_sub(tx0) as f64 / secs;
        }
        s.net = Some((now, rx, tx));
    }
    Usage {
        cpu_load: cpu_busy / cpus.max(1e-9),
        memory_used: total.saturating_sub(free),
        memory_free: free,
        cpu_busy,
        net_rx_bytes_s,
        net_tx_bytes_s,
    }
}

/// What `/proc` says of an instance process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessUsage {
    pub(crate) cpu_ms: u64,
    /// Resident memory, bytes.
    pub(crate) rss: u64,
    /// Resident anonymous memory, bytes: the program's linear memory and little else (the
    /// runtime's code is mapped from files), so what a migration has to move.
    pub(crate) anon: u64,
}

/// CPU time and resident memory of a process.
pub(crate) fn process(pid: u32) -> ProcessUsage {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may contain spaces, start after ')'.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 1000 / clock_ticks())
        })
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    ProcessUsage {
        cpu_ms: cpu,
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}

#[allow(unsafe_code)]
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the system; a failure (-1) falls back to the
    // usual 100 ticks per second.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Whether a process exists and has not ended (a zombie has ended).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?.to_string();
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

#[allow(unsafe_code)]
pub(crate) fn kill(pid: u32) {
    // SAFETY: sending a signal touches no memory of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Hold an exclusive lock on `path` for as long as the returned file lives: one agent per data
/// directory (a restarted agent adopts the instances of the previous one; two at once would
/// both think they own them).
#[allow(unsafe_code)]
pub(crate) fn lock(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(std::io::Error::other(
            "another agent uses this data directory",
        ));
    }
    Ok(f)
}
