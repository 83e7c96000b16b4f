//! Calls a guest is blocked in when it is captured continue as the same wait after resume.

use std::time::Duration;

use crate::harness::{tern, text};

/// Sleeps 3 s in one `poll_oneoff` (a relative monotonic timer, as wasi-libc's `nanosleep`
/// asks) and writes how long the sleep took by its own monotonic clock, 8 bytes little endian.
const SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $now (i32.const 1) (i64.const 0) (i32.const 300)))
    ;; One subscription at 0: a clock (tag 0), monotonic (id 1), 3 s, relative (flags 0).
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (drop (call $now (i32.const 1) (i64.const 0) (i32.const 308)))
    (i64.store (i32.const 316) (i64.sub (i64.load (i32.const 308)) (i64.load (i32.const 300))))
    (i32.store (i32.const 256) (i32.const 316))
    (i32.store (i32.const 260) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))"#;

fn slept(stdout: &[u8]) -> Duration {
    let bytes: [u8; 8] = stdout.try_into().expect("8 bytes of elapsed time");
    Duration::from_nanos(u64::from_le_bytes(bytes))
}

#[test]
fn a_sleep_keeps_its_remaining_time_across_checkpoint_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("sleeper.wasm");
    std::fs::write(&m, wat::parse_str(SLEEPER).expect("wat")).expect("write");
    let (module, snap) = (m.display().to_string(), dir.path().join("s.snap"));
    let snap = snap.display().to_string();
    let t = tern();
    let first = t.run(&[
        "run",
        "--checkpoint-after",
        "2s",
        "--checkpoint-to",
        &snap,
        &module,
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(
        first.stdout.is_empty(),
        "captured in the sleep, before its end"
    );
    let resumed = t.run(&["resume", &snap]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    // By the guest's clock (which does not count the time between the two processes) the sleep
    // lasts its 3 s: not cut short, and not started over after the 2 s it had already slept
    // (that would be 5 s).
    let took = slept(&resumed.stdout);
    assert!(
        (Duration::from_secs(3)..Duration::from_millis(4_500)).contains(&took),
        "the sleep took {took:?}"
    );
}

/// Waits in one `sock_accept` on its listening socket (descriptor 3: no directories) and
/// writes the errno it got as two digits, ones first.
const ACCEPTOR: &str = r#"(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $fd i32) (local $r i32)
    (local.set $fd (i32.const 3))
    (local.set $r (call $accept (local.get $fd) (i32.const 0) (i32.const 100)))
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (i32.rem_u (local.get $r) (i32.const 10))))
    (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.div_u (local.get $r) (i32.const 10))))
    (i32.store (i32.const 256) (i32.const 200))
    (i32.store (i32.const 260) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))"#;

#[test]
fn a_blocked_accept_resumes_on_its_own_listening_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("acceptor.wasm");
    std::fs::write(&m, wat::parse_str(ACCEPTOR).expect("wat")).expect("write");
    let module = m.display().to_string();
    let snap = dir.path().join("a.snap").display().to_string();
    let ep = dir.path().join("endpoints");
    let t = tern();
    let first = t.run(&[
        "run",
        "--tcplisten",
        "127.0.0.1:0",
        "--checkpoint-after",
        "300ms",
        "--checkpoint-to",
        &snap,
        &module,
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(first.stdout.is_empty(), "captured while it waited");
    let resumed = t
        .command()
        .args(["resume", "--tcplisten", "127.0.0.1:0", "--endpoints-file"])
        .arg(&ep)
        .arg(&snap)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tern resume");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let address = loop {
        if let Some(a) = std::fs::read_to_string(&ep)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
        {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "no endpoints file");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Resumed, the program waits again on descriptor 3 (before: at once errno 57, ENOTSOCK,
    // as if it had called accept on stdin) and accepts this connection.
    let conn = std::net::TcpStream::connect(&address).expect("connect");
    let out = resumed.wait_with_output().expect("resume ends");
    drop(conn);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "00", "errno 0: accepted");
}
