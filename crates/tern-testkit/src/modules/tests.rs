use std::path::PathBuf;

use super::{graphs, Error, Location, ModuleGraph, Sources};

fn sources(files: &[(&str, &str)]) -> Sources {
    (files.iter())
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect()
}

fn graph(files: &[(&str, &str)]) -> ModuleGraph {
    let mut graphs = graphs(&sources(files)).expect("synthetic crate loads");
    assert_eq!(graphs.len(), 1, "one target");
    graphs.remove(0)
}

fn edges(files: &[(&str, &str)]) -> Vec<(String, String)> {
    graph(files).edges.into_keys().collect()
}

fn edge(from: &str, to: &str) -> (String, String) {
    (from.to_string(), to.to_string())
}

fn at(file: &str, line: usize) -> Location {
    Location {
        file: PathBuf::from(file),
        line,
    }
}

#[test]
fn a_cycle_is_found_with_the_references_of_its_edges() {
    let graph = graph(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "pub struct B;\nfn make() -> crate::a::A {\n    crate::a::A\n}\n",
        ),
        ("c.rs", "use crate::a::A;\n"),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].modules, ["a", "b"]);
    let made: Vec<_> = (cycles[0].edges.iter())
        .map(|e| (e.from.as_str(), e.to.as_str(), e.refs.clone()))
        .collect();
    assert_eq!(
        made,
        [
            ("a", "b", vec![at("a.rs", 1)]),
            ("b", "a", vec![at("b.rs", 2), at("b.rs", 3)]),
        ]
    );
    assert!(graph.edges.contains_key(&edge("c", "a")));
}

#[test]
fn no_cycle_in_a_chain() {
    let graph = graph(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\n"),
        ("b.rs", "pub struct B;\n"),
    ]);
    assert_eq!(graph.cycles(), []);
}

#[test]
fn a_root_reexport_is_followed_to_the_defining_module() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\npub use a::A;\npub use b::*;\n"),
        ("a.rs", "pub struct A;\nfn take(_: crate::B) {}\n"),
        ("b.rs", "use crate::A;\npub struct B;\n"),
    ];
    assert_eq!(edges(&files), [edge("a", "b"), edge("b", "a")]);
}

#[test]
fn a_reexport_in_a_module_is_followed_too() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "pub use crate::b::B;\n"),
        ("b.rs", "pub struct B;\n"),
        ("c.rs", "fn f() { let _ = crate::a::B; }\n"),
    ];
    assert_eq!(edges(&files), [edge("a", "b"), edge("c", "b")]);
}

#[test]
fn grouped_use_trees_make_one_edge_per_module() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
        ("a.rs", "use crate::{b::X, c, d::{self as dd, Y as Z}};\n"),
        ("b.rs", "pub struct X;\n"),
        ("c.rs", ""),
        ("d.rs", "pub struct Y;\n"),
    ];
    assert_eq!(
        edges(&files),
        [edge("a", "b"), edge("a", "c"), edge("a", "d")]
    );
}

#[test]
fn super_from_a_nested_module_resolves_to_a_sibling_or_stays_inside() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "mod inner;\npub struct Local;\n"),
        (
            "a/inner.rs",
            "use super::Local;\nuse super::super::b::B;\nfn f() -> super::Local { super::Local }\n",
        ),
        ("b.rs", "pub struct B;\n"),
    ];
    let graph = graph(&files);
    assert_eq!(graph.edges.keys().collect::<Vec<_>>(), [&edge("a", "b")]);
    assert_eq!(graph.edges[&edge("a", "b")], [at("a/inner.rs", 2)]);
}

#[test]
fn a_bare_path_through_a_use_is_a_reference_where_it_is_written() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b;\n\nfn f() {\n    b::g();\n}\n"),
        ("b.rs", "pub fn g() {}\n"),
    ];
    assert_eq!(
        graph(&files).edges[&edge("a", "b")],
        [at("a.rs", 1), at("a.rs", 4)]
    );
}

#[test]
fn test_modules_and_macro_input_count() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        (
            "a.rs",
            "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::c::C;\n    \
             #[test]\n    fn t() { f(); assert_eq!(crate::b::X, 1); }\n}\n",
        ),
        ("b.rs", "pub const X: u8 = 1;\n"),
        ("c.rs", "pub struct C;\n"),
    ];
    let graph = graph(&files);
    assert_eq!(
        graph.edges.keys().collect::<Vec<_>>(),
        [&edge("a", "b"), &edge("a", "c")]
    );
    assert_eq!(graph.edges[&edge("a", "b")], [at("a.rs", 7)]);
}

#[test]
fn a_glob_of_the_root_resolves_each_name_used() {
    let files = [
        (
            "lib.rs",
            "mod a;\nmod b;\npub use b::B;\npub const LIMIT: u8 = 3;\n",
        ),
        ("a.rs", "use crate::*;\n\nfn f(_: B) {}\n"),
        ("b.rs", "pub struct B;\n"),
    ];
    let graph = graph(&files);
    assert_eq!(graph.edges.keys().collect::<Vec<_>>(), [&edge("a", "b")]);
    assert_eq!(graph.edges[&edge("a", "b")], [at("a.rs", 3)]);
}

#[test]
fn items_of_the_root_are_the_crate_node() {
    let files = [
        (
            "lib.rs",
            "mod a;\npub use a::run;\npub struct Error;\npub fn go() { a::run() }\n",
        ),
        (
            "a.rs",
            "pub fn run() -> Result<(), crate::Error> { Ok(()) }\n",
        ),
    ];
    let graph = graph(&files);
    assert_eq!(
        graph.edges.keys().collect::<Vec<_>>(),
        [&edge("a", "crate"), &edge("crate", "a")]
    );
    assert_eq!(graph.cycles()[0].modules, ["a", "crate"]);
}

#[test]
fn a_root_reexport_alone_is_no_edge() {
    let files = [
        (
            "lib.rs",
            "mod a;\npub use a::A;\npub(crate) use a::helper;\n",
        ),
        ("a.rs", "pub struct A;\npub fn helper() {}\n"),
    ];
    assert_eq!(edges(&files), []);
}

#[test]
fn other_crates_and_mod_rs_layouts() {
    let files = [
        ("main.rs", "mod a;\nmod b;\nuse std::fmt;\n"),
        (
            "a/mod.rs",
            "mod inner;\nuse serde::Serialize;\nuse ::b::Thing;\n",
        ),
        ("a/inner.rs", "fn f() { std::mem::drop(crate::b::g()); }\n"),
        ("b.rs", "pub fn g() {}\n"),
    ];
    assert_eq!(edges(&files), [edge("a", "b")]);
}

#[test]
fn imports_that_glob_each_other_end() {
    let files = [
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "pub use crate::b::*;\n"),
        ("b.rs", "pub use crate::a::*;\nfn f(_: Missing) {}\n"),
    ];
    assert_eq!(edges(&files), []);
}

#[test]
fn every_bin_target_is_a_graph_of_its_own() {
    let files = [
        ("lib.rs", "mod a;\n"),
        ("a.rs", ""),
        ("bin/small.rs", ""),
        ("bin/tool/main.rs", "mod x;\n"),
        ("bin/tool/x.rs", ""),
    ];
    let roots: Vec<_> = graphs(&sources(&files))
        .unwrap()
        .into_iter()
        .map(|g| g.root)
        .collect();
    let expected = ["bin/small.rs", "bin/tool/main.rs", "lib.rs"].map(PathBuf::from);
    assert_eq!(roots, expected);
}

#[test]
fn a_missing_module_file_is_an_error() {
    let error = graphs(&sources(&[("lib.rs", "\nmod gone;\n")])).unwrap_err();
    assert!(matches!(error, Error::MissingModule { line: 2, ref name, .. } if name == "gone"));
}

#[test]
fn an_unparsable_file_is_an_error() {
    let error = graphs(&sources(&[("lib.rs", "mod a;\n"), ("a.rs", "fn (\n")])).unwrap_err();
    assert!(matches!(error, Error::Parse { ref path, .. } if path == &PathBuf::from("a.rs")));
}

#[test]
fn a_path_attribute_is_refused() {
    let files = [("lib.rs", "#[path = \"x.rs\"]\nmod a;\n"), ("x.rs", "")];
    let error = graphs(&sources(&files)).unwrap_err();
    assert!(matches!(error, Error::Unsupported { line: 2, .. }));
}

#[test]
fn a_cycle_reads_as_its_edges() {
    let graph = graph(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        ("b.rs", "use crate::a::A;\npub struct B;\n"),
    ]);
    assert_eq!(
        graph.cycles()[0].to_string(),
        "cycle in lib.rs between a, b:\n  a -> b: a.rs:1\n  b -> a: b.rs:1\n"
    );
}

#[test]
fn a_macro_or_a_variable_named_like_a_module_is_not_that_module() {
    let files = [
        (
            "lib.rs",
            "mod format;\nmod state;\npub fn f(state: u8) -> String {\n    format!(\"{}\", state)\n}\n",
        ),
        ("format.rs", ""),
        ("state.rs", ""),
    ];
    assert_eq!(edges(&files), []);
}
