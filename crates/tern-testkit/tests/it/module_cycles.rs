use std::fmt::Write;
use std::path::Path;

use tern_testkit::modules;

/// No crate of the workspace has top-level modules that depend on each other; each cycle
/// found is listed with the references that make its edges.
#[test]
fn no_module_cycles() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let checked = modules::check_crates(&crates).expect("every crate's sources parse");
    assert!(checked.len() > 1, "found the workspace's crates");
    let mut report = String::new();
    for krate in checked.iter().filter(|k| !k.cycles.is_empty()) {
        for cycle in &krate.cycles {
            write!(report, "{}: {cycle}", krate.name).expect("writing to a String");
        }
    }
    assert!(report.is_empty(), "module cycles:\n{report}");
}
