//! Probes between nodes: every node answers probes on a TCP port of its own and measures its
//! links to the others (round-trip time every few seconds, bandwidth now and then), so that
//! the controller holds a live latency and bandwidth matrix to place workloads by.
//!
//! The protocol is line-based: a connection opens with `hello SECRET\n` (a digest of the
//! cluster's token, so that only the cluster's nodes are answered); then `ping NODE REGION\n`
//! gets `pong\n`, and `bulk NODE REGION LEN\n` followed by LEN bytes gets `done\n` once all
//! arrived. The answering side holds its answer
//! for the link's delay from the delay table, so that made-up geography shows in what is
//! measured exactly as real distance would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_api::{LinkReport, Peer};
use tern_profile::{DelayTable, End};

/// How often each peer's round-trip time is measured.
const RTT_EVERY: Duration = Duration::from_secs(2);
/// How often each peer's bandwidth is measured, and with how many bytes.
const BANDWIDTH_EVERY: Duration = Duration::from_secs(30);
const BULK_BYTES: usize = 4 << 20;
/// Largest bulk probe answered: a hostile peer cannot make a node read forever.
const MAX_BULK: usize = 64 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The prober's own timeouts: one dead peer must not hold up the measurement of the others.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection that has not said hello by then is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Probe connections answered at once; more are closed (a peer keeps one, so this only
/// bounds what a misbehaving one can take).
const MAX_CONNECTIONS: usize = 256;

/// This node, as probes name it.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) region: String,
    /// What a connection's hello must carry (see [`secret`]).
    pub(crate) secret: String,
}

/// The hello secret of a cluster: a digest of its token (the token itself never goes over
/// the probe port).
pub(crate) fn secret(token: &str) -> String {
    let d = tern_snapshot::digest(format!("tern probe {token}").as_bytes());
    d.chars().rev().take(32).collect()
}

/// The probe server and the prober of one node.
pub(crate) struct Probes {
    pub(crate) address: String,
    peers: Arc<Mutex<Vec<Peer>>>,
    links: Arc<Mutex<BTreeMap<String, LinkReport>>>,
}

impl Probes {
    /// Listen on `host` (any port) and start probing the peers given by [`Probes::set_peers`].
    pub(crate) fn start(
        host: &str,
        me: Me,
        delays: Arc<DelayTable>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Probes> {
        let listener = TcpListener::bind((host, 0))?;
        let address = listener.local_addr()?.to_string();
        let server_delays = delays.clone();
        let server_me = me.clone();
        std::thread::Builder::new()
            .name("probe-server".into())
            .spawn(move || {
                let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                for conn in listener.incoming() {
                    let Ok(conn) = conn else {
                        // Out of descriptors, say: do not spin.
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                        continue;
                    }
                    open.fetch_add(1, Ordering::SeqCst);
                    let d = server_delays.clone();
                    let m = server_me.clone();
                    let o = open.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("probe-conn".into())
                            .spawn(move || {
                                answer(conn, &m, &d);
                                o.fetch_sub(1, Ordering::SeqCst);
                            });
                    if spawned.is_err() {
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        let probes = Probes {
            address,
            peers: Default::default(),
            links: Default::default(),
        };
        let peers = probes.peers.clone();
        let links = probes.links.clone();
        std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || probe_loop(&me, &peers, &links, &stop))?;
        Ok(probes)
    }

    pub(crate) fn set_peers(&self, peers: Vec<Peer>) {
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        lock(&self.links).retain(|k, _| names.contains(&k.as_str()));
        *lock(&self.peers) = peers;
    }

    pub(crate) fn links(&self) -> Vec<LinkReport> {
        lock(&self.links).values().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve one probing peer until it hangs up or misbehaves.
fn answer(conn: TcpStream, me: &Me, delays: &DelayTable) {
    let _ = conn.set_read_timeout(Some(HELLO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    let mut line = String::new();
    let hello = (&mut input).take(128).read_line(&mut line);
    if hello.is_err() || line.trim() != format!("hello {}", me.secret) {
        return;
    }
    let _ = input.get_ref().set_read_timeout(Some(IO_TIMEOUT));
    loop {
        line.clear();
        match (&mut input).take(256).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (reply, peer) = match words.as_slice() {
            ["ping", name, region] => ("pong\n", (*name, *region)),
            ["bulk", name, region, len] => {
                let Some(len) = len.parse::<usize>().ok().filter(|n| *n <= MAX_BULK) else {
                    return;
                };
                if std::io::copy(&mut (&mut input).take(len as u64), &mut std::io::sink()).ok()
                    != Some(len as u64)
                {
                    return;
                }
                ("done\n", (*name, *region))
            }
            _ => return,
        };
        let delay = delays.between_nodes(
            End {
                name: Some(&me.name),
                region: &me.region,
            },
            End {
                name: Some(peer.0),
                region: peer.1,
            },
        );
        std::thread::sleep(delay);
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(address: &str, secret: &str) -> std::io::Result<Conn> {
        let addr: std::net::SocketAddr = address
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
        s.set_write_timeout(Some(PROBE_TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut writer = s.try_clone()?;
        writer.write_all(format!("hello {secret}\n").as_bytes())?;
        Ok(Conn {
            writer,
            reader: BufReader::new(s),
        })
    }

    /// Send `head` (and `body`), wait for the answer line; the time it took.
    fn exchange(&mut self, head: &str, body: &[u8], expect: &str) -> std::io::Result<Duration> {
        let t = Instant::now();
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        (&mut self.reader).take(64).read_line(&mut line)?;
        if line.trim() != expect {
            return Err(std::io::Error::other(format!(
                "probe answered {:?}, not {expect:?}",
                line.trim()
            )));
        }
        Ok(t.elapsed())
    }
}

fn probe_loop(
    me: &Me,
    peers: &Mutex<Vec<Peer>>,
    links: &Mutex<BTreeMap<String, LinkReport>>,
    stop: &AtomicBool,
) {
    let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
    let mut last_bulk: BTreeMap<String, Instant> = BTreeMap::new();
    let bulk = vec![0x5au8; BULK_BYTES];
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let list = lock(peers).clone();
        let key = |p: &Peer| format!("{}|{}", p.name, p.probe);
        conns.retain(|k, _| list.iter().any(|p| key(p) == *k));
        for p in &list {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let key = key(p);
            // A peer that cannot be measured has no link worth reporting.
            let forget = || {
                lock(links).remove(&p.name);
            };
            let conn = match conns.entry(key.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    match Conn::open(&p.probe, &me.secret) {
                        Ok(c) => e.insert(c),
                        Err(_) => {
                            forget();
                            continue;
                        }
                    }
                }
            };
            let ping = format!("ping {} {}\n", me.name, region_word(&me.region));
            let mut rtts = Vec::new();
            let mut failed = false;
            for _ in 0..3 {
                match conn.exchange(&ping, &[], "pong") {
                    Ok(d) => rtts.push(d.as_secs_f64() * 1e3),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                conns.remove(&key);
                forget();
                continue;
            }
            rtts.sort_by(f64::total_cmp);
            let rtt_ms = rtts[rtts.len() / 2];
            let due = last_bulk
                .get(&p.name)
                .is_none_or(|t| t.elapsed() >= BANDWIDTH_EVERY);
            let mut bandwidth = lock(links).get(&p.name).map(|l| l.bandwidth).unwrap_or(0.0);
            if due {
                let head = format!(
                    "bulk {} {} {}\n",
                    me.name,
                    region_word(&me.region),
                    bulk.len()
                );
                match conn.exchange(&head, &bulk, "done") {
                    Ok(d) => {
                        // The answer's round trip is not transfer time: what is left is
                        // what the bytes took, as in a long transfer where it is paid once.
                        let secs = (d.as_secs_f64() - rtt_ms / 1e3).max(d.as_secs_f64() / 100.0);
                        bandwidth = bulk.len() as f64 / secs.max(1e-6);
                        last_bulk.insert(p.name.clone(), Instant::now());
                    }
                    Err(_) => {
                        conns.remove(&key);
                        forget();
                        continue;
                    }
                }
            }
            lock(links).insert(
                p.name.clone(),
                LinkReport {
                    peer: p.name.clone(),
                    rtt_ms,
                    bandwidth,
                    measured_unix_ms: tern_api::unix_ms(),
                },
            );
        }
        let until = started + RTT_EVERY;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A region as one word of the protocol ("-" for none).
fn region_word(region: &str) -> &str {
    if region.is_empty() || region.contains(char::is_whitespace) {
        "-"
    } else {
        region
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_measures_the_delay_of_its_link() {
        let delays = Arc::new(
            tern_profile::parse_delays(
                "d.toml",
                "[[link]]\nbetween = [\"eu-west\", \"ap-south\"]\ndelay = \"40ms\"\n",
            )
            .expect("table"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let b = Probes::start(
            "127.0.0.1",
            Me {
                name: "b".into(),
                region: "ap-south".into(),
                secret: secret("t"),
            },
            delays.clone(),
            stop.clone(),
        )
        .expect("b");
        let a = Probes::start(
            "127.0.0.1",
            Me {
                name: "a".into(),
                region: "eu-west".into(),
                secret: secret("t"),
            },
            delays,
            stop.clone(),
        )
        .expect("a");
        a.set_peers(vec![Peer {
            name: "b".into(),
            region: "ap-south".into(),
            probe: b.address.clone(),
        }]);
        let t = Instant::now();
        let link = loop {
            if let Some(l) = a.links().into_iter().next() {
                break l;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no measurement");
            std::thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::SeqCst);
        assert_eq!(link.peer, "b");
        assert!((40.0..60.0).contains(&link.rtt_ms), "{link:?}");
        // Loopback moves 4 MiB in milliseconds; the 40 ms answer is not counted as transfer.
        assert!(
            link.bandwidth > 1e6 && link.bandwidth.is_finite(),
            "{link:?}"
        );
        // A stranger (no hello with the cluster's secret) is not answered; a hostile line is
        // answered by hanging up, not by reading forever.
        let mut buf = [0u8; 8];
        for opening in [
            "ping x y\n".to_string(),
            format!("hello {}\n", secret("other cluster")),
            format!("hello {}\nbulk x y 99999999999\n", secret("t")),
        ] {
            let mut s = TcpStream::connect(&b.address).expect("connect");
            s.write_all(opening.as_bytes()).expect("send");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            assert_eq!(s.read(&mut buf).expect("closed"), 0, "{opening:?}");
        }
        // The cluster's own is.
        let mut s = TcpStream::connect(&b.address).expect("connect");
        s.write_all(format!("hello {}\nping x y\n", secret("t")).as_bytes())
            .expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = s.read(&mut buf).expect("answer");
        assert_eq!(&buf[..n], b"pong\n");
    }
}
