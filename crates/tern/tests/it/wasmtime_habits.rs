//! Flags that scripts written for `wasmtime run` pass: `--argv0 NAME`, and `--env NAME`
//! without a value, which inherits this process's value or leaves the variable unset.

use crate::harness::{tern, text};

/// Prints its arguments, then its environment, each string NUL-terminated as WASI hands them
/// over.
const ARGS_AND_ENV: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $print (param $buf i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $buf))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "_start")
    (drop (call $args_sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 1024) (i32.const 2048)))
    (call $print (i32.const 2048) (i32.load (i32.const 4)))
    (drop (call $env_sizes (i32.const 8) (i32.const 12)))
    (drop (call $env (i32.const 4096) (i32.const 8192)))
    (call $print (i32.const 8192) (i32.load (i32.const 12)))))"#;

#[test]
fn argv0_and_inherited_env_behave_as_in_wasmtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("args.wasm");
    std::fs::write(&m, wat::parse_str(ARGS_AND_ENV).expect("wat")).expect("write");
    let module = m.display().to_string();
    let t = tern().with_env("TERN_TEST_INHERITED", "from-host");
    let out = t.run(&[
        "run",
        "--argv0",
        "yosys",
        "--env",
        "SET=1",
        "--env",
        "TERN_TEST_INHERITED",
        "--env",
        "TERN_TEST_NOT_SET_ANYWHERE",
        &module,
        "--",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "yosys\0-q\0SET=1\0TERN_TEST_INHERITED=from-host\0",
        "argv[0] from --argv0; an inherited variable the host lacks stays unset"
    );
    // Without --argv0 the program's name is the module's path as given.
    let out = t.run(&["run", &module]);
    assert_eq!(text(&out.stdout), format!("{module}\0"));
}
