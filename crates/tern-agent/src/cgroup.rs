//! CPU limits for instances, enforced by the kernel's CFS bandwidth control: each instance with
//! a CPU limit runs in its own cgroup whose quota is its share of one period. Both cgroup
//! hierarchies are supported: v2 (`cpu.max`) where the cpu controller can be delegated to the
//! agent, v1 (`cpu.cfs_quota_us`) where a writable `cpu` hierarchy is mounted. Where neither is
//! possible (no privileges, no controller), the node says so at registration and the controller
//! places no workload with a CPU limit on it, rather than promise a limit nobody enforces.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Length of a CFS period; a quota is a share of it.
const PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas under 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

#[derive(Debug, Clone)]
pub(crate) enum CpuControl {
    V1 {
        base: PathBuf,
    },
    V2 {
        base: PathBuf,
    },
    /// Why CPU limits cannot be enforced on this node.
    Unavailable(String),
}

/// An instance's cgroup; removed when the instance ends.
#[derive(Debug)]
pub(crate) struct Group {
    dir: PathBuf,
}

impl CpuControl {
    /// Find a cpu controller the agent may write to and make its own directory there, named
    /// after the node so that several agents on one machine keep apart. Leftover instance
    /// groups of an earlier run of this agent are removed.
    pub(crate) fn detect(node: &str) -> CpuControl {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root = Path::new("/sys/fs/cgroup");
        let v2_controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        let mut reasons = Vec::new();
        if let Ok(controllers) = v2_controllers {
            if controllers.split_whitespace().any(|c| c == "cpu") {
                let path = own_path(&own, |c| c.is_empty()).unwrap_or("/");
                let parent = root.join(path.trim_start_matches('/'));
                match setup_v2(&parent, node) {
                    Ok(base) => return CpuControl::V2 { base },
                    Err(e) => reasons.push(format!("cgroup v2 at {}: {e}", parent.display())),
                }
            } else {
                reasons.push("cgroup v2 has no cpu controller".into());
            }
        }
        let v1 = root.join("cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let path = own_path(&own, |c| c.split(',').any(|c| c == "cpu")).unwrap_or("/");
            let base = v1
                .join(path.trim_start_matches('/'))
                .join(format!("tern-{node}"));
            match std::fs::create_dir_all(&base) {
                Ok(()) => {
                    remove_children(&base);
                    return CpuControl::V1 { base };
                }
                Err(e) => reasons.push(format!("cgroup v1 at {}: {e}", base.display())),
            }
        } else {
            reasons.push("no cgroup v1 cpu hierarchy".into());
        }
        CpuControl::Unavailable(reasons.join("; "))
    }

    /// Remove the agent's directory once its instances are gone (at shutdown).
    pub(crate) fn remove(&self) {
        if let CpuControl::V1 { base } | CpuControl::V2 { base } = self {
            remove_children(base);
            let _ = std::fs::remove_dir(base);
        }
    }

    pub(crate) fn available(&self) -> bool {
        !matches!(self, CpuControl::Unavailable(_))
    }

    /// A group for one instance, limited to `cpus` CPUs (0.5 = half of one).
    pub(crate) fn create(&self, instance: &str, cpus: f64) -> std::io::Result<Group> {
        let quota = ((cpus * PERIOD_US as f64) as u64).max(MIN_QUOTA_US);
        let (dir, file, text) = match self {
            CpuControl::V1 { base } => (base.join(instance), "cpu.cfs_quota_us", quota.to_string()),
            CpuControl::V2 { base } => (
                base.join(instance),
                "cpu.max",
                format!("{quota} {PERIOD_US}"),
            ),
            CpuControl::Unavailable(reason) => {
                return Err(std::io::Error::other(format!(
                    "this node cannot enforce CPU limits: {reason}"
                )))
            }
        };
        std::fs::create_dir_all(&dir)?;
        let group = Group { dir };
        if matches!(self, CpuControl::V1 { .. }) {
            std::fs::write(group.dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        }
        std::fs::write(group.dir.join(file), text)?;
        Ok(group)
    }
}

impl Group {
    /// Path of the file whose writing moves a process into the group, for the child to write
    /// `0` (itself) into between fork and exec, so that it never runs unlimited.
    pub(crate) fn procs_file(&self) -> CString {
        use std::os::unix::ffi::OsStrExt;
        let path = self.dir.join("cgroup.procs");
        // A path built from our own directory names holds no NUL byte.
        CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
    }

    pub(crate) fn remove(&self) {
        // Fails while a process is still inside (it is gone once waited for); nothing else to do.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.remove();
    }
}

/// This process's cgroup path in the hierarchy whose controller list matches.
fn own_path(proc_cgroup: &str, controllers: impl Fn(&str) -> bool) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let list = parts.next()?;
        let path = parts.next()?;
        controllers(list).then_some(path)
    })
}

/// In v2 a controller reaches a group only if every ancestor enables it for its children, and
/// a group that enables controllers for children may hold no process itself.
fn setup_v2(parent: &Path, node: &str) -> std::io::Result<PathBuf> {
    std::fs::write(parent.join("cgroup.subtree_control"), "+cpu")?;
    let base = parent.join(format!("tern-{node}"));
    std::fs::create_dir_all(&base)?;
    remove_children(&base);
    std::fs::write(base.join("cgroup.subtree_control"), "+cpu")?;
    Ok(base)
}

fn remove_children(base: &Path) {
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_path_per_hierarchy() {
        let text = "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/x\n0::/user.slice\n";
        assert_eq!(
            own_path(text, |c| c.split(',').any(|c| c == "cpu")),
            Some("/x")
        );
        assert_eq!(own_path(text, |c| c.is_empty()), Some("/user.slice"));
        assert_eq!(own_path("", |c| c.is_empty()), None);
    }
}
