//! Linear memory images: only pages that hold a non-zero byte are kept (a fresh Wasm memory is
//! zero, and most of a large heap usually is), and each kept page is compressed when that pays.

use crate::{Error, Result};

/// Granularity of the sparse image: one WebAssembly page.
pub const PAGE: usize = 65536;

/// A captured linear memory: its size and the contents of its non-zero pages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemoryImage {
    pub index: u32,
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Page number (byte offset / [`PAGE`]).
    pub page: u32,
    /// The page as it was ([`PAGE`] bytes, or less for a final partial page); compression
    /// happens only in the file encoding.
    pub data: Vec<u8>,
}

impl MemoryImage {
    /// Copy the non-zero pages of `bytes`.
    pub fn capture(index: u32, bytes: &[u8]) -> MemoryImage {
        let mut chunks = Vec::new();
        for (page, data) in bytes.chunks(PAGE).enumerate() {
            if !is_zero(data) {
                chunks.push(Chunk {
                    page: page as u32,
                    data: data.to_vec(),
                });
            }
        }
        MemoryImage {
            index,
            size: bytes.len() as u64,
            chunks,
        }
    }

    /// Bytes held (before compression).
    pub fn stored_raw(&self) -> u64 {
        self.chunks.iter().map(|c| c.data.len() as u64).sum()
    }

    /// Write the image into `dest`, which must be zero wherever the image has no chunk.
    pub fn write_into(&self, dest: &mut [u8]) -> Result<()> {
        for c in &self.chunks {
            let d = &c.data;
            let start = c.page as usize * PAGE;
            let slot = dest.get_mut(start..start + d.len()).ok_or_else(|| {
                Error::Corrupted(format!("memory page {} outside memory", c.page))
            })?;
            slot.copy_from_slice(d);
        }
        Ok(())
    }
}

fn is_zero(data: &[u8]) -> bool {
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    words
        .map(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .all(|w| w == 0)
        && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_are_elided() {
        let mut mem = vec![0u8; PAGE * 4];
        mem[PAGE * 2 + 7] = 9;
        let img = MemoryImage::capture(0, &mem);
        assert_eq!(img.chunks.len(), 1);
        assert_eq!(img.chunks[0].page, 2);
        let mut back = vec![0u8; PAGE * 4];
        img.write_into(&mut back).expect("fits");
        assert_eq!(back, mem);
    }
}
