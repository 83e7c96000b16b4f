//! The agent's loop: register, heartbeat, make what runs match the controller's reply, and
//! take the node's part in migrations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_api::{
    Assignment, Capabilities, Heartbeat, HeartbeatReply, MigrationFailure, MigrationOrder,
    MigrationStep, Node, RegisterRequest, Role,
};

use crate::client::Client;
use crate::config::orphan_timeout;
use crate::instance::Instance;
use crate::{cgroup, migration, node, probe, Config, Error, Result};

/// Run the agent until `stop` is set; then stop every instance.
pub fn run(config: Config, stop: Arc<AtomicBool>) -> Result<()> {
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
    let _lock = node::lock(&config.data_dir.join("lock")).map_err(io(&config.data_dir))?;
    let client = Client::new(&config.controller, &config.token)?;
    // The session survives a restart of the agent: the controller then sees the same node
    // come back (and its instances, adopted again), not a second agent with its name.
    let session_file = config.data_dir.join("session");
    let session = match std::fs::read_to_string(&session_file) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let mut raw = [0u8; 8];
            getrandom::fill(&mut raw)
                .map_err(|e| io(&config.data_dir)(std::io::Error::other(e.to_string())))?;
            let s = hex::encode(raw);
            std::fs::write(&session_file, &s).map_err(io(&session_file))?;
            s
        }
    };
    let capacity = config.capacity.clone().unwrap_or_else(node::capacity);
    let cpu_control = cgroup::CpuControl::detect(&config.name);
    if let cgroup::CpuControl::Unavailable(reason) = &cpu_control {
        eprintln!(
            "tern agent {}: CPU limits cannot be enforced here ({reason}); workloads with a CPU limit will not be placed on this node",
            config.name
        );
    }
    let probes = probe::Probes::start(
        &probe_host(&config.address),
        probe::Me {
            name: config.name.clone(),
            region: config.labels.get("region").cloned().unwrap_or_default(),
            secret: probe::secret(&config.token),
        },
        config.delays.clone(),
        stop.clone(),
    )
    .map_err(io(&config.data_dir))?;
    let register = RegisterRequest {
        name: config.name.clone(),
        labels: config.labels.clone(),
        capacity,
        capabilities: Capabilities {
            cpu_limit: cpu_control.available(),
        },
        address: config.address.clone(),
        probe: Some(probes.address.clone()),
        session: session.clone(),
    };
    let registered: Node = client.post("/v1/nodes", &register)?;
    let orphan_after = orphan_timeout(registered.down_after_ms);
    // Instances of an earlier run of this agent that are still there.
    let mut instances: HashMap<String, Instance> = Instance::adopt_all(&config)
        .into_iter()
        .map(|i| (i.id().to_string(), i))
        .collect();
    // An adopted instance may be paused in a migration, waiting for the commit answer its
    // previous agent never passed on: get the controller's verdict to it.
    for i in instances.values() {
        if let Some(id) = i.awaiting_verdict.clone() {
            let socket = i.control_socket();
            let node = config.name.clone();
            let c = Client::new(&config.controller, &config.token)?;
            std::thread::spawn(move || {
                let commit = migration::settle(&c, &node, &id);
                migration::tell_verdict(&socket, &id, commit);
            });
        }
    }
    let mut parts: HashMap<String, migration::Part> = HashMap::new();
    let mut sampler = node::Sampler::default();
    // Report at once (no held heartbeat) after something changed on the node.
    let mut report_now = true;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        for i in instances.values_mut() {
            let before = i.report().status;
            i.poll();
            report_now |= i.report().status != before;
        }
        let mut logs = Vec::new();
        for i in instances.values_mut() {
            logs.extend(i.take_output());
        }
        // A destination reports where it listens as soon as it does.
        for p in parts.values() {
            if p.order.role == Role::Destination && p.update().listening.is_none() {
                if let Some(i) = instances.get(&p.order.instance) {
                    match i.listening() {
                        Some(addr) => {
                            p.set(|u| u.listening = Some(addr));
                            report_now = true;
                        }
                        None if !i.is_alive() => {
                            let e = i.last_error();
                            p.set(|u| {
                                u.failed = Some(MigrationFailure {
                                    step: MigrationStep::Prepare,
                                    reason: e,
                                })
                            });
                        }
                        None => report_now = true,
                    }
                }
            }
        }
        let hb = Heartbeat {
            session: session.clone(),
            usage: node::usage(
                &mut sampler,
                register.capacity.cpus,
                config.cpu_measure,
                instances.values().map(|i| i.report().cpu_cores).sum(),
            ),
            instances: instances.values().map(|i| i.report()).collect(),
            links: probes.links(),
            logs,
            migrations: parts.values().map(|p| p.update()).collect(),
            wait_ms: if report_now {
                0
            } else {
                config.heartbeat.as_millis() as u64
            },
        };
        report_now = false;
        let path = format!("/v1/nodes/{}/heartbeat", config.name);
        match client.post::<_, HeartbeatReply>(&path, &hb) {
            Ok(reply) => {
                for i in instances.values_mut() {
                    i.ack_output();
                }
                probes.set_peers(reply.peers);
                for (p, u) in parts.values_mut().zip(&hb.migrations) {
                    if !p.working() && (u.report.is_some() || u.failed.is_some()) {
                        p.final_sent = true;
                    }
                }
                report_now = take_part(&config, &stop, &mut parts, &instances, reply.migrations);
                report_now |= reconcile(
                    &config,
                    &client,
                    &cpu_control,
                    orphan_after,
                    &mut instances,
                    &mut parts,
                    reply.assignments,
                );
                // The next heartbeat is held by the controller until something changes (or a
                // heartbeat period passes), which sets the cadence; the pause only keeps a
                // node whose state keeps changing from spinning.
                sleep_unless_stopped(MIN_BEAT.saturating_sub(started.elapsed()), &stop);
            }
            Err(e) => {
                // Keep running what runs: the controller may be restarting. Output not
                // delivered is re-read from the files next time.
                for i in instances.values_mut() {
                    i.unsend_output();
                }
                eprintln!("tern agent {}: heartbeat: {e}", config.name);
                sleep_unless_stopped(config.heartbeat.saturating_sub(started.elapsed()), &stop);
            }
        }
    }
    for i in instances.values_mut() {
        i.stop();
    }
    instances.clear();
    cpu_control.remove();
    Ok(())
}

/// The host part of the node's address, where its probe server listens too.
fn probe_host(address: &str) -> String {
    if let Ok(a) = address.parse::<std::net::SocketAddr>() {
        return a.ip().to_string();
    }
    if let Ok(ip) = address.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return ip.to_string();
    }
    match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host.to_string(),
        _ => address.to_string(),
    }
}

/// Shortest time between two heartbeats, so that a node that keeps changing cannot spin.
const MIN_BEAT: Duration = Duration::from_millis(20);

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Make the node run exactly its assignments; true if anything was started or stopped.
fn reconcile(
    config: &Config,
    client: &Client,
    cpu_control: &cgroup::CpuControl,
    orphan_after: Duration,
    instances: &mut HashMap<String, Instance>,
    parts: &mut HashMap<String, migration::Part>,
    assignments: Vec<Assignment>,
) -> bool {
    let mut wanted: Vec<String> = assignments.iter().map(|a| a.instance.clone()).collect();
    let mut receiving = Vec::new();
    for p in parts.values() {
        match p.order.role {
            Role::Destination => {
                wanted.push(p.order.instance.clone());
                receiving.push(p.order.clone());
            }
            // A source that is moving away is the migration's to end, not the node's.
            Role::Source if p.working() => wanted.push(p.order.instance.clone()),
            Role::Source => {}
        }
    }
    let before = instances.len();
    instances.retain(|id, i| {
        if wanted.contains(id) {
            true
        } else {
            i.stop();
            false
        }
    });
    let mut changed = instances.len() != before;
    for o in receiving {
        if instances.contains_key(&o.instance) {
            continue;
        }
        let a = Assignment {
            instance: o.instance.clone(),
            workload: o.workload.clone(),
            spec: o.spec.clone(),
        };
        let i = Instance::receive(config, client, cpu_control, orphan_after, a);
        instances.insert(i.id().to_string(), i);
        changed = true;
    }
    for a in assignments {
        match instances.get_mut(&a.instance) {
            // Committed: it is ours now. Its source normally said go; if it died first, this
            // does.
            Some(i) if i.receiving => {
                if migration::tell_go(&i.control_socket()) || !i.is_alive() {
                    i.receiving = false;
                }
            }
            Some(_) => {}
            None => {
                let i = Instance::start(config, client, cpu_control, orphan_after, a);
                instances.insert(i.id().to_string(), i);
                changed = true;
            }
        }
    }
    changed
}

/// Follow the controller's migration orders: forget finished ones, start the source side of
/// new ones once the destination listens. True if anything started.
fn take_part(
    config: &Config,
    stop: &Arc<AtomicBool>,
    parts: &mut HashMap<String, migration::Part>,
    instances: &HashMap<String, Instance>,
    orders: Vec<MigrationOrder>,
) -> bool {
    let ids: Vec<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    parts.retain(|id, p| ids.contains(&id.as_str()) || p.pending());
    let mut changed = false;
    for o in orders {
        let part = parts
            .entry(o.id.clone())
            .or_insert_with(|| migration::Part::new(o.clone()));
        part.order = o.clone();
        if o.role != Role::Source || part.worker.is_some() {
            continue;
        }
        let Some(to) = o.to_address.clone() else {
            continue;
        };
        let Some(i) = instances.get(&o.instance) else {
            part.set(|u| {
                u.failed = Some(MigrationFailure {
                    step: MigrationStep::Prepare,
                    reason: format!("instance {} does not run here", o.instance),
                })
            });
            continue;
        };
        let Ok(client) = Client::new(&config.controller, &config.token) else {
            continue;
        };
        let src = migration::Source {
            client,
            socket: i.control_socket(),
            instance_dir: i.dir().to_path_buf(),
            acked: i.acked(),
            to,
            stop: stop.clone(),
            node: config.name.clone(),
        };
        let update = part.update.clone();
        let mut o = o;
        o.options.link_delay_ms = config
            .delays
            .between_nodes(
                tern_profile::End {
                    name: Some(&config.name),
                    region: config.labels.get("region").map_or("", |r| r.as_str()),
                },
                tern_profile::End {
                    name: Some(&o.peer),
                    region: &o.peer_region,
                },
            )
            .as_millis() as u64;
        part.worker = Some(std::thread::spawn(move || {
            migration::run_source(src, o, update)
        }));
        changed = true;
    }
    changed
}
