//! The runtime's only `unsafe` code, kept in one place.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set bits in a word of guest memory that wasm code reads concurrently.
///
/// `addr` must be the address of a 4-byte-aligned word inside a live wasm memory that never
/// moves (Tern's flag memory has min = max = 1 page); `Control` guarantees both by
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

/// Which pages of a region the program writes, tracked by the kernel: the region is registered
/// with a userfaultfd in asynchronous write-protect mode (the kernel resolves each first write
/// itself, so the program never stops) and `PAGEMAP_SCAN` reports the written pages and
/// write-protects them again in one call. Linux 6.7 or later; `new` fails elsewhere.
pub(crate) struct WriteTracker {
    _uffd: std::os::fd::OwnedFd,
    pagemap: std::fs::File,
    start: usize,
    len: usize,
}

// The kernel's uAPI (linux/userfaultfd.h, linux/fs.h), which libc does not carry yet.
const UFFD_API: u64 = 0xAA;
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;
const PM_SCAN_WP_MATCHING: u64 = 1;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;

const fn iowr(ty: u64, nr: u64, size: usize) -> libc::c_ulong {
    ((3u64 << 30) | ((size as u64) << 16) | (ty << 8) | nr) as libc::c_ulong
}

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    start: u64,
    len: u64,
    mode: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const UFFDIO_API: libc::c_ulong = iowr(0xAA, 0x3F, std::mem::size_of::<UffdioApi>());
const UFFDIO_REGISTER: libc::c_ulong = iowr(0xAA, 0x00, std::mem::size_of::<UffdioRegister>());
const UFFDIO_WRITEPROTECT: libc::c_ulong =
    iowr(0xAA, 0x06, std::mem::size_of::<UffdioWriteprotect>());
const PAGEMAP_SCAN: libc::c_ulong = iowr(b'f' as u64, 16, std::mem::size_of::<PmScanArg>());

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl WriteTracker {
    /// Start tracking writes to `[start, start + len)`, which must be mapped (any protection)
    /// and page aligned.
    pub(crate) fn new(start: usize, len: usize) -> std::io::Result<WriteTracker> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain system call; the returned descriptor is owned from here on.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is not owned elsewhere.
        let uffd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) };
        use std::os::fd::AsRawFd;
        let raw = uffd.as_raw_fd();
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: the ioctls get pointers to live, correctly laid out structures (the kernel's
        // uAPI), and only touch the registered range's page tables, not its contents.
        unsafe {
            check(libc::ioctl(raw, UFFDIO_API, &mut api))?;
            let mut reg = UffdioRegister {
                start: start as u64,
                len: len as u64,
                mode: UFFDIO_REGISTER_MODE_WP,
                ioctls: 0,
            };
            check(libc::ioctl(raw, UFFDIO_REGISTER, &mut reg))?;
            let mut wp = UffdioWriteprotect {
                start: start as u64,
                len: len as u64,
                mode: UFFDIO_WRITEPROTECT_MODE_WP,
            };
            check(libc::ioctl(raw, UFFDIO_WRITEPROTECT, &mut wp))?;
        }
        let pagemap = std::fs::File::open("/proc/self/pagemap")?;
        Ok(WriteTracker {
            _uffd: uffd,
            pagemap,
            start,
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Track writes to `[start + len, start + new_len)` too (the memory grew): from here on.
    pub(crate) fn extend(&mut self, new_len: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if new_len <= self.len {
            return Ok(());
        }
        let (from, len) = ((self.start + self.len) as u64, (new_len - self.len) as u64);
        // SAFETY: as in `new`: live structures of the kernel's layout, a range of our own
        // mapped address space.
        unsafe {
            let raw = self._uffd.as_raw_fd();
            let mut reg = UffdioRegister {
                start: from,
                len,
                mode: UFFDIO_REGISTER_MODE_WP,
                ioctls: 0,
            };
            check(libc::ioctl(raw, UFFDIO_REGISTER, &mut reg))?;
            let mut wp = UffdioWriteprotect {
                start: from,
                len,
                mode: UFFDIO_WRITEPROTECT_MODE_WP,
            };
            check(libc::ioctl(raw, UFFDIO_WRITEPROTECT, &mut wp))?;
        }
        self.len = new_len;
        Ok(())
    }

    /// Byte ranges (relative to the region's start, below `upto`) written since the last call
    /// or since tracking began; they are write-protected again before this returns.
    pub(crate) fn take_written(&mut self, upto: usize) -> std::io::Result<Vec<(usize, usize)>> {
        use std::os::fd::AsRawFd;
        let end = self.start + upto.min(self.len);
        let mut out = Vec::new();
        let mut regions = [PageRegion::default(); 256];
        let mut from = self.start as u64;
        while from < end as u64 {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                start: from,
                end: end as u64,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            // SAFETY: `arg` points at `regions`, which outlives the call and has room for
            // `vec_len` entries; the scan reads page tables of our own address space.
            let n = unsafe { libc::ioctl(self.pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for r in &regions[..n as usize] {
                out.push((r.start as usize - self.start, (r.end - r.start) as usize));
            }
            if arg.walk_end <= from || arg.walk_end >= end as u64 {
                break;
            }
            from = arg.walk_end;
        }
        Ok(out)
    }
}

/// The accessible (read-write) length of the mapping that starts at `base`, and the length of
/// the whole reservation behind it (accessible or not), from `/proc/self/maps`.
pub(crate) fn mapping_extent(base: usize) -> std::io::Result<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut next = base;
    let (mut accessible, mut reserved) = (0usize, 0usize);
    let mut in_rw = true;
    for line in maps.lines() {
        let Some((range, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        if b <= base || a != next {
            if a > next {
                break;
            }
            continue;
        }
        let rw = rest.starts_with("rw");
        if rw && in_rw {
            accessible += b - a;
        } else {
            in_rw = false;
        }
        reserved += b - a;
        next = b;
    }
    if reserved == 0 {
        return Err(std::io::Error::other(format!(
            "no mapping starts at {base:#x}"
        )));
    }
    Ok((accessible, reserved))
}

/// The running program's linear memories, for another thread to read while the program runs.
/// Reads copy word by word with relaxed atomic loads, so that racing with the program's
/// writes is defined (each word read is one the program wrote at some point; pre-copy resends
/// what was written meanwhile, and during the pause nothing writes): measured twice as fast
/// as having the kernel copy it with `process_vm_readv`, which pins every page first. A read
/// holds a shared lock that `detach` waits for, so the memories cannot go away under it.
#[derive(Debug, Default)]
pub(crate) struct AttachedMemories {
    /// (base address, bytes known to be mapped from it) of each memory.
    memories: std::sync::RwLock<Vec<(usize, std::sync::atomic::AtomicUsize)>>,
}

impl AttachedMemories {
    /// The memories at `bases` belong to a live instance until `detach`.
    pub(crate) fn attach(&self, bases: &[usize]) {
        let mut m = self.memories.write().unwrap_or_else(|p| p.into_inner());
        *m = bases.iter().map(|&b| (b, 0.into())).collect();
    }

    /// Must be called before the instance's memories are unmapped; waits for reads in flight.
    pub(crate) fn detach(&self) {
        self.memories
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Copy `buf.len()` bytes from offset `at` of the memory based at `base`.
    pub(crate) fn read(&self, base: usize, at: usize, buf: &mut [u8]) -> std::io::Result<()> {
        use std::sync::atomic::{AtomicU64, AtomicU8};
        let memories = self.memories.read().unwrap_or_else(|p| p.into_inner());
        let Some((_, known)) = memories.iter().find(|(b, _)| *b == base) else {
            return Err(std::io::Error::other("the program has ended"));
        };
        let end = at
            .checked_add(buf.len())
            .ok_or_else(|| std::io::Error::other("read beyond the memory"))?;
        // Wasm memories grow but never shrink or move (a static reservation) while attached:
        // an extent seen once stays mapped, and /proc is read only when a read goes beyond it.
        if end > known.load(Ordering::Acquire) {
            known.store(mapping_extent(base)?.0, Ordering::Release);
            if end > known.load(Ordering::Acquire) {
                return Err(std::io::Error::other("read beyond the memory"));
            }
        }
        let addr = base + at;
        let head = (addr.next_multiple_of(8) - addr).min(buf.len());
        let words = (buf.len() - head) / 8;
        let byte = |i: usize| {
            // SAFETY: `addr + i` lies within the mapped extent checked above, which stays
            // mapped while we hold the lock; any alignment suits a byte.
            unsafe { &*((addr + i) as *const AtomicU8) }.load(Ordering::Relaxed)
        };
        for (i, b) in buf[..head].iter_mut().enumerate() {
            *b = byte(i);
        }
        // SAFETY: as above; `addr + head` is 8-byte aligned and `words` words follow.
        let src = unsafe { std::slice::from_raw_parts((addr + head) as *const AtomicU64, words) };
        for (w, out) in src.iter().zip(buf[head..].chunks_exact_mut(8)) {
            out.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        let tail = head + words * 8;
        for (i, b) in buf[tail..].iter_mut().enumerate() {
            *b = byte(tail + i);
        }
        Ok(())
    }
}

/// Ask the kernel to back `mem` with pages now, in one call, before it is written: cheaper
/// than taking one page fault per 4 KiB while copying into fresh memory. Best effort (older
/// kernels lack MADV_POPULATE_WRITE; the copy then faults pages in as usual).
pub(crate) fn populate(mem: &mut [u8]) {
    let start = mem.as_mut_ptr() as usize;
    let page_start = start & !(4095);
    let len = mem.len() + (start - page_start);
    // SAFETY: the range lies within `mem` (rounded down to its page), which we borrow
    // exclusively; populating does not change what the memory holds.
    unsafe {
        libc::madvise(
            page_start as *mut libc::c_void,
            len,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh anonymous mapping, as a wasm memory is one.
    fn mapping(len: usize) -> usize {
        // SAFETY: a new private mapping at an address of the kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is ours, `len` bytes long and writable.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        p as usize
    }

    #[test]
    fn attached_memory_reads_exactly_what_is_there_and_nothing_beyond() {
        let len = 3 * 4096;
        let base = mapping(len);
        let want: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let m = AttachedMemories::default();
        m.attach(&[base]);
        // Unaligned start and length: the byte-wise head and tail around the words.
        for (at, n) in [(0, len), (5, 4096 + 7), (4093, 3), (len - 1, 1), (8, 0)] {
            let mut buf = vec![0u8; n];
            m.read(base, at, &mut buf).expect("read");
            assert_eq!(buf, want[at..at + n], "at {at} n {n}");
        }
        let mut buf = vec![0u8; 16];
        assert!(m.read(base, len - 8, &mut buf).is_err(), "beyond the end");
        assert!(m.read(base + 4096, 0, &mut buf).is_err(), "not a memory");
        assert!(m.read(base, usize::MAX - 4, &mut buf).is_err(), "overflow");
        m.detach();
        assert!(m.read(base, 0, &mut buf).is_err(), "after detach");
        // SAFETY: unmapping our own mapping, no longer referenced.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
    }
}
