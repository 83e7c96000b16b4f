//! The runtime's only `unsafe` code, kept in one place.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set bits in a word of guest memory that wasm code reads concurrently.
///
/// `addr` must be the address of a 4-byte-aligned word inside a live wasm memory that never
/// moves (Tern's flag memory has min = max = 1 page); [`crate::Control`] guarantees both by
/// clearing the address, under its lock, before the instance is dropped.
pub(crate) fn fetch_or_word(addr: usize, bits: u32) {
    // SAFETY: per the contract above the word is valid, aligned and outlives this call; wasm
    // only reads it with plain loads, and every host writer goes through this atomic.
    let word = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
    word.fetch_or(bits, Ordering::SeqCst);
}

/// Load precompiled code that this runtime wrote into its own cache.
pub(crate) fn deserialize_module(
    engine: &wasmtime::Engine,
    path: &Path,
) -> wasmtime::Result<wasmtime::Module> {
    // SAFETY: the file was produced by `Module::serialize` of this same program into the
    // user's private cache directory (written to a temporary name and renamed, so never seen
    // half-written); wasmtime itself checks that it matches this engine's version and settings.
    unsafe { wasmtime::Module::deserialize_file(engine, path) }
}

/// Clear bits in a guest memory word; same contract as [`fetch_or_word`].
pub(crate) fn fetch_and_word(addr: usize, bits: u32) {
    // SAFETY: as for `fetch_or_word`: `addr` is a live, aligned word of the flag memory.
    let word = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
    word.fetch_and(bits, Ordering::SeqCst);
}
