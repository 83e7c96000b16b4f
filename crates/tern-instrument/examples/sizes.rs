//! Compare function body sizes and local counts of two modules (before/after instrumentation):
//! `cargo run --release -p tern-instrument --example sizes -- BEFORE.wasm AFTER.wasm`.
fn bodies(wasm: &[u8]) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::CodeSectionEntry(b)) = p {
            let mut n = 0;
            if let Ok(r) = b.get_locals_reader() {
                for l in r.into_iter().flatten() {
                    n += l.0;
                }
            }
            out.push((b.range().len(), n));
        }
    }
    out
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (Some(before), Some(after)) = (a.get(1), a.get(2)) else {
        eprintln!("usage: sizes BEFORE.wasm AFTER.wasm");
        std::process::exit(2);
    };
    let x = bodies(&std::fs::read(before).unwrap_or_default());
    let y = bodies(&std::fs::read(after).unwrap_or_default());
    let mut rows: Vec<_> = x.iter().zip(y.iter()).enumerate().collect();
    rows.sort_by_key(|r| std::cmp::Reverse((r.1).1 .0));
    for (i, (b, c)) in rows.iter().take(15) {
        println!(
            "func {i}: {} -> {} bytes, locals {} -> {}",
            b.0, c.0, b.1, c.1
        );
    }
    let (sa, sb): (usize, usize) = (x.iter().map(|v| v.0).sum(), y.iter().map(|v| v.0).sum());
    println!("total {sa} -> {sb}");
}
