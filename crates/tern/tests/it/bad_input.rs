//! Bad input gets a clear error and the documented exit code, never a panic.

use crate::harness::{assert_ends_alike, fixture, tern, text, Ending};

fn snapshot_of_printer(dir: &std::path::Path) -> std::path::PathBuf {
    let snap = dir.join("p.snap");
    let out = tern().run(&[
        "run",
        "--checkpoint-after",
        "50ms",
        "--checkpoint-to",
        &snap.display().to_string(),
        &fixture("printer").display().to_string(),
        "--",
        "3000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(snap.exists());
    snap
}

fn refused(args: &[&str], code: i32, needle: &str) {
    let out = tern().run(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn damaged_snapshots_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = snapshot_of_printer(dir.path());
    let bytes = std::fs::read(&snap).expect("read");
    let bad = dir.path().join("bad.snap");
    let bad_s = bad.display().to_string();

    std::fs::write(&bad, &bytes[..bytes.len() / 2]).expect("write");
    refused(&["resume", &bad_s], 2, "truncated");
    refused(&["snapshot", "inspect", &bad_s], 2, "truncated");

    // A flipped bit in the memory pages, which a resume maps and checks while the program
    // runs: the program must not get to print anything.
    let mut flipped = bytes.clone();
    let at = bytes.len() - 100;
    flipped[at] ^= 1;
    std::fs::write(&bad, &flipped).expect("write");
    refused(&["resume", &bad_s], 2, "checksum");
    assert!(tern().run(&["resume", &bad_s]).stdout.is_empty());
    refused(&["snapshot", "inspect", &bad_s], 2, "checksum");
    // And in the header, which is checked before anything runs.
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    std::fs::write(&bad, &flipped).expect("write");
    refused(&["resume", &bad_s], 2, "checksum");

    let mut version = bytes.clone();
    version[8] = 7;
    std::fs::write(&bad, &version).expect("write");
    refused(&["resume", &bad_s], 2, "version 7");

    std::fs::write(&bad, b"hello").expect("write");
    refused(&["resume", &bad_s], 2, "not a Tern snapshot");

    refused(
        &[
            "resume",
            "--module",
            &fixture("compute").display().to_string(),
            &snap.display().to_string(),
        ],
        2,
        "was taken from",
    );
}

#[test]
fn snapshot_is_immutable_and_resumes_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = snapshot_of_printer(dir.path());
    let s = snap.display().to_string();
    let a = tern().run(&["resume", &s]);
    let b = tern().run(&["resume", &s]);
    assert_eq!(a.status.code(), Some(3));
    assert_eq!(a.stdout, b.stdout);
    assert!(!a.stdout.is_empty());
}

#[test]
fn inspect_shows_module_memory_and_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = snapshot_of_printer(dir.path());
    let out = tern().run(&["snapshot", "inspect", "--json", &snap.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["module_digest"]
        .as_str()
        .expect("digest")
        .starts_with("sha256:"));
    assert!(v["memory_bytes"].as_u64().expect("memory") >= 65536);
    // Zero pages are left out, raw pages are stored whole (so that they can be mapped).
    let nonzero: u64 = v["memories"][0]["nonzero_pages"].as_u64().expect("pages");
    assert!(nonzero >= 1);
    assert!(v["memory_nonzero_bytes"].as_u64() == Some(nonzero * 65536));
    assert!(v["file_bytes"].as_u64().expect("size") >= nonzero * 65536);
    assert!(v["function"]["index"].is_u64());
    assert!(v["stack_depth"].as_u64().expect("depth") >= 2);
    assert!(v["fds"].as_array().expect("fds").len() >= 3);
}

#[test]
fn unknown_import_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m.wasm");
    let wasm = wat::parse_str(r#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1) (func (export "_start")))"#)
        .expect("wat");
    std::fs::write(&m, wasm).expect("write");
    refused(&["run", &m.display().to_string()], 1, "env.launch_missiles");
}

#[test]
fn shared_memory_and_threads_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m.wasm");
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#,
    )
    .expect("wat");
    std::fs::write(&m, wasm).expect("write");
    refused(&["run", &m.display().to_string()], 1, "shared memory");
    let wasm = wat::parse_str(
        r#"(module (import "wasi" "thread-spawn" (func (param i32) (result i32))) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .expect("wat");
    std::fs::write(&m, wasm).expect("write");
    refused(&["run", &m.display().to_string()], 1, "thread spawning");
}

#[test]
fn trap_gives_message_and_nonzero_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("m.wasm");
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .expect("wat");
    std::fs::write(&m, wasm).expect("write");
    refused(&["run", &m.display().to_string()], 134, "trapped");
}

#[test]
fn program_that_ends_before_the_deadline_writes_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = dir.path().join("never.snap");
    let out = tern().run(&[
        "run",
        "--checkpoint-after",
        "30s",
        "--checkpoint-to",
        &snap.display().to_string(),
        &fixture("printer").display().to_string(),
        "--",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!snap.exists());
}

#[test]
fn embedded_module_resumes_where_the_cache_has_never_seen_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let printer = fixture("printer").display().to_string();
    let reference = tern().unmoved("printer", &["3000"]);
    let snap = dir.path().join("e.snap");
    let s = snap.display().to_string();
    let first = tern().run(&[
        "run",
        "--checkpoint-after",
        "50ms",
        "--checkpoint-to",
        &s,
        "--embed-module",
        &printer,
        "--",
        "3000",
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let out = tern().run(&["snapshot", "inspect", "--json", &s]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["module_embedded"], true);

    let elsewhere = dir.path().join("other-home");
    let second = tern().with_home(&elsewhere).run(&["resume", &s]);
    let mut stdout = first.stdout;
    stdout.extend_from_slice(&second.stdout);
    let got = Ending {
        code: second.status.code(),
        stdout: Some(stdout),
        ..Ending::default()
    };
    assert_ends_alike(
        &format!("resumed in a new home: {}", text(&second.stderr)),
        &got,
        &reference,
    );
}

#[test]
fn module_missing_from_cache_is_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snap = snapshot_of_printer(dir.path());
    let elsewhere = dir.path().join("other-home");
    let out = tern()
        .with_home(&elsewhere)
        .run(&["resume", &snap.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not in the local cache"),
        "{}",
        text(&out.stderr)
    );
    // Given explicitly, the same module works.
    let out = tern().with_home(&elsewhere).run(&[
        "resume",
        "--module",
        &fixture("printer").display().to_string(),
        &snap.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn max_memory_makes_growing_beyond_it_fail() {
    let bigmem = fixture("bigmem").display().to_string();
    let out = tern().run(&["run", "--max-memory", "32MiB", &bigmem, "--", "64", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("out of memory"));
    let out = tern().run(&["run", "--max-memory", "128MiB", &bigmem, "--", "64", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = tern().run(&["run", "--max-memory", "lots", &bigmem]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses it: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("expected a size"));
}
