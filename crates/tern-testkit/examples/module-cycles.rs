//! Prints the module cycles of every crate of the workspace, with the references that make
//! each edge (all of them), and exits 0 either way: it is for reading, the test `no_module_cycles` fails.

use std::path::Path;

use tern_testkit::modules;

fn main() -> Result<(), modules::Error> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in modules::check_crates(&crates)? {
        if krate.cycles.is_empty() {
            println!("{}: no cycles", krate.name);
        }
        for cycle in &krate.cycles {
            print!("{}: {cycle:#}", krate.name);
        }
    }
    Ok(())
}
