//! The hard filter: which nodes may take a workload at all, and if none, why not in words a user
//! can act on. The reasons are those of the controller's first placement (`tern ps` shows them and
//! tests check them), extended with `avoid`.

use tern_profile::format_size;

use crate::view::{amount, Node, Workload};

/// What the reason needs to know about one node. Both the public functions (from strings) and
/// the index (from interned ids) produce these, so both give the same reasons.
pub(crate) struct Facts<'a> {
    pub name: &'a str,
    pub up: bool,
    /// Has the required labels and is in neither `exclude_nodes` nor `avoid`.
    pub matches: bool,
    pub schedulable: bool,
    pub cpu_limit: bool,
    /// Has room for the workload's reservation.
    pub fits: bool,
}

/// Whether node `n` may take workload `w`, or why not.
///
/// The reason is the one [`feasible_nodes`] would give for a cluster of that one node, so the
/// controller can prefix it ("node b cannot take \"w\": no node with region=eu-west has 512 MiB
/// free") exactly as it does today.
///
/// Room: `n.committed_*` are taken to include every workload placed on `n`. If `w.node` names
/// `n`, `w`'s own reservation is taken out first, so a workload always has room where it runs.
/// For any other node nothing is taken out, which is what vetting a `tern migrate --to`
/// destination needs: the caller passes the destination with the reservations of the
/// workloads placed there (not counting `w`, which is not there yet) and `w` with its current
/// node.
pub fn feasible(w: &Workload, n: &Node) -> Result<(), String> {
    match why_not(w, [facts(w, n)]) {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}

/// The indices of the nodes that may take `w`, or the reason why none may (the first of: no
/// node at all, none up, none up with the constraints, all of those drained, none of those able
/// to enforce a CPU limit, none of those with room).
pub fn feasible_nodes(w: &Workload, nodes: &[Node]) -> Result<Vec<usize>, String> {
    let ok: Vec<usize> = (0..nodes.len())
        .filter(|&i| feasible_facts(w, &facts(w, &nodes[i])))
        .collect();
    if ok.is_empty() {
        Err(why_not(w, nodes.iter().map(|n| facts(w, n))).unwrap_or_else(|| "no node fits".into()))
    } else {
        Ok(ok)
    }
}

pub(crate) fn facts<'a>(w: &Workload, n: &'a Node) -> Facts<'a> {
    let here = w.node.as_deref() == Some(n.name.as_str());
    let (own_memory, own_cpu) = if here {
        (w.memory, amount(w.cpu))
    } else {
        (0, 0.0)
    };
    let committed_memory = n.committed_memory.saturating_sub(own_memory);
    let committed_cpu = amount(amount(n.committed_cpu) - own_cpu);
    let labels_match = w.require.iter().all(|(label, allowed)| {
        n.labels
            .get(label)
            .is_some_and(|value| allowed.contains(value))
    });
    Facts {
        name: &n.name,
        up: n.up,
        matches: labels_match && !w.exclude_nodes.contains(&n.name) && !w.avoid.contains(&n.name),
        schedulable: n.schedulable,
        cpu_limit: n.cpu_limit,
        fits: fits(
            n.memory.saturating_sub(committed_memory),
            amount(n.cpus) - committed_cpu,
            w.memory,
            amount(w.cpu),
        ),
    }
}

/// Room for the reservation. The CPU tolerance absorbs the rounding of sums of fractions, so a
/// node promised 0.1 ten times still takes its last 0.1 of 1 core.
pub(crate) fn fits(free_memory: u64, free_cpu: f64, memory: u64, cpu: f64) -> bool {
    free_memory >= memory && free_cpu >= cpu - 1e-9
}

fn feasible_facts(w: &Workload, f: &Facts<'_>) -> bool {
    f.up && f.matches && f.schedulable && (f.cpu_limit || amount(w.cpu) == 0.0) && f.fits
}

/// The reason no node may take `w`, or `None` if one may.
pub(crate) fn why_not<'a>(
    w: &Workload,
    nodes: impl IntoIterator<Item = Facts<'a>>,
) -> Option<String> {
    let needs_limit = amount(w.cpu) > 0.0;
    let (mut any, mut up, mut matching, mut schedulable, mut enforcing) = (0, 0, 0, 0, 0);
    let mut drained: Vec<&str> = Vec::new();
    for f in nodes {
        any += 1;
        if !f.up {
            continue;
        }
        up += 1;
        if !f.matches {
            continue;
        }
        matching += 1;
        if !f.schedulable {
            drained.push(f.name);
            continue;
        }
        schedulable += 1;
        if needs_limit && !f.cpu_limit {
            continue;
        }
        enforcing += 1;
        if f.fits {
            return None;
        }
    }
    let text = constraints(w);
    let with = if constrained(w) {
        format!("with {text} ")
    } else {
        String::new()
    };
    Some(if any == 0 {
        "no node has registered".into()
    } else if up == 0 {
        "no node is up".into()
    } else if matching == 0 {
        format!("no node is up with {text}")
    } else if schedulable == 0 {
        format!(
            "every node up with {text} is drained ({})",
            drained.join(", ")
        )
    } else if enforcing == 0 {
        format!("no node {with}can enforce a CPU limit (it needs a writable cgroup cpu controller)")
    } else {
        let cpu = amount(w.cpu);
        let cpu = if cpu > 0.0 {
            format!(" and {cpu} CPU")
        } else {
            String::new()
        };
        format!("no node {with}has {}{cpu} free", format_size(w.memory))
    })
}

fn constrained(w: &Workload) -> bool {
    !(w.require.is_empty() && w.exclude_nodes.is_empty() && w.avoid.is_empty())
}

/// The constraints in words: `region=eu-west, arch in [arm64, riscv64], node not in [a]`.
pub(crate) fn constraints(w: &Workload) -> String {
    let mut parts: Vec<String> = w
        .require
        .iter()
        .map(|(k, vs)| {
            if vs.len() == 1 {
                format!("{k}={}", vs[0])
            } else {
                format!("{k} in [{}]", vs.join(", "))
            }
        })
        .collect();
    if !w.exclude_nodes.is_empty() {
        parts.push(format!("node not in [{}]", w.exclude_nodes.join(", ")));
    }
    if !w.avoid.is_empty() {
        parts.push(format!(
            "node not in [{}] (a move there made latency worse)",
            w.avoid.join(", ")
        ));
    }
    if parts.is_empty() {
        "no constraints".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_reservation_does_not_count_where_it_runs() {
        let n = Node {
            name: "a".into(),
            cpus: 1.0,
            memory: 1 << 30,
            committed_memory: 1 << 30,
            committed_cpu: 1.0,
            ..Node::default()
        };
        let mut w = Workload {
            name: "w".into(),
            memory: 1 << 30,
            cpu: 1.0,
            node: Some("a".into()),
            ..Workload::default()
        };
        assert_eq!(feasible(&w, &n), Ok(()));
        w.node = Some("b".into());
        assert_eq!(
            feasible(&w, &n),
            Err("no node has 1 GiB and 1 CPU free".into())
        );
    }

    /// Sizes in reasons are written as the CLI writes every size (`tern_profile::format_size`):
    /// this one said "1536 MiB" where `tern migrate` said "1.5 GiB".
    #[test]
    fn reason_sizes_read_as_the_cli_shows_them() {
        let n = Node {
            name: "a".into(),
            cpus: 1.0,
            memory: 1 << 30,
            ..Node::default()
        };
        let w = Workload {
            name: "w".into(),
            memory: 1536 << 20,
            ..Workload::default()
        };
        assert_eq!(feasible(&w, &n), Err("no node has 1.5 GiB free".into()));
    }
}
