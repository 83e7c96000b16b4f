//! Checkpoint support: a plain-data description of a [`WasiCtx`] and the
//! code that rebuilds one from it in another process.

use crate::clock::Clocks;
use crate::ctx::{
    listener_entry, open_preopen, preopen_entry, DirFd, Entry, FileFd, InterruptedWait, Kind,
};
use crate::path::file_options;
use crate::{Error, Preopen, WasiCtx};
use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::net::TcpListener;

/// Everything needed to continue a guest's WASI world elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasiState {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Open descriptors in ascending fd order.
    pub fds: Vec<FdState>,
    /// Closed descriptor numbers awaiting reuse, so numbering continues
    /// exactly as it would have without the checkpoint.
    pub free_fds: Vec<u32>,
    /// The guest's monotonic clock at save time.
    pub monotonic_ns: u64,
    /// The guest's CPU-time clock at save time.
    pub cputime_ns: u64,
    pub exit_code: Option<i32>,
    /// The directories granted at save time (host path and guest name), so a resume on the
    /// same machine can grant them again without being told.
    #[serde(default)]
    pub preopens: Vec<Preopen>,
    /// A `poll_oneoff` the capture interrupted, whose timers keep their deadlines.
    #[serde(default)]
    pub interrupted_wait: Option<InterruptedWait>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdState {
    pub fd: u32,
    pub kind: FdKindState,
    pub fdflags: u16,
    pub rights_base: u64,
    pub rights_inheriting: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FdKindState {
    Stdin,
    Stdout,
    Stderr,
    /// A preopened directory, matched by guest name on restore.
    PreopenDir {
        guest: String,
    },
    /// A directory opened by the guest, `path` relative to the preopen.
    Dir {
        preopen_guest: String,
        path: String,
    },
    /// A file opened by the guest, `path` relative to the preopen.
    File {
        preopen_guest: String,
        path: String,
        offset: u64,
        append: bool,
        read: bool,
        write: bool,
    },
    /// The `index`-th listener handed to `new`/`restore`.
    Listener {
        index: usize,
    },
    /// An accepted connection; recorded so restore can refuse clearly.
    Stream,
}

fn guest_path(preopen: &str, rel: &str) -> String {
    if rel.is_empty() {
        preopen.to_string()
    } else {
        format!("{}/{}", preopen.trim_end_matches('/'), rel)
    }
}

impl WasiCtx {
    pub fn save(&self) -> Result<WasiState, Error> {
        let mut fds = Vec::with_capacity(self.fds.len());
        for (&fd, e) in &self.fds {
            let kind = match &e.kind {
                Kind::Stdin => FdKindState::Stdin,
                Kind::Stdout => FdKindState::Stdout,
                Kind::Stderr => FdKindState::Stderr,
                Kind::Dir(d) if d.is_preopen => FdKindState::PreopenDir {
                    guest: d.preopen.clone(),
                },
                Kind::Dir(d) => FdKindState::Dir {
                    preopen_guest: d.preopen.clone(),
                    path: d.rel.clone(),
                },
                Kind::File(f) => {
                    let offset = (&f.file)
                        .stream_position()
                        .map_err(|source| Error::Inspect { fd, source })?;
                    FdKindState::File {
                        preopen_guest: f.preopen.clone(),
                        path: f.rel.clone(),
                        offset,
                        append: e.fdflags & crate::abi::FDFLAGS_APPEND != 0,
                        read: f.read,
                        write: f.write,
                    }
                }
                Kind::Listener { index, .. } => FdKindState::Listener { index: *index },
                Kind::Stream { .. } => FdKindState::Stream,
            };
            fds.push(FdState {
                fd,
                kind,
                fdflags: e.fdflags,
                rights_base: e.rights_base,
                rights_inheriting: e.rights_inheriting,
            });
        }
        Ok(WasiState {
            args: self.args.clone(),
            env: self.env.clone(),
            fds,
            free_fds: self.free.iter().copied().collect(),
            monotonic_ns: self.clocks.monotonic(),
            cputime_ns: self.clocks.cputime(),
            exit_code: self.exit_code,
            preopens: self.preopens.clone(),
            interrupted_wait: self.interrupted_wait.clone(),
        })
    }

    /// Rebuilds a context from `state`. Preopens are matched by guest name
    /// and listeners by position; files are reopened by path without
    /// create/truncate and put back at their saved offset.
    pub fn restore(
        state: &WasiState,
        preopens: &[Preopen],
        listeners: Vec<TcpListener>,
    ) -> Result<Self, Error> {
        let mut roots: BTreeMap<&str, Dir> = BTreeMap::new();
        let mut root = |guest: &str| -> Result<Dir, Error> {
            if let Some(d) = roots.get(guest) {
                return d.try_clone().map_err(|source| Error::Reopen {
                    guest_path: guest.into(),
                    source,
                });
            }
            let p = preopens
                .iter()
                .find(|p| p.guest == guest)
                .ok_or_else(|| Error::MissingPreopen(guest.into()))?;
            let dir = open_preopen(p)?;
            let copy = dir.try_clone().map_err(|source| Error::Reopen {
                guest_path: guest.into(),
                source,
            })?;
            roots.insert(&p.guest, dir);
            Ok(copy)
        };
        let listener_count = listeners.len();
        let mut listeners: Vec<Option<TcpListener>> = listeners.into_iter().map(Some).collect();

        let clocks = Clocks::resume(state.monotonic_ns, state.cputime_ns);
        let mut ctx = WasiCtx::empty(state.args.clone(), state.env.clone(), clocks);
        ctx.preopens = preopens.to_vec();
        ctx.exit_code = state.exit_code;
        ctx.interrupted_wait = state.interrupted_wait.clone();
        ctx.free = state.free_fds.iter().copied().collect();
        for s in &state.fds {
            let mut entry = match &s.kind {
                FdKindState::Stdin => Entry::stdio(Kind::Stdin),
                FdKindState::Stdout => Entry::stdio(Kind::Stdout),
                FdKindState::Stderr => Entry::stdio(Kind::Stderr),
                FdKindState::PreopenDir { guest } => preopen_entry(guest.clone(), root(guest)?),
                FdKindState::Dir {
                    preopen_guest,
                    path,
                } => {
                    let base = root(preopen_guest)?;
                    let dir = if path.is_empty() {
                        Ok(base)
                    } else {
                        base.open_dir(path)
                    };
                    let dir = dir.map_err(|source| Error::Reopen {
                        guest_path: guest_path(preopen_guest, path),
                        source,
                    })?;
                    let kind = Kind::Dir(DirFd {
                        dir,
                        preopen: preopen_guest.clone(),
                        rel: path.clone(),
                        is_preopen: false,
                        listing: None,
                    });
                    Entry::new(kind, 0, 0, 0)
                }
                FdKindState::File {
                    preopen_guest,
                    path,
                    offset,
                    append,
                    read,
                    write,
                } => {
                    let base = root(preopen_guest)?;
                    let reopen = |source| Error::Reopen {
                        guest_path: guest_path(preopen_guest, path),
                        source,
                    };
                    let mut flags = s.fdflags & !crate::abi::FDFLAGS_APPEND;
                    if *append {
                        flags |= crate::abi::FDFLAGS_APPEND;
                    }
                    let mut opts = file_options(*read, *write, flags);
                    opts.follow(FollowSymlinks::Yes);
                    let mut file = base.open_with(path, &opts).map_err(reopen)?.into_std();
                    file.seek(SeekFrom::Start(*offset)).map_err(reopen)?;
                    let kind = Kind::File(FileFd {
                        file,
                        preopen: preopen_guest.clone(),
                        rel: path.clone(),
                        read: *read,
                        write: *write,
                    });
                    Entry::new(kind, 0, 0, 0)
                }
                FdKindState::Listener { index } => {
                    let sock = listeners
                        .get_mut(*index)
                        .and_then(Option::take)
                        .ok_or(Error::MissingListener(*index, listener_count))?;
                    listener_entry(*index, sock)?
                }
                FdKindState::Stream => Entry::new(
                    Kind::Stream {
                        sock: closed_stream().map_err(|_| Error::OpenConnection(s.fd))?,
                    },
                    0,
                    0,
                    0,
                ),
            };
            entry.fdflags = s.fdflags;
            entry.rights_base = s.rights_base;
            entry.rights_inheriting = s.rights_inheriting;
            if ctx.fds.insert(s.fd, entry).is_some() {
                return Err(Error::InvalidState(format!("fd {} listed twice", s.fd)));
            }
            ctx.free.remove(&s.fd);
        }
        Ok(ctx)
    }
}

/// A connection open at capture time cannot follow the program (TCP connections belong to
/// their hosts): it comes back as a connected socket whose peer has closed, so the program
/// sees its client go away, reads the end of the stream, and carries on with the others.
fn closed_stream() -> std::io::Result<std::net::TcpStream> {
    let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    let s = std::net::TcpStream::connect(l.local_addr()?)?;
    drop(l.accept()?.0);
    s.set_nonblocking(true)?;
    Ok(s)
}
