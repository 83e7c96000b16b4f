//! Path-level imports (`path_*`). Every lookup goes through cap-std relative
//! to the directory descriptor, so `..`, absolute paths and symlinks cannot
//! leave it. Each descriptor opened here records its path below its preopen
//! so that `save()` can describe it and `restore()` can reopen it.

use crate::abi::*;
use crate::ctx::{DirFd, Entry, FileFd, Kind};
use crate::errno::{Errno, WasiResult};
use crate::stat::{write_filestat, Filestat};
use crate::{mem::Mem, WasiCtx};
use cap_fs_ext::{
    DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt, SystemTimeSpec,
};
use cap_std::fs::{Dir, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, UNIX_EPOCH};

/// Appends a guest path to a recorded directory path. "." and empty
/// components are dropped; ".." is kept because only cap-std, resolving it
/// against the real tree on reopen, knows what it means past symlinks.
pub(crate) fn join(base: &str, path: &str) -> String {
    let mut out = String::from(base);
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(comp);
    }
    out
}

fn follow(lookupflags: u32) -> WasiResult<bool> {
    if lookupflags & !LOOKUP_SYMLINK_FOLLOW != 0 {
        return Err(Errno::INVAL);
    }
    Ok(lookupflags & LOOKUP_SYMLINK_FOLLOW != 0)
}

fn time_spec(ts: u64, set: bool, now: bool) -> WasiResult<Option<SystemTimeSpec>> {
    match (set, now) {
        (true, true) => Err(Errno::INVAL),
        (true, false) => {
            let t = UNIX_EPOCH
                .checked_add(Duration::from_nanos(ts))
                .ok_or(Errno::OVERFLOW)?;
            Ok(Some(SystemTimeSpec::Absolute(
                cap_std::time::SystemTime::from_std(t),
            )))
        }
        (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
        (false, false) => Ok(None),
    }
}

/// Rights wasmtime reports for descriptors opened by `path_open`.
fn opened_rights(is_dir: bool, read: bool, write: bool) -> u64 {
    let mut r = RIGHTS_ALL;
    if is_dir {
        r &= !(RIGHTS_FD_SEEK | RIGHTS_FD_FILESTAT_SET_SIZE | RIGHTS_PATH_FILESTAT_SET_SIZE);
    }
    if !read {
        r &= !(RIGHTS_FD_READ | RIGHTS_FD_READDIR);
    }
    if !write {
        r &= !RIGHTS_FD_WRITE;
    }
    r
}

/// Open options for a file; shared by `path_open` and `restore`.
pub(crate) fn file_options(read: bool, write: bool, fdflags: u16) -> OpenOptions {
    let mut opts = OpenOptions::new();
    opts.read(read).write(write);
    if write && fdflags & FDFLAGS_APPEND != 0 {
        opts.append(true);
    }
    opts.sync(fdflags & FDFLAGS_SYNC != 0)
        .dsync(fdflags & FDFLAGS_DSYNC != 0)
        .rsync(fdflags & FDFLAGS_RSYNC != 0)
        .nonblock(fdflags & FDFLAGS_NONBLOCK != 0);
    opts
}

/// What `path_open` was asked for, decoded from the raw arguments.
pub(crate) struct OpenRequest {
    pub lookupflags: u32,
    pub oflags: u16,
    pub rights_base: u64,
    pub fdflags: u16,
}

impl WasiCtx {
    pub(crate) fn path_open(
        &mut self,
        dirfd: u32,
        path: &str,
        req: &OpenRequest,
    ) -> WasiResult<u32> {
        let OpenRequest {
            lookupflags,
            oflags,
            rights_base,
            fdflags,
        } = *req;
        if oflags & !OFLAGS_ALL != 0 || fdflags & !FDFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        let follow = follow(lookupflags)?;
        let want_dir = oflags & OFLAGS_DIRECTORY != 0;
        if want_dir && oflags & (OFLAGS_CREAT | OFLAGS_EXCL | OFLAGS_TRUNC) != 0 {
            return Err(Errno::INVAL);
        }
        let parent = self.dir(dirfd)?;
        let mut read = rights_base & RIGHTS_FD_READ != 0;
        let mut write = rights_base & RIGHTS_FD_WRITE != 0;
        if oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 {
            write = true;
        }
        if !write {
            read = true;
        }
        let mut opts = file_options(read, write, fdflags);
        if oflags & OFLAGS_CREAT != 0 {
            if oflags & OFLAGS_EXCL != 0 {
                opts.create_new(true);
            } else {
                opts.create(true);
            }
        }
        opts.truncate(oflags & OFLAGS_TRUNC != 0);
        opts.follow(if follow {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        });

        let file = parent.dir.open_with(path, &opts)?;
        let is_dir = file.metadata()?.is_dir();
        if want_dir && !is_dir {
            return Err(Errno::NOTDIR);
        }
        if is_dir && write {
            return Err(Errno::ISDIR);
        }
        let preopen = parent.preopen.clone();
        let rel = join(&parent.rel, path);
        let kind = if is_dir {
            let dir = Dir::from_std_file(file.into_std());
            Kind::Dir(DirFd {
                dir,
                preopen,
                rel,
                is_preopen: false,
                listing: None,
            })
        } else {
            let file = file.into_std();
            Kind::File(FileFd {
                file,
                preopen,
                rel,
                read,
                write,
            })
        };
        let rights = opened_rights(is_dir, read, write);
        self.insert(Entry::new(kind, fdflags, rights, rights))
    }

    pub(crate) fn path_create_directory(&self, fd: u32, path: &str) -> WasiResult<()> {
        Ok(self.dir(fd)?.dir.create_dir(path)?)
    }

    pub(crate) fn path_remove_directory(&self, fd: u32, path: &str) -> WasiResult<()> {
        Ok(self.dir(fd)?.dir.remove_dir(path)?)
    }

    pub(crate) fn path_unlink_file(&self, fd: u32, path: &str) -> WasiResult<()> {
        Ok(self.dir(fd)?.dir.remove_file(path)?)
    }

    pub(crate) fn path_symlink(&self, target: &str, fd: u32, path: &str) -> WasiResult<()> {
        Ok(self.dir(fd)?.dir.symlink(target, path)?)
    }

    pub(crate) fn path_filestat_get(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        flags: u32,
        path: &str,
        ret: u32,
    ) -> WasiResult<()> {
        let follow = follow(flags)?;
        let dir = &self.dir(fd)?.dir;
        let meta = if follow {
            dir.metadata(path)?
        } else {
            dir.symlink_metadata(path)?
        };
        write_filestat(mem, ret, &Filestat::from(&meta))
    }

    pub(crate) fn path_filestat_set_times(
        &self,
        fd: u32,
        flags: u32,
        path: &str,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> WasiResult<()> {
        if fst & !FSTFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        let a = time_spec(atim, fst & FSTFLAGS_ATIM != 0, fst & FSTFLAGS_ATIM_NOW != 0)?;
        let m = time_spec(mtim, fst & FSTFLAGS_MTIM != 0, fst & FSTFLAGS_MTIM_NOW != 0)?;
        let dir = &self.dir(fd)?.dir;
        if follow(flags)? {
            Ok(dir.set_times(path, a, m)?)
        } else {
            Ok(dir.set_symlink_times(path, a, m)?)
        }
    }

    pub(crate) fn path_link(
        &self,
        old_fd: u32,
        old_flags: u32,
        old: &str,
        new_fd: u32,
        new: &str,
    ) -> WasiResult<()> {
        // linkat(AT_SYMLINK_FOLLOW) has no sandboxed equivalent; wasmtime
        // refuses it the same way.
        if follow(old_flags)? {
            return Err(Errno::INVAL);
        }
        let src = &self.dir(old_fd)?.dir;
        let dst = &self.dir(new_fd)?.dir;
        Ok(src.hard_link(old, dst, new)?)
    }

    pub(crate) fn path_readlink(
        &self,
        mem: &mut Mem<'_>,
        fd: u32,
        path: &str,
        buf: u32,
        len: u32,
    ) -> WasiResult<u32> {
        let target = self.dir(fd)?.dir.read_link_contents(path)?;
        let bytes = target.as_os_str().as_bytes();
        let n = bytes.len().min(len as usize);
        let out = bytes.get(..n).unwrap_or_default();
        mem.write(buf, out)?;
        u32::try_from(n).map_err(|_| Errno::OVERFLOW)
    }

    pub(crate) fn path_rename(
        &mut self,
        old_fd: u32,
        old: &str,
        new_fd: u32,
        new: &str,
    ) -> WasiResult<()> {
        let src = self.dir(old_fd)?;
        let dst = self.dir(new_fd)?;
        src.dir.rename(old, &dst.dir, new)?;
        let from = (src.preopen.clone(), join(&src.rel, old));
        let to = (dst.preopen.clone(), join(&dst.rel, new));
        self.retarget(&from, &to);
        Ok(())
    }

    /// Keeps recorded paths of open descriptors valid after a rename, so a
    /// file renamed while open is reopened under its new name on restore.
    fn retarget(&mut self, from: &(String, String), to: &(String, String)) {
        if from.1.is_empty() {
            return;
        }
        for entry in self.fds.values_mut() {
            let (preopen, rel) = match &mut entry.kind {
                Kind::File(f) => (&mut f.preopen, &mut f.rel),
                Kind::Dir(d) if !d.is_preopen => (&mut d.preopen, &mut d.rel),
                _ => continue,
            };
            if *preopen != from.0 {
                continue;
            }
            let rest = match rel.strip_prefix(from.1.as_str()) {
                Some("") => String::new(),
                Some(r) if r.starts_with('/') => r.to_string(),
                _ => continue,
            };
            *preopen = to.0.clone();
            *rel = format!("{}{}", to.1, rest);
        }
    }
}
