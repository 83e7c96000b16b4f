//! End-to-end tests of the `tern` command: every fixture is checkpointed at many moments,
//! resumed in a separate process, and compared byte for byte with an uninterrupted run; and
//! every kind of bad input is refused with a clear message and the documented exit code.

mod bad_input;
mod blocked;
mod faults;
mod fleet;
mod harness;
mod migrate;
mod placement;
mod real_programs;
mod resume;
mod wasmtime_habits;
