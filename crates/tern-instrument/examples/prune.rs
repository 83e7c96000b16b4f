//! Keep only the largest function bodies of a module (every other body becomes `unreachable`),
//! to measure what compiling those functions costs on their own:
//! `cargo run --release -p tern-instrument --example prune -- IN.wasm OUT.wasm MIN_BODY_BYTES`
//! (or `=I,J,...` to keep the bodies with those indices among defined functions).

use wasm_encoder::{CodeSection, Function, Instruction, Module, RawSection};
use wasmparser::{Parser, Payload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output), Some(min)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: prune IN.wasm OUT.wasm MIN_BODY_BYTES".into());
    };
    let (min, only): (usize, Option<Vec<usize>>) = match min.strip_prefix('=') {
        Some(list) => (
            0,
            Some(list.split(',').map(str::parse).collect::<Result<_, _>>()?),
        ),
        None => (min.parse()?, None),
    };
    let wasm = std::fs::read(input)?;
    let mut module = Module::new();
    let mut code = CodeSection::new();
    let (mut kept, mut total) = (0, 0);
    for payload in Parser::new(0).parse_all(&wasm) {
        match payload? {
            Payload::CodeSectionStart { .. } => {}
            Payload::CodeSectionEntry(body) => {
                total += 1;
                let range = body.range();
                let keep = match &only {
                    Some(list) => list.contains(&(total - 1)),
                    None => range.len() >= min,
                };
                if keep {
                    kept += 1;
                    code.raw(&wasm[range]);
                } else {
                    let mut f = Function::new([]);
                    f.instruction(&Instruction::Unreachable);
                    f.instruction(&Instruction::End);
                    code.function(&f);
                }
            }
            Payload::End(_) => {}
            Payload::Version { .. } => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    if id == 10 {
                        continue;
                    }
                    // The code section goes back where it was, before whatever followed it.
                    if !code.is_empty() {
                        module.section(&code);
                        code = CodeSection::new();
                    }
                    module.section(&RawSection {
                        id,
                        data: &wasm[range],
                    });
                }
            }
        }
    }
    if !code.is_empty() {
        module.section(&code);
    }
    std::fs::write(output, module.finish())?;
    println!("kept {kept} of {total} bodies of at least {min} bytes");
    Ok(())
}
