//! Instrument a module and report what it cost: `cargo run --release -p tern-instrument
//! --example instrument -- IN.wasm [OUT.wasm]` (IN may also be WAT text). `TERN_LOCALS_IN_MEMORY_ABOVE=N` sets the bound
//! above which functions keep their locals in memory (see `Options::locals_in_memory_above`);
//! `TERN_TWO_FORMS_UP_TO=N` the bound up to which they get two forms.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let input = args.get(1).ok_or("usage: instrument IN.wasm [OUT.wasm]")?;
    let wasm = wat::parse_bytes(&std::fs::read(input)?)?.into_owned();
    let t = Instant::now();
    let options = tern_instrument::Options {
        locals_in_memory_above: match std::env::var("TERN_LOCALS_IN_MEMORY_ABOVE") {
            Ok(v) => Some(v.parse()?),
            Err(_) => None,
        },
        two_forms_up_to: match std::env::var("TERN_TWO_FORMS_UP_TO") {
            Ok(v) => Some(v.parse()?),
            Err(_) => None,
        },
        ..Default::default()
    };
    let out = tern_instrument::instrument(&wasm, &options)?;
    println!(
        "{input}: {} -> {} bytes in {:.0} ms; {:?}",
        wasm.len(),
        out.wasm.len(),
        t.elapsed().as_secs_f64() * 1e3,
        out.stats
    );
    if let Some(path) = args.get(2) {
        std::fs::write(path, &out.wasm)?;
    }
    Ok(())
}
