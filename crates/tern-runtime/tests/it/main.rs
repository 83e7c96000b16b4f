//! The runtime in-process: a guest that exercises every construct the transform must re-enter
//! (if arms, call_indirect, try_table with a caught exception, multi-value results, loop
//! parameters, values left on the operand stack under a call, v128, i64 and exnref locals,
//! `return`, a branch to the function's label, a tail call and recursion) is
//! captured at *every* safe point in turn — each resume is captured again at its first poll —
//! and must still end with the result of an uninterrupted run.

use std::sync::Arc;

use tern_runtime::{Control, Outcome, Resumable, RunOptions, Runtime, SnapshotFile, Start};
use tern_snapshot::PageEncoding;
use tern_wasi::WasiConfig;

const GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (type $t (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table 3 funcref)
  (elem (i32.const 0) $inc $dbl $spin)
  (tag $e (param i32))
  (global $acc (mut i32) (i32.const 7))

  ;; Loops make every callee a capture point. $inc's is a counted loop, which the running form
  ;; runs without its poll (it ends soon); the others compare with a global, so they poll.
  (global $two i32 (i32.const 2))
  (func $inc (type $t) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 3))))
    (i32.add (local.get 0) (local.get $i)))
  (func $dbl (type $t) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (global.get $two))))
    (i32.mul (local.get 0) (i32.const 2)))
  (func $maybe_throw (param $n i32) (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (global.get $two))))
    (if (i32.eqz (i32.rem_u (local.get $n) (i32.const 3)))
      (then (throw $e (i32.add (local.get $n) (i32.const 100)))))
    (local.get $n))

  ;; Two results; a value of the caller's stays under every call.
  (func $step (param $n i32) (result i32 i32)
    (i32.mul (local.get $n) (i32.const 31))
    (if (result i32) (i32.and (local.get $n) (i32.const 1))
      (then (call_indirect (type $t) (local.get $n) (i32.const 0)))
      (else (call_indirect (type $t) (call $inc (local.get $n)) (i32.const 1))))
    (i32.add)
    (block $caught (result i32)
      (try_table (result i32) (catch $e $caught)
        (call $maybe_throw (local.get $n))))
    (i32.const 1)
    (loop $p (param i32 i32) (result i32)
      ;; loop with parameters and a call inside
      (call $inc)
      (i32.add)))

  ;; An exnref held in a local across capture points: live for one call, then dead.
  (func $held (param $n i32) (result i32) (local $x exnref) (local $v v128) (local $w i64)
    ;; SIMD and 64-bit values live across capture points too.
    (local.set $v (i32x4.splat (i32.mul (local.get $n) (i32.const 3))))
    (local.set $w (i64.shl (i64.extend_i32_u (local.get $n)) (i64.const 40)))
    (drop (call $inc (local.get $n)))
    (local.set $v (i32x4.add (local.get $v) (i32x4.splat (call $dbl (local.get $n)))))
    (block $h (result exnref)
      (try_table (catch_all_ref $h) (drop (call $maybe_throw (local.get $n))))
      (ref.null exn))
    (local.set $x)
    (drop (call $inc (local.get $n)))
    (i32.add
      (i32.add (ref.is_null (local.get $x)) (i32.wrap_i64 (i64.shr_u (local.get $w) (i64.const 38))))
      (i32.add (i32x4.extract_lane 2 (local.get $v)) (call $inc (local.get $n)))))

  ;; Every way out of a function: return, a branch to its label, a tail call, the end.
  (func $ways (param $n i32) (result i32) (local $x i64)
    (local.set $x (i64.extend_i32_u (call $inc (local.get $n))))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 11))))
    (block $b
      (drop (br_if 1 (i32.const 13) (i32.eq (local.get $n) (i32.const 2))))
      (br_if $b (i32.eq (local.get $n) (i32.const 3))))
    (local.set $x (i64.add (local.get $x) (i64.extend_i32_u (call $dbl (local.get $n)))))
    (if (i32.eq (local.get $n) (i32.const 4))
      (then (return_call $inc (i32.wrap_i64 (local.get $x)))))
    (i32.wrap_i64 (local.get $x)))

  ;; Recursion that opens with a leaf loop stepping its parameter: the entry poll (it is in the
  ;; table, so it keeps one) and the loop's poll stand at the same operator, but only the loop's
  ;; runs once per four rounds (its body unrolled).
  (func $spin (param $n i32) (result i32)
    (loop $l
      (local.set $n (i32.add (local.get $n) (i32.const 5)))
      (br_if $l (i32.and (local.get $n) (i32.const 8))))
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 60))
      (then (i32.add (call $spin (local.get $n)) (i32.const 1)))
      (else (local.get $n))))

  ;; A counted loop with a result (its poll-free copy must yield it too).
  (func $sum (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $l (result i32)
      (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (local.get $i))))
      (local.get $s)
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                          (local.get $n)))))

  ;; A counted loop too long for the budget (its call, to a function that cannot unwind, counts
  ;; as 1,000 operations), with a result: it keeps its (strided) poll.
  (func $mix (param $x i32) (result i32)
    (i32.xor (i32.mul (local.get $x) (i32.const 0x9e3779b1)) (i32.const 7)))
  (func $long (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $l (result i32)
      (local.set $s (i32.add (call $mix (local.get $s)) (local.get $i)))
      (local.get $s)
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 3)))
                          (local.get $n)))))

  ;; Short loops that the running form unrolls (four copies of the body per poll), leaving at
  ;; every copy as n varies: a `while` (its way back a `br 0`, its exit a branch out) and a
  ;; do-while whose test is not a counter's.
  (func $unrolled (param $n i32) (result i32) (local $i i32) (local $s i32)
    (block $out
      (loop $l
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $s (i32.add (i32.mul (local.get $s) (i32.const 3)) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (loop $m
      (local.set $s (i32.xor (i32.mul (local.get $s) (i32.const 5)) (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $m (i32.gt_s (i32.mul (local.get $i) (i32.const 1)) (i32.const 0))))
    (local.get $s))

  ;; Recursion without a loop, entered only by direct calls: it is lean (no poll and no rewind
  ;; check on entry); it polls after its recursive call instead, with the call's result on the
  ;; stack, and a rewind enters its rewind entry through its trampoline.
  (func $rec (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1))) (local.get $n)))))

  ;; Mutual recursion, both lean. In $odd a loop stepping a local follows the call at once: the
  ;; poll after the call and the loop's poll stand at the same operator, and only the loop's
  ;; runs once per four rounds (its body unrolled).
  (func $even (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (i32.mul (call $odd (i32.sub (local.get $n) (i32.const 1))) (i32.const 3)))))
  (func $odd (param $n i32) (result i32) (local $i i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 2))
      (else
        (call $even (i32.sub (local.get $n) (i32.const 1)))
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 3)))
          (br_if $l (i32.and (local.get $i) (i32.const 4))))
        (i32.add (local.get $i)))))

  (func (export "_start") (local $k i32) (local $a i32) (local $b i32)
    (loop $main
      (global.set $acc
        (i32.add (global.get $acc) (call $rec (i32.and (local.get $k) (i32.const 3)))))
      (global.set $acc
        (i32.add (global.get $acc) (call $ways (i32.and (local.get $k) (i32.const 7)))))
      (global.set $acc (i32.add (global.get $acc) (call $held (local.get $k))))
      (global.set $acc
        (i32.add (global.get $acc) (call $spin (i32.and (local.get $k) (i32.const 7)))))
      (global.set $acc
        (i32.add (global.get $acc) (call $sum (i32.and (local.get $k) (i32.const 15)))))
      (global.set $acc
        (i32.add (global.get $acc) (call $even (i32.and (local.get $k) (i32.const 7)))))
      (global.set $acc
        (i32.add (global.get $acc) (call $unrolled (i32.and (local.get $k) (i32.const 15)))))
      (if (i32.eq (local.get $k) (i32.const 5))
        (then (global.set $acc (i32.add (global.get $acc) (call $long (i32.const 601))))))
      (call $step (local.get $k))
      (local.set $b)
      (local.set $a)
      (global.set $acc
        (i32.add
          (i32.mul (global.get $acc) (i32.const 16777619))
          (i32.xor (local.get $a) (i32.shl (local.get $b) (i32.const 7)))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $main (i32.lt_u (local.get $k) (i32.const 60))))
    (global.get $acc)
    (i32.xor (i32.shr_u (global.get $acc) (i32.const 8)))
    (i32.xor (i32.shr_u (global.get $acc) (i32.const 16)))
    (i32.xor (i32.shr_u (global.get $acc) (i32.const 24)))
    (i32.and (i32.const 255))
    (call $exit))
)
"#;

fn config() -> WasiConfig {
    WasiConfig {
        args: vec!["guest".into()],
        ..Default::default()
    }
}

fn capture_now() -> RunOptions {
    let control = Arc::new(Control::new());
    control.request();
    RunOptions {
        control,
        ..RunOptions::default()
    }
}

#[test]
fn captured_at_every_safe_point_ends_like_an_uninterrupted_run() {
    every_safe_point(&[(None, None)]);
}

/// The same with every rewritten function in one form (its rewinding form, which also runs:
/// the form functions too large for two get), resuming alternately in that form and in two.
#[test]
fn one_form_capture_and_resume_like_two() {
    every_safe_point(&[(None, Some(0)), (None, None)]);
}

/// The same with every rewritten function's locals in Tern's locals memory (the form the
/// largest functions of real programs get), resuming alternately in that form and the usual one:
/// a snapshot does not depend on where the locals lived.
#[test]
fn locals_in_memory_capture_and_resume_like_locals_in_variables() {
    every_safe_point(&[(Some(0), None), (None, None), (Some(0), None)]);
}

/// Capture the guest at each of its safe points in turn, the k-th resume running under
/// `bounds[k % len]` (see `Runtime::set_locals_in_memory_above` and `set_two_forms_up_to`).
fn every_safe_point(bounds: &[(Option<usize>, Option<usize>)]) {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtimes: Vec<(Runtime, tern_runtime::Prepared)> = bounds
        .iter()
        .map(|&(memory, forms)| {
            let mut rt = Runtime::new(cache.path()).expect("runtime");
            rt.set_locals_in_memory_above(memory);
            rt.set_two_forms_up_to(forms);
            let prepared = rt
                .prepare(&wat::parse_str(GUEST).expect("wat"))
                .expect("prepare");
            (rt, prepared)
        })
        .collect();
    let wasm = wat::parse_str(GUEST).expect("wat");
    let (rt, prepared) = &runtimes[0];

    let expected = match rt
        .run(prepared, Start::Fresh(config()), &RunOptions::default())
        .expect("run")
    {
        Outcome::Exited(code) => code,
        Outcome::Captured(_) | Outcome::Migrated => panic!("captured without a request"),
    };
    let plain = rt.compile_uninstrumented(&wasm).expect("compile");
    assert_eq!(
        rt.run_uninstrumented(&plain, config()).expect("plain run"),
        expected
    );

    let mut outcome = rt
        .run(prepared, Start::Fresh(config()), &capture_now())
        .expect("run");
    let mut captures = 0;
    let code = loop {
        match outcome {
            Outcome::Exited(code) => break code,
            Outcome::Migrated => panic!("migrated without a request"),
            Outcome::Captured(snapshot) => {
                captures += 1;
                assert!(captures < 100_000, "no progress between captures");
                // Through the file format every time, as between processes: alternately a
                // mapped file and a compressed snapshot decoded into memory.
                let snapshot = if captures % 2 == 0 {
                    let path = cache.path().join(format!("{}.tsnap", captures % 4));
                    std::fs::write(&path, tern_snapshot::encode(&snapshot, PageEncoding::Raw))
                        .expect("write");
                    Resumable::File(Arc::new(SnapshotFile::open(&path).expect("open")))
                } else {
                    let bytes = tern_snapshot::encode(&snapshot, PageEncoding::Lz4);
                    Resumable::Snapshot(Box::new(tern_snapshot::decode(&bytes).expect("decode")))
                };
                let start = Start::Resume {
                    snapshot,
                    preopens: vec![],
                    listeners: vec![],
                };
                let (rt, prepared) = &runtimes[captures % runtimes.len()];
                outcome = rt.run(prepared, start, &capture_now()).expect("resume");
            }
        }
    };
    assert_eq!(code, expected, "after {captures} captures");
    assert!(captures > 500, "only {captures} captures");
}

/// Sleeps an hour at a time in `poll_oneoff`.
const SLEEPER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (i64.store (i32.const 24) (i64.const 3600000000000))
      (i32.store (i32.const 16) (i32.const 1))
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $l))))
"#;

/// The same, calling `poll_oneoff` through a table: a rewind that finds no frame left under an
/// indirect call calls the import again through the program's own table.
const INDIRECT_SLEEPER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (type $pt (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (elem (i32.const 0) $poll)
  (func (export "_start")
    (loop $l
      (i64.store (i32.const 24) (i64.const 3600000000000))
      (i32.store (i32.const 16) (i32.const 1))
      (drop (call_indirect (type $pt) (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)
        (i32.const 0)))
      (br $l))))
"#;

#[test]
fn a_program_asleep_in_poll_oneoff_is_captured_and_resumed() {
    asleep_captured_and_resumed(SLEEPER);
    asleep_captured_and_resumed(INDIRECT_SLEEPER);
}

fn asleep_captured_and_resumed(guest: &str) {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(cache.path()).expect("runtime");
    let prepared = rt
        .prepare(&wat::parse_str(guest).expect("wat"))
        .expect("prepare");
    let config = WasiConfig {
        args: vec!["sleeper".into()],
        env: vec![],
        preopens: vec![],
        listeners: vec![],
    };
    let options = RunOptions {
        checkpoint_after: Some(std::time::Duration::from_millis(50)),
        ..RunOptions::default()
    };
    let Outcome::Captured(snapshot) = rt
        .run(&prepared, Start::Fresh(config), &options)
        .expect("run")
    else {
        panic!("a program that sleeps for an hour ended");
    };
    let latency = options
        .stats
        .lock()
        .expect("stats")
        .request_to_safe_point_ms;
    eprintln!("request to safe point while asleep: {latency:?} ms");
    assert!(latency.is_some());
    // Resumed, it goes back to sleep (the interrupted call runs again) until captured again.
    let again = RunOptions {
        checkpoint_after: Some(std::time::Duration::from_millis(50)),
        ..RunOptions::default()
    };
    let start = Start::Resume {
        snapshot: Resumable::Snapshot(snapshot),
        preopens: vec![],
        listeners: vec![],
    };
    let out = rt.run(&prepared, start, &again).expect("resume");
    assert!(matches!(out, Outcome::Captured(_)));
}

/// Loops that clang shapes as counted loops (see `tern-instrument`'s `counted.rs`) but that run
/// for seconds: going round 2^31 times, wrapping around through `!=`, or wrapping below zero
/// and coming back; and a `while` loop, unrolled. Each must keep its poll, so a capture asked for
/// at the start comes at once.
const LONG_COUNTED_LOOPS: [&str; 4] = [
    r#"(module (memory (export "memory") 1)
      (func (export "_start") (local $c i32)
        (block $out
          (loop $l
            (br_if $out (i32.eq (local.get $c) (i32.const 0x7fffffff)))
            (i32.store (i32.const 0) (local.get $c))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $l)))))"#,
    r#"(module (memory (export "memory") 1)
      (func (export "_start") (local $c i32) (local $b i32)
        (local.set $b (i32.const 0x7fffffff))
        (loop $l (i32.store (i32.const 0) (local.get $c))
          (br_if $l (i32.lt_s (local.tee $c (i32.add (local.get $c) (i32.const 1)))
                              (local.get $b))))))"#,
    r#"(module (memory (export "memory") 1)
      (func (export "_start") (local $c i32)
        (local.set $c (i32.const 2))
        (loop $l (i32.store (i32.const 0) (local.get $c))
          (br_if $l (local.tee $c (i32.add (local.get $c) (i32.const 2)))))))"#,
    r#"(module (memory (export "memory") 1)
      (func (export "_start") (local $c i32)
        (local.set $c (i32.const 1))
        (loop $l (i32.store (i32.const 0) (local.get $c))
          (br_if $l (i32.gt_u (local.tee $c (i32.add (local.get $c) (i32.const -4)))
                              (i32.const 3))))))"#,
];

#[test]
fn long_counted_loops_keep_their_polls() {
    captured_at_once(&LONG_COUNTED_LOOPS);
}

/// Each guest, run with a capture asked for before it starts (each would run for seconds),
/// must reach a safe point: a capture, not its end.
fn captured_at_once(guests: &[&str]) {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(cache.path()).expect("runtime");
    for guest in guests {
        let prepared = rt
            .prepare(&wat::parse_str(guest).expect("wat"))
            .expect("prepare");
        let out = rt
            .run(&prepared, Start::Fresh(config()), &capture_now())
            .expect("run");
        assert!(
            matches!(out, Outcome::Captured(_)),
            "ran to its end without a safe point: {guest}"
        );
    }
}

/// Recursion without loops that would run for seconds: 2^31 calls of a lean function (no poll
/// on entry), alone and through a pair that call each other. The polls after their recursive
/// calls must bring a capture asked for at the start at once.
const LONG_RECURSIONS: [&str; 2] = [
    r#"(module (memory (export "memory") 1)
      (func $tree (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n))
          (then (i32.const 1))
          (else (i32.add (call $tree (i32.sub (local.get $n) (i32.const 1)))
                         (call $tree (i32.sub (local.get $n) (i32.const 1)))))))
      (func (export "_start") (i32.store (i32.const 0) (call $tree (i32.const 31)))))"#,
    r#"(module (memory (export "memory") 1)
      (func $a (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n))
          (then (i32.const 1))
          (else (i32.add (call $b (i32.sub (local.get $n) (i32.const 1)))
                         (call $b (i32.sub (local.get $n) (i32.const 1)))))))
      (func $b (param $n i32) (result i32)
        (i32.xor (call $a (local.get $n)) (i32.const 1)))
      (func (export "_start") (i32.store (i32.const 0) (call $a (i32.const 31)))))"#,
];

#[test]
fn recursion_without_loops_reaches_safe_points() {
    captured_at_once(&LONG_RECURSIONS);
}

/// A loop with a call that may unwind at its body's top level: when every iteration passes the
/// call, the poll after it stands for the loop's poll. This loop goes round 2^31 times by a
/// branch before its call and never makes the call, so it must keep its own poll.
const ROUND_BEFORE_THE_CALL: &str = r#"(module (memory (export "memory") 1)
  (func $f (result i32) (local $i i32)
    (loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                 (i32.const 3))))
    (local.get $i))
  (func (export "_start") (local $i i32)
    (block $done
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $done (i32.eq (local.get $i) (i32.const 0x7fffffff)))
        (br_if $l (i32.const 1))
        (i32.store (i32.const 0) (call $f))
        (br $l)))))"#;

#[test]
fn a_loop_that_goes_round_before_its_call_keeps_its_poll() {
    captured_at_once(&[ROUND_BEFORE_THE_CALL]);
}

/// Compiling a module under this transform version removes what other versions compiled for
/// the same module (useless to this Tern, and 0.75 GiB for Yosys), and nothing else.
#[test]
fn compiled_code_of_other_transform_versions_is_removed() {
    let cache = tempfile::tempdir().expect("tempdir");
    let wasm = wat::parse_str(LONG_COUNTED_LOOPS[0]).expect("wat");
    let hex = tern_snapshot::digest(&wasm)
        .trim_start_matches("sha256:")
        .to_string();
    let compiled = cache.path().join("compiled");
    std::fs::create_dir_all(&compiled).expect("mkdir");
    let version = tern_instrument::TRANSFORM_VERSION;
    let other = "0".repeat(64);
    let stale = [
        format!("{hex}-t{}-m30000-f10000.cwasm", version - 1),
        format!("{hex}-t{}-m30000-f10000.json", version - 1),
        format!("{hex}-t{}-m0-f0.cwasm", version + 1),
    ];
    let kept = [
        format!("{other}-t{}-m30000-f10000.cwasm", version - 1),
        format!("{hex}-t{version}-m0-f0.cwasm"),
    ];
    for name in stale.iter().chain(&kept) {
        std::fs::write(compiled.join(name), b"old").expect("write");
    }
    let rt = Runtime::new(cache.path()).expect("runtime");
    let prepared = rt.prepare(&wasm).expect("prepare");
    assert!(!prepared.cached);
    for name in &stale {
        assert!(!compiled.join(name).exists(), "{name} is still there");
    }
    for name in &kept {
        assert!(compiled.join(name).exists(), "{name} was removed");
    }
    assert!(rt.prepare(&wasm).expect("prepare again").cached);
}
