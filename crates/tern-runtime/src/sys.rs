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

/// A whole file mapped read-only and shared: snapshots are parsed and their pages checked
/// through it without reading them into the heap.
pub(crate) struct FileMap {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; sharing `&[u8]` views of it between
// threads is as safe as sharing any immutable byte slice.
unsafe impl Send for FileMap {}
// SAFETY: as above.
unsafe impl Sync for FileMap {}

impl FileMap {
    pub(crate) fn new(file: &std::fs::File) -> std::io::Result<FileMap> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(FileMap {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        use rustix::mm::{mmap, MapFlags, ProtFlags};
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), read-only, of a file
        // we hold open; it aliases no Rust object.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                0,
            )
        }?;
        Ok(FileMap { ptr, len })
    }

    /// The file's bytes. Tern writes snapshots to a new name and renames them into place, so a
    /// file it maps is never rewritten underneath the mapping.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping exactly what `new` mapped; no slice of it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
        }
    }
}

/// Whether `dest` can be replaced by mappings: its start and length are multiples of the host
/// page size (always true for 64 KiB Wasm pages on hosts with pages up to 64 KiB).
pub(crate) fn mappable(dest: &[u8]) -> bool {
    let page = rustix::param::page_size();
    (dest.as_ptr() as usize).is_multiple_of(page) && dest.len().is_multiple_of(page)
}

/// Replace `dest` (part of a linear memory) by fresh zero pages.
pub(crate) fn map_zeros(dest: &mut [u8]) -> std::io::Result<()> {
    if dest.is_empty() {
        return Ok(());
    }
    debug_assert!(mappable(dest));
    use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
    // SAFETY: `dest` is exclusively borrowed, page aligned (checked by the caller with
    // `mappable`) and already mapped read-write by wasmtime; replacing its pages with private
    // zero pages at the same address and protection changes only its contents.
    unsafe {
        mmap_anonymous(
            dest.as_mut_ptr().cast(),
            dest.len(),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
    }?;
    Ok(())
}

/// Replace `dest` (part of a linear memory) by a private copy-on-write mapping of `file` from
/// `offset`: pages are read from the page cache when the program first touches them, and its
/// writes never reach the file.
pub(crate) fn map_file(dest: &mut [u8], file: &std::fs::File, offset: u64) -> std::io::Result<()> {
    if dest.is_empty() {
        return Ok(());
    }
    debug_assert!(mappable(dest));
    use rustix::mm::{mmap, MapFlags, ProtFlags};
    // SAFETY: as for `map_zeros`; the file range was checked to lie inside the file, and
    // snapshot files are never modified in place (see `FileMap::bytes`).
    unsafe {
        mmap(
            dest.as_mut_ptr().cast(),
            dest.len(),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED,
            file,
            offset,
        )
    }?;
    Ok(())
}
