//! Placement for now: keep the nodes that satisfy a workload's constraints and have room for
//! it, then take the least loaded. Pure: it sees a view of the cluster and returns a decision or
//! the reason there is none, so it is tested without servers.

use std::collections::BTreeMap;

use crate::api::{Node, NodeStatus};

/// What a workload asks of a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    /// Bytes.
    pub memory: u64,
    pub cpu: f64,
    /// label → allowed values.
    pub require: BTreeMap<String, Vec<String>>,
    pub exclude_nodes: Vec<String>,
}

/// A node as placement sees it: what is already promised to workloads placed there.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub node: &'a Node,
    pub schedulable: bool,
    pub committed_memory: u64,
    pub committed_cpu: f64,
}

/// The chosen node's name, or why no node fits (for `tern ps` and `tern inspect`).
pub fn place(demand: &Demand, nodes: &[View<'_>]) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no node has registered".into());
    }
    let up: Vec<&View> = nodes
        .iter()
        .filter(|v| v.node.status == NodeStatus::Up)
        .collect();
    if up.is_empty() {
        return Err("no node is up".into());
    }
    let constrained: Vec<&View> = up
        .into_iter()
        .filter(|v| !demand.exclude_nodes.contains(&v.node.name))
        .filter(|v| {
            demand.require.iter().all(|(label, allowed)| {
                v.node
                    .labels
                    .get(label)
                    .is_some_and(|value| allowed.contains(value))
            })
        })
        .collect();
    let constraint_text = constraints(demand);
    if constrained.is_empty() {
        return Err(format!("no node is up with {constraint_text}"));
    }
    let (constrained, drained): (Vec<&View>, Vec<&View>) =
        constrained.into_iter().partition(|v| v.schedulable);
    if constrained.is_empty() {
        let names: Vec<&str> = drained.iter().map(|v| v.node.name.as_str()).collect();
        return Err(format!(
            "every node up with {constraint_text} is drained ({})",
            names.join(", ")
        ));
    }
    let constrained: Vec<&View> = if demand.cpu > 0.0 {
        let enforcing: Vec<&View> = constrained
            .into_iter()
            .filter(|v| v.node.capabilities.cpu_limit)
            .collect();
        if enforcing.is_empty() {
            return Err(format!(
                "no node {}can enforce a CPU limit (it needs a writable cgroup cpu controller)",
                if demand.require.is_empty() && demand.exclude_nodes.is_empty() {
                    String::new()
                } else {
                    format!("with {constraint_text} ")
                },
            ));
        }
        enforcing
    } else {
        constrained
    };
    let fitting: Vec<&View> = constrained
        .into_iter()
        .filter(|v| {
            v.node.capacity.memory.saturating_sub(v.committed_memory) >= demand.memory
                && v.node.capacity.cpus - v.committed_cpu >= demand.cpu - 1e-9
        })
        .collect();
    let best = fitting.into_iter().min_by(|a, b| {
        load(a)
            .total_cmp(&load(b))
            .then_with(|| a.node.name.cmp(&b.node.name))
    });
    match best {
        Some(v) => Ok(v.node.name.clone()),
        None => Err(format!(
            "no node {}has {}{} free",
            if demand.require.is_empty() && demand.exclude_nodes.is_empty() {
                String::new()
            } else {
                format!("with {constraint_text} ")
            },
            human_bytes(demand.memory),
            if demand.cpu > 0.0 {
                format!(" and {} CPU", demand.cpu)
            } else {
                String::new()
            }
        )),
    }
}

/// Fraction of memory promised plus measured CPU load: lower is less loaded.
fn load(v: &View<'_>) -> f64 {
    let mem = v.committed_memory as f64 / v.node.capacity.memory.max(1) as f64;
    mem + v.node.usage.cpu_load
}

fn constraints(d: &Demand) -> String {
    let mut parts: Vec<String> = d
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
    if !d.exclude_nodes.is_empty() {
        parts.push(format!("node not in [{}]", d.exclude_nodes.join(", ")));
    }
    if parts.is_empty() {
        "no constraints".into()
    } else {
        parts.join(", ")
    }
}

pub fn human_bytes(b: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if b >= GIB && b.is_multiple_of(GIB) {
        format!("{} GiB", b / GIB)
    } else if b >= MIB {
        format!("{} MiB", b / MIB)
    } else {
        format!("{b} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Capabilities, Capacity, Usage};

    fn node(name: &str, region: &str, memory_mib: u64, load: f64) -> Node {
        Node {
            name: name.into(),
            labels: [("region".to_string(), region.to_string())].into(),
            capacity: Capacity {
                cpus: 2.0,
                memory: memory_mib << 20,
            },
            capabilities: Capabilities { cpu_limit: true },
            address: String::new(),
            status: NodeStatus::Up,
            usage: Usage {
                cpu_load: load,
                ..Usage::default()
            },
            registered_unix_ms: 0,
            last_heartbeat_unix_ms: 0,
            session: String::new(),
            instances: Vec::new(),
            schedulable: true,
            draining: false,
            down_after_ms: 0,
        }
    }

    fn view(n: &Node, committed_mib: u64) -> View<'_> {
        View {
            node: n,
            schedulable: true,
            committed_memory: committed_mib << 20,
            committed_cpu: 0.0,
        }
    }

    #[test]
    fn least_loaded_node_that_fits_wins() {
        let a = node("a", "eu-west", 1024, 0.9);
        let b = node("b", "eu-west", 1024, 0.1);
        let c = node("c", "us-east", 4096, 0.0);
        let d = Demand {
            memory: 256 << 20,
            cpu: 0.5,
            require: [("region".into(), vec!["eu-west".into()])].into(),
            ..Demand::default()
        };
        let views = [view(&a, 0), view(&b, 0), view(&c, 0)];
        assert_eq!(place(&d, &views), Ok("b".into()));
        // b is full: a is the only one left.
        let views = [view(&a, 0), view(&b, 900), view(&c, 0)];
        assert_eq!(place(&d, &views), Ok("a".into()));
    }

    #[test]
    fn reasons_name_the_constraint_and_the_shortfall() {
        let a = node("a", "eu-west", 1024, 0.0);
        let d = Demand {
            memory: 512 << 20,
            cpu: 0.1,
            require: [("region".into(), vec!["eu-west".into()])].into(),
            ..Demand::default()
        };
        assert_eq!(
            place(&d, &[view(&a, 768)]),
            Err("no node with region=eu-west has 512 MiB and 0.1 CPU free".into())
        );
        let d = Demand {
            require: [("region".into(), vec!["ap-south".into()])].into(),
            ..Demand::default()
        };
        let mut weak = node("w", "eu-west", 1024, 0.0);
        weak.capabilities.cpu_limit = false;
        let d2 = Demand {
            cpu: 0.5,
            ..Demand::default()
        };
        assert_eq!(
            place(&d2, &[view(&weak, 0)]),
            Err(
                "no node can enforce a CPU limit (it needs a writable cgroup cpu controller)"
                    .into()
            )
        );
        assert_eq!(place(&d2, &[view(&weak, 0), view(&a, 0)]), Ok("a".into()));
        assert_eq!(
            place(&d, &[view(&a, 0)]),
            Err("no node is up with region=ap-south".into())
        );
        let mut down = a.clone();
        down.status = NodeStatus::Down;
        assert_eq!(
            place(&Demand::default(), &[view(&down, 0)]),
            Err("no node is up".into())
        );
        assert_eq!(
            place(&Demand::default(), &[]),
            Err("no node has registered".into())
        );
    }
}
