//! The checks tern-testkit holds the whole workspace to.

mod module_cycles;
