//! Live migration of a running program to another process, over one byte stream (TCP between
//! nodes). The source keeps running while its memory is sent; then only the pages it wrote
//! since the previous round, until what remains is small; then it stops at a safe point, sends
//! the last pages and its stack, globals and WASI state, and waits. The destination writes
//! every page straight into its own instance's memory (nothing is buffered whole), installs the
//! state and says it is ready, but runs only once told to go. Until then the source can still
//! continue where it stopped (rollback): the program is in exactly one place at any moment.
//!
//! By job: `frame` is the wire (framing, checksums, the small messages, I/O errors as causes),
//! `memory` the pages (finding the written ones, sending and receiving page frames), `files`
//! the program's directories (`mirror` their destination's half), `source` and `destination`
//! the two sides, `policy` when pre-copy stops, and `delay` a link's made-up delay.

mod delay;
mod destination;
mod files;
mod frame;
mod memory;
mod mirror;
mod policy;
mod source;

pub(crate) use destination::Receiver;
pub(crate) use frame::Caused;
pub(crate) use memory::{pages_for, PageSink};
pub use source::{migrate_out, MigrateOptions, Progress};
