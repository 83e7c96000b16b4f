//! Preopen discovery (`fd_prestat_*`) and directory listing (`fd_readdir`).
//!
//! Listings are sorted by name with "." and ".." first and the cookie is the
//! index into that order, so a guest that pages through a directory gets the
//! same sequence on any host, including after a resume mid-listing.

use crate::abi::*;
use crate::ctx::{Kind, Listed};
use crate::errno::{Errno, WasiResult};
use crate::mem::Mem;
use crate::stat::filetype;
use crate::WasiCtx;
use cap_std::fs::{Dir, MetadataExt};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;

fn list(dir: &Dir) -> WasiResult<Vec<Listed>> {
    let own_ino = dir.dir_metadata()?.ino();
    let dot = |name: &[u8]| Listed {
        name: name.to_vec(),
        ino: own_ino,
        filetype: FILETYPE_DIRECTORY,
    };
    let mut entries = Vec::new();
    for entry in dir.entries()? {
        let entry = entry?;
        let ft = entry.file_type()?;
        entries.push(Listed {
            name: entry.file_name().as_bytes().to_vec(),
            ino: entry.ino(),
            filetype: filetype(ft),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    // Like wasmtime, ".." reports the directory's own inode: the parent may
    // lie outside the sandbox and must not be inspected.
    let mut out = vec![dot(b"."), dot(b"..")];
    out.append(&mut entries);
    Ok(out)
}

fn dirent_header(next: u64, e: &Listed) -> WasiResult<[u8; DIRENT_SIZE as usize]> {
    let namlen = u32::try_from(e.name.len()).map_err(|_| Errno::NAMETOOLONG)?;
    let mut h = [0u8; DIRENT_SIZE as usize];
    h[0..8].copy_from_slice(&next.to_le_bytes());
    h[8..16].copy_from_slice(&e.ino.to_le_bytes());
    h[16..20].copy_from_slice(&namlen.to_le_bytes());
    h[20] = e.filetype;
    Ok(h)
}

impl WasiCtx {
    pub(crate) fn fd_prestat_get(&self, mem: &mut Mem<'_>, fd: u32, ret: u32) -> WasiResult<()> {
        match &self.entry(fd)?.kind {
            Kind::Dir(d) if d.is_preopen => {
                let len = u32::try_from(d.preopen.len()).map_err(|_| Errno::NAMETOOLONG)?;
                let mut buf = [0u8; PRESTAT_SIZE as usize];
                buf[4..8].copy_from_slice(&len.to_le_bytes());
                mem.write(ret, &buf)
            }
            // wasi-libc stops scanning for preopens at the first EBADF.
            _ => Err(Errno::BADF),
        }
    }

    pub(crate) fn fd_prestat_dir_name(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        buf: u32,
        len: u32,
    ) -> WasiResult<()> {
        match &self.entry(fd)?.kind {
            Kind::Dir(d) if d.is_preopen => {
                let name = d.preopen.as_bytes();
                if name.len() > len as usize {
                    return Err(Errno::NAMETOOLONG);
                }
                mem.write(buf, name)
            }
            _ => Err(Errno::NOTDIR),
        }
    }

    pub(crate) fn fd_readdir(
        &mut self,
        mem: &mut Mem<'_>,
        fd: u32,
        buf: u32,
        buf_len: u32,
        cookie: u64,
    ) -> WasiResult<u32> {
        mem.check(buf, buf_len)?;
        let d = match &mut self.entry_mut(fd)?.kind {
            Kind::Dir(d) => d,
            _ => return Err(Errno::BADF),
        };
        if cookie == 0 || d.listing.is_none() {
            d.listing = Some(list(&d.dir)?);
        }
        let listing = d.listing.as_deref().unwrap_or_default();
        let cap = buf_len as usize;
        let mut out: Vec<u8> = Vec::new();
        let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
        for (i, e) in listing.iter().enumerate().skip(skip) {
            if out.len() >= cap {
                break;
            }
            let next = u64::try_from(i).map_err(|_| Errno::OVERFLOW)? + 1;
            out.extend_from_slice(&dirent_header(next, e)?);
            out.extend_from_slice(&e.name);
        }
        // A truncated last entry tells the caller to retry with a bigger
        // buffer from that entry's cookie: that is the witx contract.
        out.truncate(cap);
        mem.write(buf, &out)?;
        u32::try_from(out.len()).map_err(|_| Errno::OVERFLOW)
    }
}
