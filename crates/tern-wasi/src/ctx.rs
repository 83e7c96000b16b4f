//! The WASI context: configuration, the descriptor table and what each
//! descriptor needs to be reopened after a checkpoint.

use crate::abi::*;
use crate::clock::Clocks;
use crate::errno::{Errno, WasiResult};
use crate::Error;
use cap_std::fs::Dir;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

/// A host directory made visible to the guest under `guest` (e.g. "/tmp" or ".").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
}

/// Everything a fresh run starts from.
#[derive(Debug, Default)]
pub struct WasiConfig {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub listeners: Vec<TcpListener>,
}

/// A directory descriptor. `rel` is its path below the preopen named
/// `preopen` ("" for the preopen itself), recorded so it can be reopened.
#[derive(Debug)]
pub(crate) struct DirFd {
    pub dir: Dir,
    pub preopen: String,
    pub rel: String,
    pub is_preopen: bool,
    /// Listing taken at cookie 0 and reused while the guest pages through it,
    /// so one pass over a directory sees one consistent, sorted snapshot.
    pub listing: Option<Vec<Listed>>,
}

/// One directory entry as reported to the guest.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub name: Vec<u8>,
    pub ino: u64,
    pub filetype: u8,
}

#[derive(Debug)]
pub(crate) struct FileFd {
    pub file: std::fs::File,
    pub preopen: String,
    pub rel: String,
    pub read: bool,
    pub write: bool,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Stdin,
    Stdout,
    Stderr,
    Dir(DirFd),
    File(FileFd),
    Listener { index: usize, sock: TcpListener },
    Stream { sock: TcpStream },
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub fdflags: u16,
    pub rights_base: u64,
    pub rights_inheriting: u64,
}

impl Entry {
    pub fn new(kind: Kind, fdflags: u16, rights_base: u64, rights_inheriting: u64) -> Self {
        Entry {
            kind,
            fdflags,
            rights_base,
            rights_inheriting,
        }
    }

    pub fn stdio(kind: Kind) -> Self {
        let rights = match kind {
            Kind::Stdin => RIGHTS_FD_READ,
            _ => RIGHTS_FD_WRITE,
        };
        Entry::new(kind, 0, rights, rights)
    }

    pub fn nonblocking(&self) -> bool {
        self.fdflags & FDFLAGS_NONBLOCK != 0
    }
}

/// A `poll_oneoff` given up for a capture: the guest calls it again, with the same
/// subscriptions, once it runs again (here, or resumed elsewhere). Its relative timers keep
/// the deadlines they had, on the guest's monotonic clock, so a sleep keeps its remaining time
/// instead of starting over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterruptedWait {
    /// The subscriptions as the guest wrote them, byte for byte.
    pub subscriptions: Vec<u8>,
    /// For each subscription, the deadline of a relative timer (guest monotonic ns).
    pub deadlines: Vec<Option<u64>>,
}

/// The complete host-side state of one guest's WASI world.
#[derive(Debug)]
pub struct WasiCtx {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) fds: BTreeMap<u32, Entry>,
    /// Closed descriptor numbers, reused highest-first as wasmtime does, so a
    /// guest sees the same numbers it would see under `wasmtime run`.
    pub(crate) free: BTreeSet<u32>,
    pub(crate) clocks: Clocks,
    /// Whether host fds 0/1/2 are terminals; re-probed in every process.
    pub(crate) tty: [bool; 3],
    pub(crate) exit_code: Option<i32>,
    /// The directories granted, so that a snapshot can say which host paths it had.
    pub(crate) preopens: Vec<Preopen>,
    /// The wait a capture interrupted, until the guest calls it again.
    pub(crate) interrupted_wait: Option<InterruptedWait>,
}

pub(crate) fn open_preopen(p: &Preopen) -> Result<Dir, Error> {
    Dir::open_ambient_dir(&p.host, cap_std::ambient_authority()).map_err(|source| {
        Error::OpenPreopen {
            host: p.host.clone(),
            guest: p.guest.clone(),
            source,
        }
    })
}

pub(crate) fn preopen_entry(guest: String, dir: Dir) -> Entry {
    let kind = Kind::Dir(DirFd {
        dir,
        preopen: guest,
        rel: String::new(),
        is_preopen: true,
        listing: None,
    });
    Entry::new(kind, 0, RIGHTS_PREOPEN_BASE, RIGHTS_PREOPEN_INHERITING)
}

pub(crate) fn listener_entry(index: usize, sock: TcpListener) -> Result<Entry, Error> {
    // The host socket is always non-blocking; guest-visible blocking is
    // emulated in short slices so a checkpoint can interrupt it.
    sock.set_nonblocking(true)
        .map_err(|source| Error::Listener { index, source })?;
    Ok(Entry::new(
        Kind::Listener { index, sock },
        0,
        RIGHTS_SOCKET,
        RIGHTS_SOCKET,
    ))
}

fn probe_tty() -> [bool; 3] {
    [
        rustix::termios::isatty(rustix::stdio::stdin()),
        rustix::termios::isatty(rustix::stdio::stdout()),
        rustix::termios::isatty(rustix::stdio::stderr()),
    ]
}

impl WasiCtx {
    /// fds 0, 1, 2 are the process's stdio, then the preopened directories in
    /// order (fd 3, 4, ...), then the listening sockets.
    pub fn new(config: WasiConfig) -> Result<Self, Error> {
        let mut ctx = WasiCtx::empty(config.args, config.env, Clocks::new());
        ctx.push(Entry::stdio(Kind::Stdin))?;
        ctx.push(Entry::stdio(Kind::Stdout))?;
        ctx.push(Entry::stdio(Kind::Stderr))?;
        for p in &config.preopens {
            let dir = open_preopen(p)?;
            ctx.push(preopen_entry(p.guest.clone(), dir))?;
        }
        ctx.preopens = config.preopens.clone();
        for (index, sock) in config.listeners.into_iter().enumerate() {
            ctx.push(listener_entry(index, sock)?)?;
        }
        Ok(ctx)
    }

    pub(crate) fn empty(args: Vec<String>, env: Vec<(String, String)>, clocks: Clocks) -> Self {
        WasiCtx {
            args,
            env,
            fds: BTreeMap::new(),
            free: BTreeSet::new(),
            clocks,
            tty: probe_tty(),
            exit_code: None,
            preopens: Vec::new(),
            interrupted_wait: None,
        }
    }

    /// The code passed to `proc_exit`, once the guest has called it.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    fn push(&mut self, entry: Entry) -> Result<u32, Error> {
        self.insert(entry)
            .map_err(|_| Error::InvalidState("descriptor table full".into()))
    }

    /// Installs `entry` under the descriptor number wasmtime would pick.
    pub(crate) fn insert(&mut self, entry: Entry) -> WasiResult<u32> {
        let fd = match self.free.pop_last() {
            Some(fd) => fd,
            None => match self.fds.last_key_value() {
                None => 0,
                Some((&last, _)) => match last.checked_add(1) {
                    Some(fd) => fd,
                    None => (0..u32::MAX)
                        .rev()
                        .find(|fd| !self.fds.contains_key(fd))
                        .ok_or(Errno::MFILE)?,
                },
            },
        };
        self.fds.insert(fd, entry);
        Ok(fd)
    }

    pub(crate) fn entry(&self, fd: u32) -> WasiResult<&Entry> {
        self.fds.get(&fd).ok_or(Errno::BADF)
    }

    pub(crate) fn entry_mut(&mut self, fd: u32) -> WasiResult<&mut Entry> {
        self.fds.get_mut(&fd).ok_or(Errno::BADF)
    }

    pub(crate) fn file(&self, fd: u32) -> WasiResult<&FileFd> {
        match &self.entry(fd)?.kind {
            Kind::File(f) => Ok(f),
            _ => Err(Errno::BADF),
        }
    }

    /// A directory to resolve a path against: a file there is ENOTDIR, as
    /// `openat` would say; anything else is not a directory handle at all.
    pub(crate) fn dir(&self, fd: u32) -> WasiResult<&DirFd> {
        match &self.entry(fd)?.kind {
            Kind::Dir(d) => Ok(d),
            Kind::File(_) => Err(Errno::NOTDIR),
            _ => Err(Errno::BADF),
        }
    }

    pub(crate) fn close(&mut self, fd: u32) -> WasiResult<()> {
        self.fds.remove(&fd).ok_or(Errno::BADF)?;
        self.free.insert(fd);
        Ok(())
    }

    pub(crate) fn renumber(&mut self, from: u32, to: u32) -> WasiResult<()> {
        if !self.fds.contains_key(&from) || !self.fds.contains_key(&to) {
            return Err(Errno::BADF);
        }
        if from == to {
            return Ok(());
        }
        let entry = self.fds.remove(&from).ok_or(Errno::BADF)?;
        self.fds.insert(to, entry);
        self.free.insert(from);
        self.free.remove(&to);
        Ok(())
    }
}
