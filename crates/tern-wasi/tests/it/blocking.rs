use crate::guest::*;
use crate::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tern_wasi::{Error, FdKindState, WasiConfig, WasiCtx};

fn clock_subscription(userdata: u64, timeout_ns: u64) -> Vec<u8> {
    let mut s = vec![0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[16..20].copy_from_slice(&1u32.to_le_bytes());
    s[24..32].copy_from_slice(&timeout_ns.to_le_bytes());
    s
}

#[test]
fn poll_oneoff_sleeps_on_a_clock() {
    let mut g = Guest::new(WasiCtx::new(WasiConfig::default()).unwrap());
    g.poke(BUF, &clock_subscription(77, 20_000_000));
    let start = Instant::now();
    assert_eq!(
        g.call("poll_oneoff", &[i(BUF), i(BUF + 512), i(1), i(RET)]),
        0
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(g.u32_at(RET), 1);
    assert_eq!(g.u64_at(BUF + 512), 77);
    assert_eq!(g.peek(BUF + 512 + 8, 3), [0, 0, 0], "no error, clock event");
}

#[test]
fn blocking_poll_is_abandoned_on_capture_request() {
    let mut g = Guest::new(WasiCtx::new(WasiConfig::default()).unwrap());
    g.poke(BUF, &clock_subscription(1, 30_000_000_000));
    g.poke(RET, &[0xAA; 4]);
    let capture = g.store.data().capture.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        capture.store(true, Ordering::SeqCst);
    });
    let start = Instant::now();
    assert_eq!(
        g.call("poll_oneoff", &[i(BUF), i(BUF + 512), i(1), i(RET)]),
        0
    );
    setter.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(g.store.data().interrupts.load(Ordering::SeqCst), 1);
    assert_eq!(
        g.peek(RET, 4),
        [0xAA; 4],
        "an abandoned call writes nothing"
    );
}

#[test]
fn sockets_accept_recv_send() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = WasiConfig {
        preopens: preopens(tmp.path()),
        listeners: vec![listener],
        ..WasiConfig::default()
    };
    let mut g = Guest::new(WasiCtx::new(config).unwrap());
    assert_eq!(g.call("fd_fdstat_get", &[i(4), i(BUF)]), 0);
    assert_eq!(g.peek(BUF, 1)[0], 6, "socket_stream");

    assert_eq!(g.call("fd_fdstat_set_flags", &[i(4), i(4)]), 0);
    assert_eq!(g.call("sock_accept", &[i(4), i(0), i(RET)]), EAGAIN);
    assert_eq!(g.call("fd_fdstat_set_flags", &[i(4), i(0)]), 0);

    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(b"pi").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(b"ng").unwrap();
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).unwrap();
        reply
    });
    assert_eq!(g.call("sock_accept", &[i(4), i(0), i(RET)]), 0);
    let conn = g.u32_at(RET);
    assert_eq!(conn, 5);
    g.poke(IOV, &[BUF.to_le_bytes(), 4u32.to_le_bytes()].concat());
    assert_eq!(
        g.call("sock_recv", &[i(conn), i(IOV), i(1), i(2), i(RET), i(RET2)]),
        0
    );
    assert_eq!(g.u32_at(RET), 4, "WAITALL waits for the whole message");
    assert_eq!(g.peek(BUF, 4), b"ping");
    g.poke(BUF, b"pong");
    assert_eq!(
        g.call("sock_send", &[i(conn), i(IOV), i(1), i(0), i(RET)]),
        0
    );
    assert_eq!(g.u32_at(RET), 4);
    assert_eq!(&peer.join().unwrap(), b"pong");
    assert_eq!(g.read_fd(conn, 16).unwrap(), b"", "peer closed");

    let state = g.ctx().save().unwrap();
    assert!(state
        .fds
        .iter()
        .any(|f| f.kind == FdKindState::Listener { index: 0 }));
    // An open connection comes back closed by its peer: the program reads its end.
    let restored = WasiCtx::restore(
        &state,
        &preopens(tmp.path()),
        vec![TcpListener::bind("127.0.0.1:0").unwrap()],
    )
    .expect("restores");
    let mut moved = Guest::new(restored);
    assert_eq!(
        moved.read_fd(conn, 16).unwrap(),
        b"",
        "peer gone after the move"
    );
    assert_eq!(g.call("sock_shutdown", &[i(conn), i(3)]), 0);
    assert_eq!(g.call("fd_close", &[i(conn)]), 0);
    let state = g.ctx().save().unwrap();
    let err = WasiCtx::restore(&state, &preopens(tmp.path()), vec![]).unwrap_err();
    assert!(matches!(err, Error::MissingListener(0, 0)), "{err}");
    let relisten = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(WasiCtx::restore(&state, &preopens(tmp.path()), vec![relisten]).is_ok());
}

/// Sets the guest's capture flag from another thread after `ms` milliseconds.
fn request_capture_after(g: &Guest, ms: u64) -> std::thread::JoinHandle<()> {
    let capture = g.store.data().capture.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        capture.store(true, Ordering::SeqCst);
    })
}

#[test]
fn blocking_accept_and_recv_are_abandoned_without_side_effects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = WasiConfig {
        listeners: vec![listener],
        ..WasiConfig::default()
    };
    let mut g = Guest::new(WasiCtx::new(config).unwrap());
    let listener_fd = 3;

    g.poke(RET, &[0xAA; 4]);
    let setter = request_capture_after(&g, 30);
    assert_eq!(g.call("sock_accept", &[i(listener_fd), i(0), i(RET)]), 0);
    setter.join().unwrap();
    assert_eq!(g.store.data().interrupts.load(Ordering::SeqCst), 1);
    assert_eq!(g.peek(RET, 4), [0xAA; 4]);
    assert_eq!(
        g.ctx().save().unwrap().fds.len(),
        4,
        "no descriptor was created"
    );

    // Once the capture is over the same call is simply re-executed.
    g.store.data().capture.store(false, Ordering::SeqCst);
    let mut peer = TcpStream::connect(addr).unwrap();
    assert_eq!(g.call("sock_accept", &[i(listener_fd), i(0), i(RET)]), 0);
    let conn = g.u32_at(RET);

    g.poke(IOV, &[BUF.to_le_bytes(), 8u32.to_le_bytes()].concat());
    g.poke(RET, &[0xAA; 4]);
    let setter = request_capture_after(&g, 30);
    assert_eq!(g.call("fd_read", &[i(conn), i(IOV), i(1), i(RET)]), 0);
    setter.join().unwrap();
    assert_eq!(g.store.data().interrupts.load(Ordering::SeqCst), 2);
    assert_eq!(g.peek(RET, 4), [0xAA; 4]);

    // Data that arrives later is still there for the re-executed read.
    g.store.data().capture.store(false, Ordering::SeqCst);
    peer.write_all(b"late").unwrap();
    assert_eq!(g.read_fd(conn, 8).unwrap(), b"late");
}
