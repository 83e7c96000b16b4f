//! Test helper: the operators of a function written in WAT.

use wasmparser::Operator;

/// The operators and declared locals of the module's last function.
pub fn ops_of(wat: &str) -> (Vec<Operator<'static>>, usize) {
    let wasm: &'static [u8] = Box::leak(wat::parse_str(wat).expect("wat").into_boxed_slice());
    let mut last = None;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.expect("payload") {
            let mut locals = 0;
            for l in body.get_locals_reader().expect("locals") {
                locals += l.expect("local").0 as usize;
            }
            let ops = body
                .get_operators_reader()
                .expect("ops")
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .expect("ops");
            last = Some((ops, locals));
        }
    }
    last.expect("a function body")
}
