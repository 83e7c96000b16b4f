//! The destination's half of the file sync (see `files`): mirror the source's list into this
//! side's directories, ask for the blocks that differ, and write them, never through a link.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::{
    block_hashes, identity, link_target, no_links, rel_string, walk, Entry, Manifest, Need, BLOCK,
};
use super::frame::{io_err, kind, proto, read_frame, Caused, FrameWriter};
use crate::MigrationCause;

/// The destination's side of one pass, after the manifest frame (in `frame`) arrived.
pub(super) fn receive<S: Read + Write>(
    conn: &mut S,
    frame: &[u8],
    buf: &mut Vec<u8>,
    dirs: &[(String, PathBuf)],
) -> Caused<()> {
    let manifest: Manifest = serde_json::from_slice(frame).map_err(proto)?;
    // Directories this side shares with the source (one machine) need nothing.
    let shared: Vec<&str> = dirs
        .iter()
        .filter(|(g, h)| {
            identity(h).is_some_and(|(d, i)| manifest.roots.contains(&(g.clone(), d, i)))
        })
        .map(|(g, _)| g.as_str())
        .collect();
    let entries: Vec<Entry> = manifest
        .entries
        .into_iter()
        .filter(|e| !shared.contains(&e.dir.as_str()))
        .collect();
    let dirs: Vec<(String, PathBuf)> = dirs
        .iter()
        .filter(|(g, _)| !shared.contains(&g.as_str()))
        .cloned()
        .collect();
    let dirs = &dirs[..];
    let root = |dir: &str| -> Caused<&PathBuf> {
        dirs.iter()
            .find(|(g, _)| g == dir)
            .map(|(_, h)| h)
            .ok_or_else(|| MigrationCause::MissingDirectory(dir.into()))
    };
    // Mirror: what the source no longer has goes (deepest first), files the source lists
    // as directories and the other way round are replaced, and links that point elsewhere.
    for (guest, host) in dirs {
        let mut local = Vec::new();
        walk(host, Path::new(""), &mut local);
        for (rel, m) in local.iter().rev() {
            let Some(path) = rel_string(rel) else {
                continue;
            };
            let wanted = entries
                .iter()
                .find(|e| e.dir == *guest && e.path == path)
                .map(|e| (e.is_dir, e.link.clone()));
            let have = (
                m.is_dir(),
                if m.file_type().is_symlink() {
                    link_target(&host.join(rel))
                } else {
                    None
                },
            );
            if wanted != Some(have) {
                let p = host.join(rel);
                let _ = if m.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    let mut needs = Vec::new();
    for e in &entries {
        let path = no_links(root(&e.dir)?, &e.path, e.link.is_some())?;
        if let Some(target) = &e.link {
            if std::fs::symlink_metadata(&path).is_err() {
                std::os::unix::fs::symlink(target, &path)
                    .map_err(io_err("creating a symbolic link"))?;
            }
        } else if e.is_dir {
            std::fs::create_dir_all(&path).map_err(io_err("creating a directory"))?;
        } else if e.changed {
            needs.push(Need {
                dir: e.dir.clone(),
                path: e.path.clone(),
                blocks: block_hashes(&path),
            });
        }
    }
    let body = serde_json::to_vec(&needs).map_err(proto)?;
    FrameWriter::new(&mut *conn, None)
        .send(kind::NEEDS, &[&body])
        .map_err(io_err("answering"))?;
    let mut touched: Vec<(PathBuf, u64)> = needs
        .iter()
        .filter_map(|n| {
            let e = entries
                .iter()
                .find(|e| e.dir == n.dir && e.path == n.path)?;
            Some((no_links(root(&n.dir).ok()?, &n.path, false).ok()?, e.size))
        })
        .collect();
    loop {
        match read_frame(conn, buf)? {
            kind::FILE_DATA => {
                let hl = u32::from_le_bytes(
                    buf.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                ) as usize;
                let head = buf
                    .get(4..4 + hl)
                    .ok_or_else(|| proto("short file frame"))?;
                let (dir, path, offset): (String, String, u64) =
                    serde_json::from_slice(head).map_err(proto)?;
                let rest = &buf[4 + hl..];
                let raw_len = u32::from_le_bytes(
                    rest.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                ) as usize;
                if raw_len > BLOCK {
                    return Err(proto("file block too large"));
                }
                let data = lz4_flex::block::decompress(&rest[4..], raw_len)
                    .map_err(|e| proto(format!("bad compressed file data: {e}")))?;
                let p = no_links(root(&dir)?, &path, false)?;
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err("creating a directory"))?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)
                    .map_err(io_err("writing a file"))?;
                f.seek(SeekFrom::Start(offset))
                    .and_then(|_| f.write_all(&data))
                    .map_err(io_err("writing a file"))?;
            }
            kind::FILES_DONE => break,
            k => {
                return Err(MigrationCause::UnexpectedFrame {
                    kind: k,
                    context: "while receiving files",
                })
            }
        }
    }
    // Every file the source listed as changed has its size (new, shrunk or unchanged).
    for (p, size) in touched.drain(..) {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(io_err("writing a file"))?;
        f.set_len(size).map_err(io_err("writing a file"))?;
    }
    FrameWriter::new(&mut *conn, None)
        .send(kind::FILES_SYNCED, &[])
        .map(|_| ())
        .map_err(io_err("answering"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    use super::super::files::{send, Seen};
    use super::*;

    /// One pass of the file sync between two directories, over a socket pair.
    fn sync(from: &Path, to: &Path) -> Caused<()> {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let to = to.to_path_buf();
        let dest = std::thread::spawn(move || -> Caused<()> {
            let mut buf = Vec::new();
            let k = read_frame(&mut b, &mut buf)?;
            assert_eq!(k, kind::MANIFEST);
            let frame = std::mem::take(&mut buf);
            receive(&mut b, &frame, &mut buf, &[("/data".into(), to)])
        });
        let mut fw = FrameWriter::new(&mut a, None);
        let sent = send(
            &mut fw,
            &mut Vec::new(),
            &[("/data".into(), from.to_path_buf())],
            &mut Seen::new(),
        );
        dest.join().expect("destination")?;
        sent.map(|_| ())
    }

    #[test]
    fn files_directories_and_symbolic_links_are_mirrored() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(from.path().join("sub")).expect("mkdir");
        std::fs::write(from.path().join("sub/a.txt"), b"hello").expect("write");
        std::os::unix::fs::symlink("sub/a.txt", from.path().join("link")).expect("link");
        std::os::unix::fs::symlink("/nowhere/at/all", from.path().join("dangling")).expect("link");
        // Stale things at the destination: a link to elsewhere and a file the source lacks.
        std::os::unix::fs::symlink("other", to.path().join("link")).expect("link");
        std::fs::write(to.path().join("gone.txt"), b"x").expect("write");
        sync(from.path(), to.path()).expect("sync");
        assert_eq!(
            std::fs::read(to.path().join("sub/a.txt")).expect("read"),
            b"hello"
        );
        for (name, target) in [("link", "sub/a.txt"), ("dangling", "/nowhere/at/all")] {
            assert_eq!(
                std::fs::read_link(to.path().join(name)).expect("a link"),
                Path::new(target)
            );
        }
        assert!(!to.path().join("gone.txt").exists());
    }

    /// Talks the source's side of the protocol as a hostile peer would.
    struct Scripted {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_link_in_the_volume_never_leads_a_write_outside_it() {
        let volume = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        // The source lists a link to a directory outside, then sends data "through" it.
        let manifest = serde_json::json!({
            "roots": [],
            "entries": [{
                "dir": "/data", "path": "evil", "is_dir": false, "size": 0,
                "changed": false, "link": outside.path().to_str().expect("utf-8"),
            }],
        });
        let head = serde_json::to_vec(&("/data", "evil/x", 0u64)).expect("json");
        let data = b"owned";
        let packed = lz4_flex::block::compress(data);
        let mut input = Vec::new();
        FrameWriter::new(&mut input, None)
            .frame(
                kind::FILE_DATA,
                &[
                    &(head.len() as u32).to_le_bytes(),
                    &head,
                    &(data.len() as u32).to_le_bytes(),
                    &packed,
                ],
            )
            .expect("frame");
        let mut conn = Scripted {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };
        let body = serde_json::to_vec(&manifest).expect("json");
        let got = receive(
            &mut conn,
            &body,
            &mut Vec::new(),
            &[("/data".into(), volume.path().to_path_buf())],
        );
        let err = got.expect_err("refused").to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!outside.path().join("x").exists());
    }
}
