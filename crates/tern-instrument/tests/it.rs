//! The transform on real modules: every fixture program, rewritten with its locals in variables
//! and with every rewritten function's locals in memory, is a valid module with the host
//! contract's exports (behaviour is tested by running them, in `tern-runtime` and `tern`).

use tern_instrument::{instrument, Options};
use wasmparser::{Validator, WasmFeatures};

const FIXTURES: [&str; 7] = [
    "compute",
    "printer",
    "files",
    "recursion",
    "bigmem",
    "ticker",
    "counter",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn validate(wasm: &[u8]) -> Result<(), String> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(wasm)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn exports(wasm: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ExportSection(r)) = p {
            for e in r.into_iter().flatten() {
                out.push(e.name.to_string());
            }
        }
    }
    out
}

#[test]
fn fixtures_rewritten_either_way_validate() {
    for name in FIXTURES {
        let wasm = fixture(name);
        for (bound, forms) in [(None, None), (Some(0), None), (None, Some(0))] {
            let options = Options {
                locals_in_memory_above: bound,
                two_forms_up_to: forms,
                ..Options::default()
            };
            let out = instrument(&wasm, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
            validate(&out.wasm).unwrap_or_else(|e| panic!("{name} ({bound:?}): {e}"));
            assert!(out.stats.instrumented > 0, "{name}: nothing rewritten");
            match bound {
                // Small programs never reach the default bound for memory, and nearly every
                // function gets two forms (libc's formatted printing is above that bound).
                None => {
                    assert_eq!(out.stats.locals_in_memory, 0, "{name}");
                    match forms {
                        None => assert!(
                            out.stats.two_forms * 10 >= out.stats.instrumented * 9,
                            "{name}: {} of {} with two forms",
                            out.stats.two_forms,
                            out.stats.instrumented
                        ),
                        Some(_) => assert_eq!(out.stats.two_forms, 0, "{name}"),
                    }
                }
                // Every rewritten function with at most one result moves its locals.
                Some(_) => assert!(
                    out.stats.locals_in_memory * 10 >= out.stats.instrumented * 9,
                    "{name}: {} of {} moved",
                    out.stats.locals_in_memory,
                    out.stats.instrumented
                ),
            }
            let names = exports(&out.wasm);
            for want in [
                tern_instrument::STATE_EXPORT,
                tern_instrument::SP_EXPORT,
                tern_instrument::FLAG_EXPORT,
                tern_instrument::FRAMES_EXPORT,
            ] {
                assert!(names.iter().any(|n| n == want), "{name}: no export {want}");
            }
            let hinted = cold_hints_point_at_ifs(&out.wasm);
            if forms.is_none() && bound.is_none() {
                assert!(hinted > 0, "{name}: no branch hints");
            }
        }
    }
}

/// Checks that every hint of the `metadata.code.branch_hint` section marks an `if` of its
/// function as unlikely, in ascending order as the proposal requires; returns how many.
fn cold_hints_point_at_ifs(wasm: &[u8]) -> usize {
    let mut imported = 0u32;
    let mut bodies = Vec::new();
    let mut hints = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(wasm) {
        match p.expect("payload") {
            wasmparser::Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    if matches!(i.expect("import").ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => bodies.push(body.range()),
            wasmparser::Payload::CustomSection(c) => {
                if let wasmparser::KnownCustom::BranchHints(r) = c.as_known() {
                    assert!(bodies.is_empty(), "branch hints after the code section");
                    for f in r {
                        let f = f.expect("function hints");
                        let list: Vec<_> = f.hints.into_iter().map(|h| h.expect("hint")).collect();
                        hints.push((f.func, list));
                    }
                }
            }
            _ => {}
        }
    }
    let mut count = 0;
    for (func, list) in hints {
        let body = &bodies[(func - imported) as usize];
        let mut last = None;
        for h in list {
            assert!(!h.taken, "function {func}: a hint says likely");
            assert!(
                last < Some(h.func_offset),
                "function {func}: hints out of order"
            );
            last = Some(h.func_offset);
            let at = body.start + h.func_offset as usize;
            assert_eq!(
                wasm[at], 0x04,
                "function {func}: hint at {} not on an `if`",
                h.func_offset
            );
            count += 1;
        }
    }
    count
}

/// `return`, a branch to the function's label and a tail call all leave through the frame's
/// release; the module must validate with the body wrapped in its extra block.
#[test]
fn every_way_out_of_a_function_with_locals_in_memory_validates() {
    let wat = r#"
    (module
      (type $t (func (param i32) (result i32)))
      (memory 1)
      (func $spin (type $t) (local $i i32)
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get 0))))
        (local.get $i))
      (func $ways (param $n i32) (result i32) (local $x i64) (local $f f64) (local $e exnref)
        (local.set $x (i64.extend_i32_u (call $spin (local.get $n))))
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (block $b
          (drop (br_if 1 (i32.const 7) (i32.eq (local.get $n) (i32.const 2))))
          (br_if $b (i32.eq (local.get $n) (i32.const 3))))
        (local.set $f (f64.convert_i64_u (local.tee $x (i64.add (local.get $x) (i64.const 1)))))
        (if (i32.eq (local.get $n) (i32.const 4))
          (then (return_call $spin (i32.wrap_i64 (local.get $x)))))
        (block $h (result exnref)
          (try_table (catch_all_ref $h) (drop (call $spin (local.get $n))))
          (ref.null exn))
        (local.set $e)
        (i32.add (i32.trunc_f64_u (local.get $f)) (ref.is_null (local.get $e))))
      (func (export "_start") (drop (call $ways (i32.const 5)))))
    "#;
    let wasm = wat::parse_str(wat).expect("wat");
    let options = Options {
        locals_in_memory_above: Some(0),
        ..Options::default()
    };
    let out = instrument(&wasm, &options).expect("instrument");
    validate(&out.wasm).expect("valid");
    assert_eq!(out.stats.locals_in_memory, out.stats.instrumented);
}
