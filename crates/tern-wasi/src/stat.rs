//! `fdstat` / `filestat` records and the mapping from host metadata.

use crate::abi::*;
use crate::errno::WasiResult;
use crate::mem::Mem;
use cap_std::fs::{FileType, FileTypeExt, Metadata, MetadataExt};

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Filestat {
    pub dev: u64,
    pub ino: u64,
    pub filetype: u8,
    pub nlink: u64,
    pub size: u64,
    pub atim: u64,
    pub mtim: u64,
    pub ctim: u64,
}

pub(crate) fn filetype(ft: FileType) -> u8 {
    if ft.is_dir() {
        FILETYPE_DIRECTORY
    } else if ft.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ft.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ft.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ft.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ft.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        // FIFOs have no preview-1 file type.
        FILETYPE_UNKNOWN
    }
}

/// Seconds + nanoseconds since the epoch as a WASI timestamp; times before
/// 1970 are clamped to 0 since the type is unsigned.
fn timestamp(secs: i64, nanos: i64) -> u64 {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nanos = u64::try_from(nanos).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

impl From<&Metadata> for Filestat {
    fn from(m: &Metadata) -> Self {
        Filestat {
            dev: m.dev(),
            ino: m.ino(),
            filetype: filetype(m.file_type()),
            nlink: m.nlink(),
            size: m.size(),
            atim: timestamp(m.atime(), m.atime_nsec()),
            mtim: timestamp(m.mtime(), m.mtime_nsec()),
            ctim: timestamp(m.ctime(), m.ctime_nsec()),
        }
    }
}

pub(crate) fn write_filestat(mem: &mut Mem<'_>, ptr: u32, st: &Filestat) -> WasiResult<()> {
    let mut buf = [0u8; FILESTAT_SIZE as usize];
    buf[0..8].copy_from_slice(&st.dev.to_le_bytes());
    buf[8..16].copy_from_slice(&st.ino.to_le_bytes());
    buf[16] = st.filetype;
    buf[24..32].copy_from_slice(&st.nlink.to_le_bytes());
    buf[32..40].copy_from_slice(&st.size.to_le_bytes());
    buf[40..48].copy_from_slice(&st.atim.to_le_bytes());
    buf[48..56].copy_from_slice(&st.mtim.to_le_bytes());
    buf[56..64].copy_from_slice(&st.ctim.to_le_bytes());
    mem.write(ptr, &buf)
}

pub(crate) fn write_fdstat(
    mem: &mut Mem<'_>,
    ptr: u32,
    filetype: u8,
    flags: u16,
    rights_base: u64,
    rights_inheriting: u64,
) -> WasiResult<()> {
    let mut buf = [0u8; FDSTAT_SIZE as usize];
    buf[0] = filetype;
    buf[2..4].copy_from_slice(&flags.to_le_bytes());
    buf[8..16].copy_from_slice(&rights_base.to_le_bytes());
    buf[16..24].copy_from_slice(&rights_inheriting.to_le_bytes());
    mem.write(ptr, &buf)
}

/// Splits a WASI timestamp into the (seconds, nanoseconds) pair the OS takes.
pub(crate) fn split_timestamp(ts: u64) -> (i64, i64) {
    let secs = i64::try_from(ts / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = i64::try_from(ts % 1_000_000_000).unwrap_or(0);
    (secs, nanos)
}
