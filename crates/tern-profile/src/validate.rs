//! The rules that types alone do not enforce. Each finding names its field so that the caller
//! can place it in the text.

use std::collections::{BTreeMap, HashMap};

use crate::error::Found;
use crate::locate::Path;
use crate::units::format_duration;
use crate::Profile;

struct Findings<'w> {
    found: Vec<Found>,
    /// Whether a field is written in the text (rather than defaulted).
    written: &'w dyn Fn(&Path) -> bool,
}

impl Findings<'_> {
    fn value(&mut self, path: Path, message: impl Into<String>) {
        self.found.push(Found {
            path,
            at_key: false,
            message: message.into(),
        });
    }

    fn key(&mut self, path: Path, message: impl Into<String>) {
        self.found.push(Found {
            path,
            at_key: true,
            message: message.into(),
        });
    }
}

pub(crate) fn check(profile: &Profile, written: &dyn Fn(&Path) -> bool) -> Result<(), Vec<Found>> {
    let mut f = Findings {
        found: Vec::new(),
        written,
    };
    let root = Path::default();

    if !is_dns_label(&profile.name) {
        f.value(
            root.key("name"),
            format!(
                "expected 1 to 63 lowercase letters, digits and '-', not starting or ending with '-', got {:?}",
                profile.name
            ),
        );
    }
    if profile.module.is_empty() {
        f.value(
            root.key("module"),
            "expected the path of a WebAssembly module, got \"\"",
        );
    }
    for (i, arg) in profile.args.iter().enumerate() {
        if arg.contains('\0') {
            f.value(
                root.key("args").index(i),
                "expected no NUL character (WASI strings end at one)",
            );
        }
    }
    for (k, v) in &profile.env {
        let path = root.key("env").key(k);
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            f.key(
                path,
                format!("expected a variable name without '=' or NUL, got {k:?}"),
            );
        } else if v.contains('\0') {
            f.value(path, "expected no NUL character (WASI strings end at one)");
        }
    }

    let mut file_guests: HashMap<&str, usize> = HashMap::new();
    for (i, file) in profile.files.iter().enumerate() {
        let path = root.key("files").index(i);
        if file.host.is_empty() {
            f.value(
                path.key("host"),
                "expected the path of a file to ship, got \"\"",
            );
        }
        if let Some(problem) = guest_path_problem(&file.guest) {
            f.value(path.key("guest"), problem);
        } else if let Some(first) = file_guests.insert(&file.guest, i) {
            f.value(
                path.key("guest"),
                format!(
                    "{:?} is already the guest path of files[{first}]",
                    file.guest
                ),
            );
        }
    }

    let mut volume_names: HashMap<&str, usize> = HashMap::new();
    let mut volume_guests: HashMap<&str, usize> = HashMap::new();
    for (i, volume) in profile.volumes.iter().enumerate() {
        let path = root.key("volumes").index(i);
        if !is_volume_name(&volume.name) {
            f.value(
                path.key("name"),
                format!(
                    "expected a name of letters, digits, '.', '_' and '-' (not \".\" or \"..\"), got {:?}",
                    volume.name
                ),
            );
        } else if let Some(first) = volume_names.insert(&volume.name, i) {
            f.value(
                path.key("name"),
                format!("{:?} is already the name of volumes[{first}]", volume.name),
            );
        }
        if let Some(problem) = guest_path_problem(&volume.guest) {
            f.value(path.key("guest"), problem);
        } else if let Some(first) = volume_guests.insert(&volume.guest, i) {
            f.value(
                path.key("guest"),
                format!(
                    "{:?} is already the guest path of volumes[{first}]",
                    volume.guest
                ),
            );
        }
    }

    let limits = root.key("limits");
    if profile.limits.memory == Some(0) {
        f.value(
            limits.key("memory"),
            "expected a size greater than zero, got 0",
        );
    }
    if let Some(cpu) = profile.limits.cpu {
        if !(cpu.is_finite() && cpu > 0.0) {
            f.value(
                limits.key("cpu"),
                format!("expected a CPU share greater than zero, such as 0.5, got {cpu}"),
            );
        }
    }
    if profile.limits.wall_time.is_some_and(|d| d.is_zero()) {
        f.value(
            limits.key("wall_time"),
            "expected a duration greater than zero, got \"0s\"",
        );
    }

    let mut ports: HashMap<u16, usize> = HashMap::new();
    for (i, &port) in profile.ports.iter().enumerate() {
        if let Some(first) = ports.insert(port, i) {
            f.value(
                root.key("ports").index(i),
                format!("port {port} is already listed at ports[{first}]"),
            );
            // Keep pointing later duplicates at the first occurrence.
            ports.insert(port, first);
        }
    }

    let placement = root.key("placement");
    check_labels(
        &mut f,
        &placement.key("require"),
        &profile.placement.require,
    );
    for (label, allowed) in &profile.placement.require {
        let path = placement.key("require").key(label);
        if allowed.is_empty() {
            f.value(path.clone(), "expected at least one allowed value, got []");
        }
        for (i, value) in allowed.iter().enumerate() {
            if value.is_empty() {
                f.value(path.index(i), "expected a label value, got \"\"");
            }
        }
    }
    for (i, node) in profile.placement.exclude_nodes.iter().enumerate() {
        if node.is_empty() {
            f.value(
                placement.key("exclude_nodes").index(i),
                "expected a node name, got \"\"",
            );
        }
    }
    check_labels(&mut f, &placement.key("prefer"), &profile.placement.prefer);

    let migration = root.key("migration");
    let weights = &profile.migration.weights;
    for (name, weight) in [
        ("performance", weights.performance),
        ("proximity", weights.proximity),
        ("resources", weights.resources),
        ("affinity", weights.affinity),
        ("cost", weights.cost),
        ("move_cost", weights.move_cost),
    ] {
        if let Some(w) = weight {
            if !non_negative(w) {
                f.value(
                    migration.key("weights").key(name),
                    format!("expected a weight of 0 or more, got {w}"),
                );
            }
        }
    }
    if let Some(t) = profile.migration.threshold {
        if !non_negative(t) {
            f.value(
                migration.key("threshold"),
                format!("expected a threshold of 0 or more, got {t}"),
            );
        }
    }

    let restart = &profile.restart;
    if restart.max_backoff < restart.backoff {
        let at = root.key("restart");
        // Blame whichever of the two was written; with both written, the maximum.
        let max_path = at.key("max_backoff");
        if (f.written)(&max_path) {
            f.value(
                max_path,
                format!(
                    "expected at least backoff ({}), got {}",
                    format_duration(restart.backoff),
                    format_duration(restart.max_backoff)
                ),
            );
        } else {
            f.value(
                at.key("backoff"),
                format!(
                    "expected at most max_backoff ({}), got {}",
                    format_duration(restart.max_backoff),
                    format_duration(restart.backoff)
                ),
            );
        }
    }

    let http = root.key("http");
    if let Some(host) = &profile.http.host {
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            f.value(
                http.key("host"),
                format!("expected a host name such as \"app.example.com\", got {host:?}"),
            );
        }
    }
    if let Some(prefix) = &profile.http.path_prefix {
        if !prefix.starts_with('/') {
            f.value(
                http.key("path_prefix"),
                format!("expected a path starting with '/', got {prefix:?}"),
            );
        }
    }

    if f.found.is_empty() {
        Ok(())
    } else {
        Err(f.found)
    }
}

fn check_labels<V>(f: &mut Findings<'_>, path: &Path, labels: &BTreeMap<String, V>) {
    for label in labels.keys() {
        if label.is_empty() {
            f.key(path.key(label), "expected a label name, got \"\"");
        }
    }
}

fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// 1–63 of `[a-z0-9-]`, not starting or ending with '-'.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn is_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Guest paths must be absolute, and `..` would climb out of where the path was placed.
fn guest_path_problem(guest: &str) -> Option<String> {
    if !guest.starts_with('/') {
        return Some(format!(
            "expected an absolute guest path (starting with '/'), got {guest:?}"
        ));
    }
    if guest.split('/').any(|part| part == "..") {
        return Some(format!("expected a guest path without '..', got {guest:?}"));
    }
    if guest.contains('\0') {
        return Some("expected no NUL character in a guest path".to_owned());
    }
    None
}
