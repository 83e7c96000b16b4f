//! Test support for the Tern workspace: checks that are about the code itself rather than
//! about one crate's behaviour, so that every crate is held to them the same way. Today it has
//! one, [`modules`]: the graph of dependencies between the top-level modules of a crate, and
//! the cycles in it, each cycle given with the file and line of every reference that makes one
//! of its edges, so a human can see what to move. The workspace's own test (`tests/it`) runs it
//! over every crate under `crates/`; `cargo run -p tern-testkit --example module-cycles` prints
//! the same report without failing.

#![forbid(unsafe_code)]

pub mod modules;
