//! The container: a header with a checksummed section table, then the sections.
//!
//! ```text
//! magic "TERNSNAP" | version u32 | section count u32
//! per section: id u32 | length u64 | crc32 u32
//! crc32 u32 of everything above
//! section bodies, in table order
//! ```
//! All integers little endian. See `docs/snapshot-format.md` for each section's contents.

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
            other => return Err(Error::Corrupted(format!("unknown section id {other}"))),
        })
    }
}

const ENC_RAW: u8 = 0;
const ENC_LZ4: u8 = 1;

/// Serialize a snapshot. Memory pages are LZ4-compressed when that saves at least a quarter.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut sections: Vec<(SectionId, Vec<u8>)> = vec![
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
    for m in &s.memories {
        sections.push((SectionId::Memory, encode_memory(m)));
    }
    if let Some(module) = &s.module {
        sections.push((SectionId::Module, module.clone()));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (id, body) in &sections {
        out.extend_from_slice(&(*id as u32).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for (_, body) in sections {
        out.extend_from_slice(&body);
    }
    out
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

/// The verified section table: (id, body).
fn sections(bytes: &[u8]) -> Result<Vec<(SectionId, &[u8])>> {
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
        let len = c.u64()?;
        let crc = c.u32()?;
        table.push((id, len, crc));
    }
    let header_end = c.pos;
    let crc = c.u32()?;
    if crc32fast::hash(&bytes[..header_end]) != crc {
        return Err(Error::Corrupted("header checksum mismatch".into()));
    }
    c.what = "section data";
    let mut out = Vec::with_capacity(table.len());
    for (id, len, crc) in table {
        let id = SectionId::from_u32(id)?;
        let len = usize::try_from(len).map_err(|_| Error::Corrupted("section too large".into()))?;
        let body = c.take(len)?;
        if crc32fast::hash(body) != crc {
            return Err(Error::Corrupted(format!(
                "{id:?} section checksum mismatch"
            )));
        }
        out.push((id, body));
    }
    if c.pos != bytes.len() {
        return Err(Error::Corrupted(format!(
            "{} unexpected bytes after the last section",
            bytes.len() - c.pos
        )));
    }
    Ok(out)
}

/// Decode and verify a whole snapshot.
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    let mut meta = None;
    let mut wasi = None;
    let mut globals = None;
    let mut frames = None;
    let mut memories = Vec::new();
    let mut module = None;
    for (id, body) in sections(bytes)? {
        match id {
            SectionId::Meta => meta = Some(parse_meta(body)?),
            SectionId::Wasi => {
                wasi = Some(
                    serde_json::from_slice(body)
                        .map_err(|e| Error::Corrupted(format!("WASI section: {e}")))?,
                )
            }
            SectionId::Globals => globals = Some(decode_globals(body)?),
            SectionId::Frames => frames = Some(body.to_vec()),
            SectionId::Memory => memories.push(decode_memory(body)?),
            SectionId::Module => module = Some(body.to_vec()),
        }
    }
    let missing = |what: &str| Error::Corrupted(format!("no {what} section"));
    Ok(Snapshot {
        meta: meta.ok_or_else(|| missing("meta"))?,
        wasi: wasi.ok_or_else(|| missing("WASI"))?,
        globals: globals.ok_or_else(|| missing("globals"))?,
        frames: frames.ok_or_else(|| missing("frames"))?,
        memories,
        module,
    })
}

/// Verify the container and return only the meta section (cheap: nothing is decompressed).
pub fn peek_meta(bytes: &[u8]) -> Result<Meta> {
    let secs = sections(bytes)?;
    let (_, body) = secs
        .iter()
        .find(|(id, _)| *id == SectionId::Meta)
        .ok_or_else(|| Error::Corrupted("no meta section".into()))?;
    parse_meta(body)
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
    Ok(out)
}

fn encode_memory(m: &MemoryImage) -> Vec<u8> {
    let mut head = Vec::new();
    let mut payload = Vec::new();
    head.extend_from_slice(&m.index.to_le_bytes());
    head.extend_from_slice(&m.size.to_le_bytes());
    head.extend_from_slice(&(m.chunks.len() as u32).to_le_bytes());
    for c in &m.chunks {
        let raw = &c.data;
        let packed = lz4_flex::block::compress(raw);
        let (enc, data) = if packed.len() < raw.len() / 4 * 3 {
            (ENC_LZ4, packed)
        } else {
            (ENC_RAW, raw.clone())
        };
        head.extend_from_slice(&c.page.to_le_bytes());
        head.push(enc);
        head.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        head.extend_from_slice(&(data.len() as u32).to_le_bytes());
        payload.extend_from_slice(&data);
    }
    head.extend_from_slice(&payload);
    head
}

fn decode_memory(body: &[u8]) -> Result<MemoryImage> {
    let mut c = Cursor {
        data: body,
        pos: 0,
        what: "memory section",
    };
    let index = c.u32()?;
    let size = c.u64()?;
    let n = c.u32()?;
    let pages = size.div_ceil(PAGE as u64);
    if u64::from(n) > pages {
        return Err(Error::Corrupted(format!(
            "memory {index}: {n} chunks in {pages} pages"
        )));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let page = c.u32()?;
        let enc = c.u8()?;
        let raw_len = c.u32()? as usize;
        let stored = c.u32()? as usize;
        let start = page as u64 * PAGE as u64;
        if u64::from(page) >= pages || raw_len > PAGE || start + raw_len as u64 > size {
            return Err(Error::Corrupted(format!(
                "memory {index}: page {page} out of range"
            )));
        }
        entries.push((page, enc, raw_len, stored));
    }
    let mut chunks = Vec::with_capacity(entries.len());
    let mut last = None;
    for (page, enc, raw_len, stored) in entries {
        if last.is_some_and(|l| page <= l) {
            return Err(Error::Corrupted(format!(
                "memory {index}: pages out of order"
            )));
        }
        last = Some(page);
        let data = c.take(stored)?;
        let raw = match enc {
            ENC_RAW if stored == raw_len => data.to_vec(),
            ENC_LZ4 => lz4_flex::block::decompress(data, raw_len)
                .ok()
                .filter(|d| d.len() == raw_len)
                .ok_or_else(|| {
                    Error::Corrupted(format!("memory {index}: page {page} does not decompress"))
                })?,
            _ => {
                return Err(Error::Corrupted(format!(
                    "memory {index}: page {page} has bad encoding {enc}"
                )))
            }
        };
        chunks.push(Chunk { page, data: raw });
    }
    if c.pos != body.len() {
        return Err(Error::Corrupted(format!("memory {index}: trailing bytes")));
    }
    Ok(MemoryImage {
        index,
        size,
        chunks,
    })
}
