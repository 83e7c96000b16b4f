//! The program's memories on the wire. At the source: where each memory is, which of its pages
//! were written since the last round (the kernel's write tracking, see
//! [`crate::sys::WriteTracker`], or a hash of every page where that is unavailable), and how
//! they are sent: runs of host pages, each run one frame of `memory u32 | offset u64 |
//! length u32 | encoding u8 | data` with encoding 0 raw, 1 LZ4 or 2 zero (no data). At the
//! destination: such frames written into the instance's memory through a [`PageSink`].

use std::io::{Read, Write};

use tern_snapshot::PAGE;

use super::frame::{check_sum, frame_len, io_err, kind, proto, Caused, FrameWriter, MAX_FRAME};

/// Host page: the unit of dirty tracking and of page frames.
const HOST_PAGE: usize = 4096;
/// Bytes read and sent at a time; bounds the buffers on both sides.
const CHUNK: usize = 256 << 10;

/// A page frame's encoding.
mod enc {
    pub const RAW: u8 = 0;
    pub const LZ4: u8 = 1;
    pub const ZERO: u8 = 2;
}

/// What a destination does with the pages it receives.
pub(crate) trait PageSink {
    /// The memory `index`, grown to hold at least `end` bytes.
    fn memory(&mut self, index: u32, end: u64) -> Caused<&mut [u8]>;
}

/// Finds the pages written since the last look.
enum Tracker {
    Kernel(crate::sys::WriteTracker),
    /// One hash per host page of the memory.
    Hashing(Vec<u64>),
}

/// One memory of the running program, as the source reads it.
pub(super) struct SourceMemory {
    /// Its index in the module.
    index: u32,
    base: usize,
    tracker: Tracker,
}

/// A page's (or a file block's) fingerprint, to tell whether it changed.
pub(super) fn hash_page(page: &[u8]) -> u64 {
    // Two independent crc32s: a collision of both for a changed page is not a practical risk,
    // and crc32 runs at memory speed with the hardware instruction.
    let (a, b) = page.split_at(page.len() / 2);
    (u64::from(crc32fast::hash(a)) << 32) | u64::from(crc32fast::hash(b)) | 1
}

impl SourceMemory {
    pub(super) fn start(index: u32, base: usize, force_hashing: bool) -> Caused<SourceMemory> {
        // Only what is accessible now is tracked (write-protecting the whole 4 GiB reservation
        // costs tens of milliseconds); what the program grows into later is added then.
        let (size, _) = crate::sys::mapping_extent(base).map_err(io_err("memory map"))?;
        let tracker = if force_hashing {
            Tracker::Hashing(Vec::new())
        } else {
            match crate::sys::WriteTracker::new(base, size.max(HOST_PAGE)) {
                Ok(t) => Tracker::Kernel(t),
                Err(_) => Tracker::Hashing(Vec::new()),
            }
        };
        Ok(SourceMemory {
            index,
            base,
            tracker,
        })
    }

    pub(super) fn tracker_name(&self) -> &'static str {
        match self.tracker {
            Tracker::Kernel(_) => "userfaultfd-wp",
            Tracker::Hashing(_) => "hashing",
        }
    }

    fn size(&self) -> Caused<usize> {
        Ok(crate::sys::mapping_extent(self.base)
            .map_err(io_err("memory map"))?
            .0)
    }

    /// Byte ranges to send this round: everything on the first, then what was written.
    pub(super) fn changed(
        &mut self,
        memories: &crate::sys::AttachedMemories,
        first: bool,
    ) -> Caused<Vec<(usize, usize)>> {
        let size = self.size()?;
        match &mut self.tracker {
            Tracker::Kernel(t) => {
                let tracked = t.len();
                // Grown memory: tracked from now on, and sent whole this round.
                t.extend(size).map_err(io_err("tracking writes"))?;
                if first {
                    // Everything was write-protected when tracking began, just before: what is
                    // written from then on shows in the next round's scan.
                    return Ok(vec![(0, size)]);
                }
                let mut written = t
                    .take_written(tracked.min(size))
                    .map_err(io_err("tracking writes"))?;
                if size > tracked {
                    written.push((tracked, size - tracked));
                }
                Ok(written)
            }
            Tracker::Hashing(hashes) => {
                let pages = size / HOST_PAGE;
                let mut out: Vec<(usize, usize)> = Vec::new();
                let mut buf = vec![0u8; CHUNK];
                hashes.resize(pages, 0);
                let mut at = 0;
                while at < size {
                    let n = CHUNK.min(size - at);
                    memories
                        .read(self.base, at, &mut buf[..n])
                        .map_err(io_err("reading memory"))?;
                    for (k, page) in buf[..n].chunks(HOST_PAGE).enumerate() {
                        let p = at / HOST_PAGE + k;
                        let h = hash_page(page);
                        if first || hashes[p] != h {
                            hashes[p] = h;
                            let off = p * HOST_PAGE;
                            match out.last_mut() {
                                Some((s, l)) if *s + *l == off => *l += HOST_PAGE,
                                _ => out.push((off, HOST_PAGE)),
                            }
                        }
                    }
                    at += n;
                }
                Ok(out)
            }
        }
    }
}

/// Whether to try compressing: after a run that did not compress, the next few are sent raw
/// (random data would only cost CPU time for nothing).
#[derive(Default)]
struct Compressor {
    skip: u32,
}

fn is_zero(page: &[u8]) -> bool {
    // 64-byte blocks that the compiler vectorises, leaving at the first non-zero one.
    page.chunks(64)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Send the byte ranges of one memory; returns (raw, wire) bytes.
pub(super) fn send_ranges<W: Write>(
    fw: &mut FrameWriter<W>,
    memories: &crate::sys::AttachedMemories,
    mem: &SourceMemory,
    ranges: &[(usize, usize)],
    compress: bool,
    buf: &mut Vec<u8>,
) -> Caused<(u64, u64)> {
    let mut lz = Compressor::default();
    let (mut raw, mut wire) = (0u64, 0u64);
    buf.resize(CHUNK, 0);
    for &(start, len) in ranges {
        let mut at = start;
        while at < start + len {
            let n = CHUNK.min(start + len - at);
            memories
                .read(mem.base, at, &mut buf[..n])
                .map_err(io_err("reading memory"))?;
            // Runs of zero and non-zero host pages, so that empty memory costs nothing.
            let mut k = 0;
            while k < n {
                let zero = is_zero(&buf[k..k + HOST_PAGE.min(n - k)]);
                let mut e = k + HOST_PAGE.min(n - k);
                while e < n && is_zero(&buf[e..e + HOST_PAGE.min(n - e)]) == zero {
                    e += HOST_PAGE.min(n - e);
                }
                let off = (at + k) as u64;
                let run = &buf[k..e];
                let mut head = Vec::with_capacity(17);
                head.extend_from_slice(&mem.index.to_le_bytes());
                head.extend_from_slice(&off.to_le_bytes());
                head.extend_from_slice(&(run.len() as u32).to_le_bytes());
                let w = if zero {
                    head.push(enc::ZERO);
                    fw.frame(kind::PAGES, &[&head])
                } else if compress && lz.skip == 0 {
                    let packed = lz4_flex::block::compress(run);
                    if packed.len() < run.len() * 9 / 10 {
                        head.push(enc::LZ4);
                        fw.frame(kind::PAGES, &[&head, &packed])
                    } else {
                        lz.skip = 16;
                        head.push(enc::RAW);
                        fw.frame(kind::PAGES, &[&head, run])
                    }
                } else {
                    lz.skip = lz.skip.saturating_sub(1);
                    head.push(enc::RAW);
                    fw.frame(kind::PAGES, &[&head, run])
                }
                .map_err(io_err("sending pages"))?;
                raw += run.len() as u64;
                wire += w;
                k = e;
            }
            at += n;
        }
    }
    Ok((raw, wire))
}

/// A page frame whose head was read. Raw pages are read from the connection straight into the
/// instance's memory, which the kernel backs beforehand in one call: no copy through a buffer
/// and no page fault per page. The checksum is verified after the write; that is safe because
/// the destination runs nothing before the migration is complete, and a bad frame fails it.
pub(super) fn receive_pages(
    r: &mut impl Read,
    head: [u8; 5],
    buf: &mut Vec<u8>,
    sink: &mut dyn PageSink,
) -> Caused<()> {
    let len = frame_len(head);
    if len < PAGE_HEADER {
        return Err(proto("short page frame"));
    }
    buf.resize(PAGE_HEADER, 0);
    r.read_exact(buf).map_err(io_err("reading"))?;
    let header = PageHeader::parse(buf)?;
    if header.encoding != enc::RAW || header.len != len - PAGE_HEADER {
        buf.resize(len, 0);
        r.read_exact(&mut buf[PAGE_HEADER..])
            .map_err(io_err("reading"))?;
        check_sum(r, &[&head, buf])?;
        return write_pages(buf, sink);
    }
    let dest = header.dest(sink)?;
    crate::sys::populate(dest);
    r.read_exact(dest).map_err(io_err("reading"))?;
    check_sum(r, &[&head, buf, dest])
}

const PAGE_HEADER: usize = 17;

/// `memory u32 | offset u64 | length u32 | encoding u8` at the start of a page frame.
struct PageHeader {
    index: u32,
    off: u64,
    len: usize,
    encoding: u8,
}

impl PageHeader {
    fn parse(frame: &[u8]) -> Caused<PageHeader> {
        if frame.len() < PAGE_HEADER {
            return Err(proto("short page frame"));
        }
        let h = PageHeader {
            index: u32::from_le_bytes(frame[0..4].try_into().unwrap_or_default()),
            off: u64::from_le_bytes(frame[4..12].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(frame[12..16].try_into().unwrap_or_default()) as usize,
            encoding: frame[16],
        };
        if h.len > MAX_FRAME || !(h.off as usize).is_multiple_of(HOST_PAGE) {
            return Err(proto("page frame out of bounds"));
        }
        Ok(h)
    }

    /// The bytes of the instance's memory the frame covers (growing the memory if needed).
    fn dest<'m>(&self, sink: &'m mut dyn PageSink) -> Caused<&'m mut [u8]> {
        let end = self
            .off
            .checked_add(self.len as u64)
            .filter(|e| *e <= 1 << 32)
            .ok_or_else(|| proto("page frame beyond a 32-bit memory"))?;
        sink.memory(self.index, end)?
            .get_mut(self.off as usize..end as usize)
            .ok_or_else(|| proto("page frame beyond the memory"))
    }
}

fn write_pages(frame: &[u8], sink: &mut dyn PageSink) -> Caused<()> {
    let header = PageHeader::parse(frame)?;
    let (encoding, len, data) = (header.encoding, header.len, &frame[PAGE_HEADER..]);
    let dest = header.dest(sink)?;
    match encoding {
        enc::RAW if data.len() == len => dest.copy_from_slice(data),
        enc::LZ4 => {
            let n = lz4_flex::block::decompress_into(data, dest)
                .map_err(|e| proto(format!("bad compressed pages: {e}")))?;
            if n != len {
                return Err(proto("compressed pages of the wrong size"));
            }
        }
        enc::ZERO if data.is_empty() => {
            // Fresh memory reads as zero already, except the data segments' pages.
            if !is_zero(dest) {
                dest.fill(0);
            }
        }
        _ => return Err(proto("bad page frame")),
    }
    Ok(())
}

/// Grow a wasm memory so that `end` bytes fit (wasm pages are 64 KiB).
pub(crate) fn pages_for(end: u64) -> u64 {
    end.div_ceil(PAGE as u64)
}

#[cfg(test)]
mod tests {
    use super::super::frame::read_head;
    use super::*;

    struct VecSink(Vec<u8>);

    impl PageSink for VecSink {
        fn memory(&mut self, _index: u32, end: u64) -> Caused<&mut [u8]> {
            if end as usize > self.0.len() {
                self.0.resize(end as usize, 0);
            }
            Ok(&mut self.0)
        }
    }

    fn page_frame(off: u64, encoding: u8, run_len: usize, data: &[u8]) -> Vec<u8> {
        let mut head = Vec::new();
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&off.to_le_bytes());
        head.extend_from_slice(&(run_len as u32).to_le_bytes());
        head.push(encoding);
        let mut out = Vec::new();
        FrameWriter::new(&mut out, None)
            .frame(kind::PAGES, &[&head, data])
            .expect("frame");
        out
    }

    fn receive(wire: &[u8], sink: &mut VecSink) -> Caused<()> {
        let mut r = std::io::Cursor::new(wire);
        let head = read_head(&mut r)?;
        assert_eq!(head[0], kind::PAGES);
        receive_pages(&mut r, head, &mut Vec::new(), sink)
    }

    #[test]
    fn page_frames_land_in_memory_and_a_damaged_one_is_refused() {
        let data: Vec<u8> = (0..2 * HOST_PAGE).map(|i| (i % 253) as u8).collect();
        let mut sink = VecSink(vec![0; 4 * HOST_PAGE]);
        // Raw: straight into memory.
        receive(&page_frame(4096, enc::RAW, data.len(), &data), &mut sink).expect("raw");
        assert_eq!(sink.0[4096..4096 + data.len()], data[..]);
        // Compressed and zero runs go through the buffer.
        let packed = lz4_flex::block::compress(&data);
        let mut other = VecSink(vec![0; 4 * HOST_PAGE]);
        receive(&page_frame(0, enc::LZ4, data.len(), &packed), &mut other).expect("lz4");
        assert_eq!(other.0[..data.len()], data[..]);
        receive(&page_frame(0, enc::ZERO, HOST_PAGE, &[]), &mut other).expect("zero");
        assert!(other.0[..HOST_PAGE].iter().all(|&b| b == 0));
        // One flipped bit anywhere in a frame fails its checksum.
        let good = page_frame(0, enc::RAW, data.len(), &data);
        for at in [7, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(receive(&bad, &mut VecSink(vec![0; 4 * HOST_PAGE])).is_err());
        }
        // A frame claiming memory beyond 4 GiB or an unaligned offset is refused.
        assert!(receive(
            &page_frame(u64::MAX - 4095, enc::RAW, 4096, &data[..4096]),
            &mut sink
        )
        .is_err());
        assert!(receive(&page_frame(100, enc::RAW, 4096, &data[..4096]), &mut sink).is_err());
    }
}
