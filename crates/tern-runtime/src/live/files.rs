//! The program's preopened directories move with it: before the memory rounds and again while
//! it is paused, the source lists every file and directory under each preopen (by guest path),
//! the destination answers with what it lacks (for a file it already has, the hashes of its
//! 64 KiB blocks, so that only changed blocks travel), and removes what the source no longer
//! has. The second pass only looks again at files whose size or time changed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::frame::{io_err, kind, proto, read_answer, Caused, FrameWriter};
use super::memory::hash_page;
use crate::MigrationCause;

pub(super) const BLOCK: usize = 64 << 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Entry {
    /// The preopen's guest path.
    pub(super) dir: String,
    /// Relative path below it, '/'-separated.
    pub(super) path: String,
    pub(super) is_dir: bool,
    pub(super) size: u64,
    /// Changed since the previous pass (or no previous pass): the destination looks at it.
    pub(super) changed: bool,
    /// A symbolic link, and what it points to (as written, not resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) link: Option<String>,
}

/// One pass's list: each directory's identity on the source's machine, then its entries.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// (guest path, device, inode) of each directory: a destination that finds the very
    /// same directory (both on one machine) leaves it alone.
    pub(super) roots: Vec<(String, u64, u64)>,
    pub(super) entries: Vec<Entry>,
}

pub(super) fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.dev(), m.ino()))
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Need {
    pub(super) dir: String,
    pub(super) path: String,
    /// Hashes of the destination's blocks; None: send everything.
    pub(super) blocks: Option<Vec<u64>>,
}

/// (size, modification time) of each file the source listed, to find what changed since.
pub(super) type Seen = HashMap<(String, String), (u64, i128)>;

fn stamp(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

pub(super) fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let r = rel.join(e.file_name());
        if m.is_dir() {
            out.push((r.clone(), m));
            walk(root, &r, out);
        } else if m.is_file() || m.file_type().is_symlink() {
            out.push((r, m));
        }
        // Special files (sockets, fifos, devices) stay behind.
    }
}

pub(super) fn rel_string(p: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = p
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    parts.map(|v| v.join("/"))
}

/// A relative path from the wire, refused unless it stays inside its directory.
fn safe(root: &Path, rel: &str) -> Caused<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty()
        || rel.contains('\0')
        || !p.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(MigrationCause::UnsafePath {
            path: rel.into(),
            through_link: false,
        });
    }
    Ok(root.join(p))
}

/// As `safe`, for a path this side reads or writes: no part of it may be a symbolic link
/// (a link the volume holds must not lead a read or a write outside it). The last part
/// may be one if `link_ok` (a link being mirrored).
pub(super) fn no_links(root: &Path, rel: &str, link_ok: bool) -> Caused<PathBuf> {
    let full = safe(root, rel)?;
    let mut at = root.to_path_buf();
    let parts: Vec<_> = Path::new(rel).components().collect();
    let check = if link_ok {
        parts.len() - 1
    } else {
        parts.len()
    };
    for c in &parts[..check] {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(MigrationCause::UnsafePath {
                    path: rel.into(),
                    through_link: true,
                })
            }
            Ok(_) => {}
            Err(_) => break, // nothing there yet, nor below
        }
    }
    Ok(full)
}

pub(super) fn link_target(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .and_then(|t| t.to_str().map(str::to_string))
}

pub(super) fn block_hashes(path: &Path) -> Option<Vec<u64>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; BLOCK];
    let mut out = Vec::new();
    loop {
        let mut n = 0;
        while n < BLOCK {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(_) => return None,
            }
        }
        if n == 0 {
            return Some(out);
        }
        out.push(hash_page(&buf[..n]));
        if n < BLOCK {
            return Some(out);
        }
    }
}

/// The source's side of one pass.
pub(super) fn send<S: Read + Write>(
    fw: &mut FrameWriter<&mut S>,
    rbuf: &mut Vec<u8>,
    dirs: &[(String, PathBuf)],
    seen: &mut Seen,
) -> Caused<(u64, u64)> {
    let mut entries = Vec::new();
    let mut now = Seen::new();
    for (guest, host) in dirs {
        let mut found = Vec::new();
        walk(host, Path::new(""), &mut found);
        for (rel, m) in found {
            let Some(path) = rel_string(&rel) else {
                continue;
            };
            let key = (guest.clone(), path.clone());
            let s = (m.len(), stamp(&m));
            let link = if m.file_type().is_symlink() {
                match link_target(&host.join(&rel)) {
                    Some(t) => Some(t),
                    None => continue, // not UTF-8, or gone meanwhile
                }
            } else {
                None
            };
            let changed = m.is_file() && seen.get(&key) != Some(&s);
            now.insert(key, s);
            entries.push(Entry {
                dir: guest.clone(),
                path,
                is_dir: m.is_dir(),
                size: if link.is_some() { 0 } else { m.len() },
                changed,
                link,
            });
        }
    }
    let roots = dirs
        .iter()
        .filter_map(|(g, h)| identity(h).map(|(d, i)| (g.clone(), d, i)))
        .collect();
    let body = serde_json::to_vec(&Manifest { roots, entries }).map_err(proto)?;
    let mut wire = fw
        .send(kind::MANIFEST, &[&body])
        .map_err(io_err("sending the file list"))?;
    let mut raw = 0u64;
    read_answer(&mut fw.w, rbuf, kind::NEEDS, "instead of the files needed")?;
    let needs: Vec<Need> = serde_json::from_slice(rbuf).map_err(proto)?;
    let mut buf = vec![0u8; BLOCK];
    for need in needs {
        let Some((_, host)) = dirs.iter().find(|(g, _)| *g == need.dir) else {
            continue;
        };
        let path = no_links(host, &need.path, false)?;
        // Not through a link swapped in since the check, either.
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        else {
            continue; // gone meanwhile: the next pass deletes it there
        };
        let mut block = 0usize;
        loop {
            let mut n = 0;
            while n < BLOCK {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(io_err("reading a file")(e)),
                }
            }
            if n == 0 {
                break;
            }
            let same = need
                .blocks
                .as_ref()
                .and_then(|b| b.get(block))
                .is_some_and(|h| *h == hash_page(&buf[..n]));
            if !same {
                let head =
                    serde_json::to_vec(&(&need.dir, &need.path, block * BLOCK)).map_err(proto)?;
                let packed = lz4_flex::block::compress(&buf[..n]);
                let len = (head.len() as u32).to_le_bytes();
                let raw_len = (n as u32).to_le_bytes();
                wire += fw
                    .frame(kind::FILE_DATA, &[&len, &head, &raw_len, &packed])
                    .map_err(io_err("sending a file"))?;
                raw += n as u64;
            }
            block += 1;
            if n < BLOCK {
                break;
            }
        }
    }
    wire += fw.send(kind::FILES_DONE, &[]).map_err(io_err("sending"))?;
    read_answer(
        &mut fw.w,
        rbuf,
        kind::FILES_SYNCED,
        "instead of files synced",
    )?;
    *seen = now;
    Ok((raw, wire))
}
