//! The container: a header with a checksummed section table, then the sections at the offsets
//! the table gives.
//!
//! ```text
//! magic "TERNSNAP" | version u32 | section count u32
//! per section: id u32 | offset u64 | length u64 | crc32 u32
//! crc32 u32 of everything above
//! section bodies, in table order, separated only by zero padding
//! ```
//! All integers little endian. Memory pages live in one pages section aligned to 64 KiB, so
//! that raw pages can be mapped straight from the file; each run of pages carries its own
//! checksum in its memory section, which lets a reader verify pages after it has started
//! using them. See `docs/snapshot-format.md` for each section's contents.

use std::io::{self, Write};

use crate::memory::{Chunk, MemoryImage, PAGE};
use crate::{Error, GlobalValue, Meta, Result, Snapshot, Value, MAGIC, VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionId {
    Meta = 1,
    Wasi = 2,
    Globals = 3,
    Frames = 4,
    Memory = 5,
    Module = 6,
    Pages = 7,
}

impl SectionId {
    fn from_u32(v: u32) -> Result<SectionId> {
        Ok(match v {
            1 => SectionId::Meta,
            2 => SectionId::Wasi,
            3 => SectionId::Globals,
            4 => SectionId::Frames,
            5 => SectionId::Memory,
            6 => SectionId::Module,
            7 => SectionId::Pages,
            other => return Err(Error::Corrupted(format!("unknown section id {other}"))),
        })
    }
}

const SECTION_ENTRY: usize = 24;
const CHUNK_ENTRY: usize = 29;

/// How memory pages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageEncoding {
    /// Runs of pages as they are, 64 KiB aligned in the file: a reader maps them instead of
    /// copying them, so resuming costs the same for any memory size.
    #[default]
    Raw,
    /// Each page LZ4-compressed when that saves at least a quarter: smaller files, but a
    /// reader has to decompress every page before the program continues.
    Lz4,
}

/// How one stored chunk of pages is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEncoding {
    Raw,
    Lz4,
}

/// Where one chunk of a memory lies in the snapshot bytes, and how to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChunk {
    pub first_page: u32,
    pub pages: u32,
    pub encoding: ChunkEncoding,
    /// Offset of the stored bytes from the start of the snapshot; a multiple of [`PAGE`] for
    /// raw chunks.
    pub offset: u64,
    pub stored_len: u64,
    pub crc: u32,
}

impl StoredChunk {
    /// The chunk's bytes as they lie in `file`, checked against its checksum.
    pub fn verified<'a>(&self, file: &'a [u8]) -> Result<&'a [u8]> {
        let data = usize::try_from(self.offset)
            .ok()
            .zip(usize::try_from(self.stored_len).ok())
            .and_then(|(at, len)| file.get(at..at.checked_add(len)?))
            .ok_or_else(|| {
                Error::Truncated(format!(
                    "pages from {} lie outside the file",
                    self.first_page
                ))
            })?;
        if crc32fast::hash(data) != self.crc {
            return Err(Error::Corrupted(format!(
                "memory pages {}..{} checksum mismatch",
                self.first_page,
                self.first_page + self.pages
            )));
        }
        Ok(data)
    }

    /// The chunk's uncompressed bytes (`pages` × [`PAGE`]), checked.
    pub fn decoded(&self, file: &[u8]) -> Result<Vec<u8>> {
        let data = self.verified(file)?;
        let raw_len = self.pages as usize * PAGE;
        match self.encoding {
            ChunkEncoding::Raw => Ok(data.to_vec()),
            ChunkEncoding::Lz4 => lz4_flex::block::decompress(data, raw_len)
                .ok()
                .filter(|d| d.len() == raw_len)
                .ok_or_else(|| {
                    Error::Corrupted(format!(
                        "memory page {} does not decompress",
                        self.first_page
                    ))
                }),
        }
    }
}

/// A linear memory as stored: its size and where its non-zero pages lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMemory {
    pub index: u32,
    pub size: u64,
    pub chunks: Vec<StoredChunk>,
}

impl StoredMemory {
    /// Bytes of non-zero pages, uncompressed.
    pub fn stored_raw(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| u64::from(c.pages) * PAGE as u64)
            .sum()
    }
}

/// A snapshot whose small sections are decoded and verified, and whose memory pages are only
/// located: the caller verifies them (all at once with [`Opened::verify_pages`], or chunk by
/// chunk) before it lets their contents have any effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub meta: Meta,
    pub wasi: serde_json::Value,
    pub globals: Vec<GlobalValue>,
    pub frames: Vec<u8>,
    pub memories: Vec<StoredMemory>,
    /// Byte range of the embedded module in the snapshot, if any.
    pub module: Option<std::ops::Range<usize>>,
}

impl Opened {
    /// Check every memory chunk's checksum.
    pub fn verify_pages(&self, file: &[u8]) -> Result<()> {
        for m in &self.memories {
            for c in &m.chunks {
                c.verified(file)?;
            }
        }
        Ok(())
    }

    /// Decode everything into an owned snapshot (verifying every page).
    pub fn load(self, file: &[u8]) -> Result<Snapshot> {
        let mut memories = Vec::with_capacity(self.memories.len());
        for m in &self.memories {
            let mut chunks = Vec::new();
            for c in &m.chunks {
                let data = c.decoded(file)?;
                for (i, page) in data.chunks(PAGE).enumerate() {
                    chunks.push(Chunk {
                        page: c.first_page + i as u32,
                        data: page.to_vec(),
                    });
                }
            }
            memories.push(MemoryImage {
                index: m.index,
                size: m.size,
                chunks,
            });
        }
        Ok(Snapshot {
            meta: self.meta,
            wasi: self.wasi,
            globals: self.globals,
            frames: self.frames,
            memories,
            module: self.module.map(|r| file[r].to_vec()),
        })
    }
}

/// Serialize a snapshot into memory. See [`write`].
pub fn encode(s: &Snapshot, pages: PageEncoding) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(s, pages, &mut out);
    out
}

/// Chunk payloads before layout: borrowed raw runs or compressed pages.
enum Payload<'a> {
    Raw(Vec<&'a [u8]>),
    Lz4(Vec<u8>),
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Raw(pages) => pages.len() as u64 * PAGE as u64,
            Payload::Lz4(b) => b.len() as u64,
        }
    }
}

/// Serialize a snapshot to `w`, streaming raw pages from the snapshot's own buffers (no copy
/// of the memory is made).
pub fn write(s: &Snapshot, pages: PageEncoding, w: &mut impl Write) -> io::Result<()> {
    // Plan every chunk of every memory: (memory, first page, page count, payload).
    let mut plans: Vec<Vec<(u32, u32, Payload)>> = Vec::new();
    for m in &s.memories {
        let mut plan: Vec<(u32, u32, Payload)> = Vec::new();
        for c in &m.chunks {
            let packed = match pages {
                PageEncoding::Lz4 => {
                    let packed = lz4_flex::block::compress(&padded(&c.data));
                    (packed.len() < PAGE / 4 * 3).then_some(packed)
                }
                PageEncoding::Raw => None,
            };
            if let Some(packed) = packed {
                plan.push((c.page, 1, Payload::Lz4(packed)));
                continue;
            }
            match plan.last_mut() {
                Some((first, n, Payload::Raw(run))) if *first + *n == c.page => {
                    *n += 1;
                    run.push(&c.data);
                }
                _ => plan.push((c.page, 1, Payload::Raw(vec![&c.data]))),
            }
        }
        plans.push(plan);
    }
    // Lay out the pages section: raw runs first (they need 64 KiB alignment), then compressed
    // pages packed after them.
    let mut layout: Vec<Vec<(u64, u64, u32)>> = Vec::new(); // (offset in pages section, len, crc)
    let mut pages_len = 0u64;
    for raw_pass in [true, false] {
        for (mi, plan) in plans.iter().enumerate() {
            if layout.len() <= mi {
                layout.push(vec![(0, 0, 0); plan.len()]);
            }
            for (ci, (_, _, payload)) in plan.iter().enumerate() {
                let crc = match payload {
                    Payload::Raw(run) if raw_pass => {
                        let mut h = crc32fast::Hasher::new();
                        for p in run {
                            h.update(p);
                            h.update(&ZERO_PAGE[p.len()..]);
                        }
                        h.finalize()
                    }
                    Payload::Lz4(b) if !raw_pass => crc32fast::hash(b),
                    _ => continue,
                };
                layout[mi][ci] = (pages_len, payload.len(), crc);
                pages_len += payload.len();
            }
        }
    }

    let mut small: Vec<(SectionId, Vec<u8>)> = vec![
        (
            SectionId::Meta,
            serde_json::to_vec(&s.meta).unwrap_or_default(),
        ),
        (
            SectionId::Wasi,
            serde_json::to_vec(&s.wasi).unwrap_or_default(),
        ),
        (SectionId::Globals, encode_globals(&s.globals)),
        (SectionId::Frames, s.frames.clone()),
    ];
    let count = small.len() + s.memories.len() + usize::from(s.module.is_some()) + 1;
    let header_len = 16 + SECTION_ENTRY * count + 4;
    // Offsets of chunks are absolute, so the memory sections are built once the position of
    // the pages section is known; that position depends only on the lengths of what precedes
    // it, and a memory section's length depends only on its chunk count.
    let mut before = header_len as u64;
    for (_, body) in &small {
        before += body.len() as u64;
    }
    for plan in &plans {
        before += 16 + (CHUNK_ENTRY * plan.len()) as u64;
    }
    if let Some(module) = &s.module {
        before += module.len() as u64;
    }
    let any_raw = plans
        .iter()
        .flatten()
        .any(|(_, _, p)| matches!(p, Payload::Raw(_)));
    let pages_at = if any_raw {
        before.next_multiple_of(PAGE as u64)
    } else {
        before
    };
    for ((m, plan), lay) in s.memories.iter().zip(&plans).zip(&layout) {
        let mut body = Vec::with_capacity(16 + CHUNK_ENTRY * plan.len());
        body.extend_from_slice(&m.index.to_le_bytes());
        body.extend_from_slice(&m.size.next_multiple_of(PAGE as u64).to_le_bytes());
        body.extend_from_slice(&(plan.len() as u32).to_le_bytes());
        for ((first, n, payload), (off, len, crc)) in plan.iter().zip(lay) {
            body.extend_from_slice(&first.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
            body.push(match payload {
                Payload::Raw(_) => 0,
                Payload::Lz4(_) => 1,
            });
            body.extend_from_slice(&(pages_at + off).to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&crc.to_le_bytes());
        }
        small.push((SectionId::Memory, body));
    }

    let mut header = Vec::with_capacity(header_len);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(count as u32).to_le_bytes());
    let mut at = header_len as u64;
    let mut entry = |id: SectionId, len: u64, crc: u32, at: u64| {
        header.extend_from_slice(&(id as u32).to_le_bytes());
        header.extend_from_slice(&at.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&crc.to_le_bytes());
    };
    for (id, body) in &small {
        entry(*id, body.len() as u64, crc32fast::hash(body), at);
        at += body.len() as u64;
    }
    if let Some(module) = &s.module {
        entry(
            SectionId::Module,
            module.len() as u64,
            crc32fast::hash(module),
            at,
        );
        at += module.len() as u64;
    }
    debug_assert_eq!(at, before);
    entry(SectionId::Pages, pages_len, 0, pages_at);
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());

    w.write_all(&header)?;
    for (_, body) in &small {
        w.write_all(body)?;
    }
    if let Some(module) = &s.module {
        w.write_all(module)?;
    }
    write_zeros(w, pages_at - before)?;
    for raw_pass in [true, false] {
        for plan in &plans {
            for (_, _, payload) in plan {
                match payload {
                    Payload::Raw(run) if raw_pass => {
                        for p in run {
                            w.write_all(p)?;
                            w.write_all(&ZERO_PAGE[p.len()..])?;
                        }
                    }
                    Payload::Lz4(b) if !raw_pass => w.write_all(b)?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

static ZERO_PAGE: [u8; PAGE] = [0; PAGE];

fn padded(page: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if page.len() == PAGE {
        page.into()
    } else {
        let mut v = page.to_vec();
        v.resize(PAGE, 0);
        v.into()
    }
}

fn write_zeros(w: &mut impl Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(PAGE as u64);
        w.write_all(&ZERO_PAGE[..k as usize])?;
        n -= k;
    }
    Ok(())
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                Error::Truncated(format!(
                    "{} ends after {} bytes, needed {} more",
                    self.what,
                    self.data.len(),
                    n
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn u128(&mut self) -> Result<u128> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(u128::from_le_bytes(a))
    }
}

struct Section<'a> {
    id: SectionId,
    offset: usize,
    body: &'a [u8],
}

/// The verified section table. Every section but the pages section is checked against its
/// checksum here; the pages section is checked chunk by chunk by whoever uses it.
fn sections(bytes: &[u8]) -> Result<Vec<Section<'_>>> {
    let mut c = Cursor {
        data: bytes,
        pos: 0,
        what: "header",
    };
    if bytes.len() < 8 {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            Error::Truncated("file ends inside the magic number".into())
        } else {
            Error::BadMagic
        });
    }
    if c.take(8)? != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = c.u32()?;
    if version != VERSION {
        return Err(Error::Version(version));
    }
    let count = c.u32()?;
    if count > 4096 {
        return Err(Error::Corrupted(format!("{count} sections")));
    }
    let mut table = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = c.u32()?;
        let offset = c.u64()?;
        let len = c.u64()?;
        let crc = c.u32()?;
        table.push((id, offset, len, crc));
    }
    let header_end = c.pos;
    let crc = c.u32()?;
    if crc32fast::hash(&bytes[..header_end]) != crc {
        return Err(Error::Corrupted("header checksum mismatch".into()));
    }
    let mut out = Vec::with_capacity(table.len());
    let mut end = c.pos;
    for (id, offset, len, crc) in table {
        let id = SectionId::from_u32(id)?;
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .ok_or_else(|| Error::Corrupted(format!("{id:?} section out of range")))?;
        if range.start < end {
            return Err(Error::Corrupted(format!(
                "{id:?} section overlaps what precedes it"
            )));
        }
        if range.end > bytes.len() {
            return Err(Error::Truncated(format!(
                "{id:?} section ends at byte {}, the file at {}",
                range.end,
                bytes.len()
            )));
        }
        if bytes[end..range.start].iter().any(|b| *b != 0) {
            return Err(Error::Corrupted(format!(
                "non-zero padding before the {id:?} section"
            )));
        }
        let body = &bytes[range.clone()];
        if id == SectionId::Pages {
            if crc != 0 {
                return Err(Error::Corrupted("pages section has a checksum".into()));
            }
        } else if crc32fast::hash(body) != crc {
            return Err(Error::Corrupted(format!(
                "{id:?} section checksum mismatch"
            )));
        }
        out.push(Section {
            id,
            offset: range.start,
            body,
        });
        end = range.end;
    }
    if end != bytes.len() {
        return Err(Error::Corrupted(format!(
            "{} unexpected bytes after the last section",
            bytes.len() - end
        )));
    }
    Ok(out)
}

/// Decode and verify a whole snapshot, memory included.
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    open(bytes)?.load(bytes)
}

/// Decode and verify everything but the memory pages, which are only located (see [`Opened`]).
pub fn open(bytes: &[u8]) -> Result<Opened> {
    let mut meta = None;
    let mut wasi = None;
    let mut globals = None;
    let mut frames = None;
    let mut memories = Vec::new();
    let mut module = None;
    let mut pages = None;
    for s in sections(bytes)? {
        let body = s.body;
        let twice = || Error::Corrupted(format!("more than one {:?} section", s.id));
        match s.id {
            SectionId::Meta => {
                if meta.replace(parse_meta(body)?).is_some() {
                    return Err(twice());
                }
            }
            SectionId::Wasi => {
                let v = serde_json::from_slice(body)
                    .map_err(|e| Error::Corrupted(format!("WASI section: {e}")))?;
                if wasi.replace(v).is_some() {
                    return Err(twice());
                }
            }
            SectionId::Globals => {
                if globals.replace(decode_globals(body)?).is_some() {
                    return Err(twice());
                }
            }
            SectionId::Frames => {
                if frames.replace(body.to_vec()).is_some() {
                    return Err(twice());
                }
            }
            SectionId::Memory => memories.push(decode_memory(body)?),
            SectionId::Module => {
                if module.replace(s.offset..s.offset + body.len()).is_some() {
                    return Err(twice());
                }
            }
            SectionId::Pages => {
                if pages.replace(s.offset..s.offset + body.len()).is_some() {
                    return Err(twice());
                }
            }
        }
    }
    let missing = |what: &str| Error::Corrupted(format!("no {what} section"));
    let pages = pages.ok_or_else(|| missing("pages"))?;
    for m in &memories {
        for c in &m.chunks {
            let inside = usize::try_from(c.offset)
                .ok()
                .zip(usize::try_from(c.stored_len).ok())
                .and_then(|(o, l)| Some(o >= pages.start && o.checked_add(l)? <= pages.end))
                .unwrap_or(false);
            if !inside {
                return Err(Error::Corrupted(format!(
                    "memory {}: pages from {} lie outside the pages section",
                    m.index, c.first_page
                )));
            }
        }
    }
    Ok(Opened {
        meta: meta.ok_or_else(|| missing("meta"))?,
        wasi: wasi.ok_or_else(|| missing("WASI"))?,
        globals: globals.ok_or_else(|| missing("globals"))?,
        frames: frames.ok_or_else(|| missing("frames"))?,
        memories,
        module,
    })
}

/// Verify the container and return only the meta section (cheap: no page is read).
pub fn peek_meta(bytes: &[u8]) -> Result<Meta> {
    Ok(open(bytes)?.meta)
}

fn parse_meta(body: &[u8]) -> Result<Meta> {
    serde_json::from_slice(body).map_err(|e| Error::Corrupted(format!("meta section: {e}")))
}

fn encode_globals(gs: &[GlobalValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + gs.len() * 21);
    out.extend_from_slice(&(gs.len() as u32).to_le_bytes());
    for g in gs {
        out.extend_from_slice(&g.index.to_le_bytes());
        let (kind, bits): (u8, u128) = match g.value {
            Value::I32(v) => (0, v as u32 as u128),
            Value::I64(v) => (1, v as u64 as u128),
            Value::F32(v) => (2, v as u128),
            Value::F64(v) => (3, v as u128),
            Value::V128(v) => (4, v),
        };
        out.push(kind);
        out.extend_from_slice(&bits.to_le_bytes());
    }
    out
}

fn decode_globals(body: &[u8]) -> Result<Vec<GlobalValue>> {
    let mut c = Cursor {
        data: body,
        pos: 0,
        what: "globals section",
    };
    let n = c.u32()?;
    let mut out = Vec::with_capacity((n as usize).min(body.len() / 21 + 1));
    for _ in 0..n {
        let index = c.u32()?;
        let kind = c.u8()?;
        let bits = c.u128()?;
        let value = match kind {
            0 => Value::I32(bits as u32 as i32),
            1 => Value::I64(bits as u64 as i64),
            2 => Value::F32(bits as u32),
            3 => Value::F64(bits as u64),
            4 => Value::V128(bits),
            k => {
                return Err(Error::Corrupted(format!(
                    "global {index} has unknown kind {k}"
                )))
            }
        };
        out.push(GlobalValue { index, value });
    }
    if c.pos != body.len() {
        return Err(Error::Corrupted("globals section: trailing bytes".into()));
    }
    Ok(out)
}

fn decode_memory(body: &[u8]) -> Result<StoredMemory> {
    let mut c = Cursor {
        data: body,
        pos: 0,
        what: "memory section",
    };
    let index = c.u32()?;
    let size = c.u64()?;
    let n = c.u32()?;
    if size % PAGE as u64 != 0 {
        return Err(Error::Corrupted(format!(
            "memory {index}: size {size} is not a whole number of pages"
        )));
    }
    let pages = size / PAGE as u64;
    if u64::from(n) > pages {
        return Err(Error::Corrupted(format!(
            "memory {index}: {n} chunks in {pages} pages"
        )));
    }
    let mut chunks = Vec::with_capacity(n as usize);
    let mut next_free = 0u64;
    for _ in 0..n {
        let first_page = c.u32()?;
        let count = c.u32()?;
        let enc = c.u8()?;
        let offset = c.u64()?;
        let stored_len = c.u64()?;
        let crc = c.u32()?;
        let end = u64::from(first_page) + u64::from(count);
        if count == 0 || end > pages {
            return Err(Error::Corrupted(format!(
                "memory {index}: pages {first_page}+{count} out of range"
            )));
        }
        if u64::from(first_page) < next_free {
            return Err(Error::Corrupted(format!(
                "memory {index}: pages out of order"
            )));
        }
        next_free = end;
        let encoding = match enc {
            0 if stored_len == u64::from(count) * PAGE as u64 && offset % PAGE as u64 == 0 => {
                ChunkEncoding::Raw
            }
            1 if count == 1 => ChunkEncoding::Lz4,
            _ => {
                return Err(Error::Corrupted(format!(
                    "memory {index}: pages from {first_page} have a bad encoding"
                )))
            }
        };
        chunks.push(StoredChunk {
            first_page,
            pages: count,
            encoding,
            offset,
            stored_len,
            crc,
        });
    }
    if c.pos != body.len() {
        return Err(Error::Corrupted(format!("memory {index}: trailing bytes")));
    }
    Ok(StoredMemory {
        index,
        size,
        chunks,
    })
}
