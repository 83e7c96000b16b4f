//! Registration of the descriptor (`fd_*`, `sock_send`, `sock_shutdown`) and
//! path (`path_*`) imports: argument decoding only, via the macros in
//! register.rs. Result pointers are checked before any side effect so that a
//! bad pointer can never leak a descriptor or lose data.

use crate::embedder::WasiView;
use crate::errno::WasiResult;
use crate::mem::Mem;
use crate::path::OpenRequest;
use crate::register::{code, memory, no_mem, size, small, with_mem};
use crate::{WasiCtx, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

pub(crate) fn add_fd<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    no_mem!(
        linker,
        "fd_advise",
        |ctx, fd: i32, offset: i64, len: i64, advice: i32| {
            ctx.fd_advise(fd as u32, offset as u64, len as u64, small(advice)?)
        }
    );
    no_mem!(
        linker,
        "fd_allocate",
        |ctx, fd: i32, offset: i64, len: i64| {
            ctx.fd_allocate(fd as u32, offset as u64, len as u64)
        }
    );
    no_mem!(linker, "fd_close", |ctx, fd: i32| { ctx.close(fd as u32) });
    no_mem!(linker, "fd_datasync", |ctx, fd: i32| {
        ctx.fd_sync(fd as u32, true)
    });
    no_mem!(linker, "fd_sync", |ctx, fd: i32| {
        ctx.fd_sync(fd as u32, false)
    });
    with_mem!(linker, "fd_fdstat_get", |ctx, mem, fd: i32, ret: i32| {
        ctx.fd_fdstat_get(mem, fd as u32, ret as u32)
    });
    no_mem!(linker, "fd_fdstat_set_flags", |ctx, fd: i32, flags: i32| {
        ctx.fd_fdstat_set_flags(fd as u32, small(flags)?)
    });
    no_mem!(
        linker,
        "fd_fdstat_set_rights",
        |ctx, fd: i32, base: i64, inheriting: i64| {
            ctx.fd_fdstat_set_rights(fd as u32, base as u64, inheriting as u64)
        }
    );
    with_mem!(linker, "fd_filestat_get", |ctx, mem, fd: i32, ret: i32| {
        ctx.fd_filestat_get(mem, fd as u32, ret as u32)
    });
    no_mem!(linker, "fd_filestat_set_size", |ctx, fd: i32, size: i64| {
        ctx.fd_filestat_set_size(fd as u32, size as u64)
    });
    no_mem!(
        linker,
        "fd_filestat_set_times",
        |ctx, fd: i32, atim: i64, mtim: i64, fst: i32| {
            ctx.fd_filestat_set_times(fd as u32, atim as u64, mtim as u64, small(fst)?)
        }
    );
    with_mem!(
        linker,
        "fd_pread",
        |ctx, mem, fd: i32, iovs: i32, iovs_len: i32, offset: i64, ret: i32| {
            let iovs = mem.iovecs(iovs as u32, iovs_len as u32)?;
            mem.check(ret as u32, 4)?;
            let n = ctx.fd_pread(mem, fd as u32, &iovs, offset as u64)?;
            mem.write_u32(ret as u32, size(n)?)
        }
    );
    with_mem!(
        linker,
        "fd_pwrite",
        |ctx, mem, fd: i32, iovs: i32, iovs_len: i32, offset: i64, ret: i32| {
            let iovs = mem.iovecs(iovs as u32, iovs_len as u32)?;
            mem.check(ret as u32, 4)?;
            let n = ctx.fd_pwrite(mem, fd as u32, &iovs, offset as u64)?;
            mem.write_u32(ret as u32, size(n)?)
        }
    );
    with_mem!(
        linker,
        "fd_write",
        |ctx, mem, fd: i32, iovs: i32, iovs_len: i32, ret: i32| {
            let iovs = mem.iovecs(iovs as u32, iovs_len as u32)?;
            mem.check(ret as u32, 4)?;
            let n = ctx.fd_write(mem, fd as u32, &iovs)?;
            mem.write_u32(ret as u32, size(n)?)
        }
    );
    with_mem!(linker, "fd_prestat_get", |ctx, mem, fd: i32, ret: i32| {
        ctx.fd_prestat_get(mem, fd as u32, ret as u32)
    });
    with_mem!(
        linker,
        "fd_prestat_dir_name",
        |ctx, mem, fd: i32, buf: i32, len: i32| {
            ctx.fd_prestat_dir_name(mem, fd as u32, buf as u32, len as u32)
        }
    );
    with_mem!(
        linker,
        "fd_readdir",
        |ctx, mem, fd: i32, buf: i32, len: i32, cookie: i64, ret: i32| {
            mem.check(ret as u32, 4)?;
            let n = ctx.fd_readdir(mem, fd as u32, buf as u32, len as u32, cookie as u64)?;
            mem.write_u32(ret as u32, n)
        }
    );
    no_mem!(linker, "fd_renumber", |ctx, from: i32, to: i32| {
        ctx.renumber(from as u32, to as u32)
    });
    with_mem!(
        linker,
        "fd_seek",
        |ctx, mem, fd: i32, offset: i64, whence: i32, ret: i32| {
            ctx.fd_seek(mem, fd as u32, offset, small(whence)?, ret as u32)
        }
    );
    with_mem!(linker, "fd_tell", |ctx, mem, fd: i32, ret: i32| {
        ctx.fd_tell(mem, fd as u32, ret as u32)
    });
    with_mem!(
        linker,
        "sock_send",
        |ctx, mem, fd: i32, iovs: i32, iovs_len: i32, _flags: i32, ret: i32| {
            let iovs = mem.iovecs(iovs as u32, iovs_len as u32)?;
            mem.check(ret as u32, 4)?;
            let n = ctx.sock_send(mem, fd as u32, &iovs)?;
            mem.write_u32(ret as u32, size(n)?)
        }
    );
    no_mem!(linker, "sock_shutdown", |ctx, fd: i32, how: i32| {
        ctx.sock_shutdown(fd as u32, small(how)?)
    });
    Ok(())
}

pub(crate) fn add_path<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    with_mem!(
        linker,
        "path_create_directory",
        |ctx, mem, fd: i32, p: i32, len: i32| {
            ctx.path_create_directory(fd as u32, mem.path(p as u32, len as u32)?)
        }
    );
    with_mem!(
        linker,
        "path_remove_directory",
        |ctx, mem, fd: i32, p: i32, len: i32| {
            ctx.path_remove_directory(fd as u32, mem.path(p as u32, len as u32)?)
        }
    );
    with_mem!(
        linker,
        "path_unlink_file",
        |ctx, mem, fd: i32, p: i32, len: i32| {
            ctx.path_unlink_file(fd as u32, mem.path(p as u32, len as u32)?)
        }
    );
    with_mem!(
        linker,
        "path_symlink",
        |ctx, mem, old: i32, old_len: i32, fd: i32, new: i32, new_len: i32| {
            let old = mem.path(old as u32, old_len as u32)?;
            ctx.path_symlink(old, fd as u32, mem.path(new as u32, new_len as u32)?)
        }
    );
    with_mem!(
        linker,
        "path_filestat_get",
        |ctx, mem, fd: i32, flags: i32, p: i32, len: i32, ret: i32| {
            let path = mem.path(p as u32, len as u32)?.to_owned();
            ctx.path_filestat_get(mem, fd as u32, flags as u32, &path, ret as u32)
        }
    );
    with_mem!(
        linker,
        "path_filestat_set_times",
        |ctx, mem, fd: i32, flags: i32, p: i32, len: i32, atim: i64, mtim: i64, fst: i32| {
            let path = mem.path(p as u32, len as u32)?;
            ctx.path_filestat_set_times(
                fd as u32,
                flags as u32,
                path,
                atim as u64,
                mtim as u64,
                small(fst)?,
            )
        }
    );
    with_mem!(
        linker,
        "path_link",
        |ctx,
         mem,
         old_fd: i32,
         old_flags: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         new: i32,
         new_len: i32| {
            let old = mem.path(old as u32, old_len as u32)?;
            let new = mem.path(new as u32, new_len as u32)?;
            ctx.path_link(old_fd as u32, old_flags as u32, old, new_fd as u32, new)
        }
    );
    with_mem!(
        linker,
        "path_rename",
        |ctx, mem, old_fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32| {
            let old = mem.path(old as u32, old_len as u32)?;
            let new = mem.path(new as u32, new_len as u32)?;
            ctx.path_rename(old_fd as u32, old, new_fd as u32, new)
        }
    );
    with_mem!(
        linker,
        "path_readlink",
        |ctx, mem, fd: i32, p: i32, len: i32, buf: i32, buf_len: i32, ret: i32| {
            let path = mem.path(p as u32, len as u32)?.to_owned();
            mem.check(buf as u32, buf_len as u32)?;
            mem.check(ret as u32, 4)?;
            let n = ctx.path_readlink(mem, fd as u32, &path, buf as u32, buf_len as u32)?;
            mem.write_u32(ret as u32, n)
        }
    );
    with_mem!(
        linker,
        "path_open",
        |ctx,
         mem,
         fd: i32,
         dirflags: i32,
         p: i32,
         len: i32,
         oflags: i32,
         base: i64,
         _inheriting: i64,
         fdflags: i32,
         ret: i32| {
            let req = OpenRequest {
                lookupflags: dirflags as u32,
                oflags: small(oflags)?,
                rights_base: base as u64,
                fdflags: small(fdflags)?,
            };
            // Checked first so that a bad result pointer cannot leak an open fd.
            mem.check(ret as u32, 4)?;
            let opened = ctx.path_open(fd as u32, mem.path(p as u32, len as u32)?, &req)?;
            mem.write_u32(ret as u32, opened)
        }
    );
    Ok(())
}
