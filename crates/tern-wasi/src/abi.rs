//! Numeric constants and struct layouts of `wasi_snapshot_preview1`, taken
//! from the witx definitions (typenames.witx). Kept in one place so that the
//! layout offsets used by the host functions can be checked against the spec.

pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
// Never produced: TCP is the only socket kind a guest can hold here.
#[allow(dead_code)]
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

pub const FDFLAGS_APPEND: u16 = 1 << 0;
pub const FDFLAGS_DSYNC: u16 = 1 << 1;
pub const FDFLAGS_NONBLOCK: u16 = 1 << 2;
pub const FDFLAGS_RSYNC: u16 = 1 << 3;
pub const FDFLAGS_SYNC: u16 = 1 << 4;
pub const FDFLAGS_ALL: u16 = 0x1f;
pub const FDFLAGS_SYNCS: u16 = FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC;

pub const OFLAGS_CREAT: u16 = 1 << 0;
pub const OFLAGS_DIRECTORY: u16 = 1 << 1;
pub const OFLAGS_EXCL: u16 = 1 << 2;
pub const OFLAGS_TRUNC: u16 = 1 << 3;
pub const OFLAGS_ALL: u16 = 0xf;

pub const LOOKUP_SYMLINK_FOLLOW: u32 = 1;

pub const FSTFLAGS_ATIM: u16 = 1 << 0;
pub const FSTFLAGS_ATIM_NOW: u16 = 1 << 1;
pub const FSTFLAGS_MTIM: u16 = 1 << 2;
pub const FSTFLAGS_MTIM_NOW: u16 = 1 << 3;
pub const FSTFLAGS_ALL: u16 = 0xf;

pub const RIGHTS_FD_DATASYNC: u64 = 1 << 0;
pub const RIGHTS_FD_READ: u64 = 1 << 1;
pub const RIGHTS_FD_SEEK: u64 = 1 << 2;
pub const RIGHTS_FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
pub const RIGHTS_FD_SYNC: u64 = 1 << 4;
pub const RIGHTS_FD_TELL: u64 = 1 << 5;
pub const RIGHTS_FD_WRITE: u64 = 1 << 6;
pub const RIGHTS_FD_ADVISE: u64 = 1 << 7;
pub const RIGHTS_FD_ALLOCATE: u64 = 1 << 8;
pub const RIGHTS_PATH_CREATE_DIRECTORY: u64 = 1 << 9;
pub const RIGHTS_PATH_CREATE_FILE: u64 = 1 << 10;
pub const RIGHTS_PATH_LINK_SOURCE: u64 = 1 << 11;
pub const RIGHTS_PATH_LINK_TARGET: u64 = 1 << 12;
pub const RIGHTS_PATH_OPEN: u64 = 1 << 13;
pub const RIGHTS_FD_READDIR: u64 = 1 << 14;
pub const RIGHTS_PATH_READLINK: u64 = 1 << 15;
pub const RIGHTS_PATH_RENAME_SOURCE: u64 = 1 << 16;
pub const RIGHTS_PATH_RENAME_TARGET: u64 = 1 << 17;
pub const RIGHTS_PATH_FILESTAT_GET: u64 = 1 << 18;
pub const RIGHTS_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
pub const RIGHTS_PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
pub const RIGHTS_FD_FILESTAT_GET: u64 = 1 << 21;
pub const RIGHTS_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub const RIGHTS_FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
pub const RIGHTS_PATH_SYMLINK: u64 = 1 << 24;
pub const RIGHTS_PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
pub const RIGHTS_PATH_UNLINK_FILE: u64 = 1 << 26;
pub const RIGHTS_POLL_FD_READWRITE: u64 = 1 << 27;
pub const RIGHTS_SOCK_SHUTDOWN: u64 = 1 << 28;
pub const RIGHTS_SOCK_ACCEPT: u64 = 1 << 29;
pub const RIGHTS_ALL: u64 = (1 << 30) - 1;

/// What wasmtime hands out for a preopened directory; many libcs expect
/// exactly these bits, so they are copied rather than derived.
pub const RIGHTS_PREOPEN_BASE: u64 = RIGHTS_PATH_CREATE_DIRECTORY
    | RIGHTS_PATH_CREATE_FILE
    | RIGHTS_PATH_LINK_SOURCE
    | RIGHTS_PATH_LINK_TARGET
    | RIGHTS_PATH_OPEN
    | RIGHTS_FD_READDIR
    | RIGHTS_PATH_READLINK
    | RIGHTS_PATH_RENAME_SOURCE
    | RIGHTS_PATH_RENAME_TARGET
    | RIGHTS_PATH_SYMLINK
    | RIGHTS_PATH_REMOVE_DIRECTORY
    | RIGHTS_PATH_UNLINK_FILE
    | RIGHTS_PATH_FILESTAT_GET
    | RIGHTS_PATH_FILESTAT_SET_TIMES
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_TIMES;

pub const RIGHTS_PREOPEN_INHERITING: u64 = RIGHTS_PREOPEN_BASE
    | RIGHTS_FD_DATASYNC
    | RIGHTS_FD_READ
    | RIGHTS_FD_SEEK
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_SYNC
    | RIGHTS_FD_TELL
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_ADVISE
    | RIGHTS_FD_ALLOCATE
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_SIZE
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_POLL_FD_READWRITE;

pub const RIGHTS_SOCKET: u64 = RIGHTS_FD_READ
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_POLL_FD_READWRITE
    | RIGHTS_SOCK_SHUTDOWN
    | RIGHTS_SOCK_ACCEPT;

pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_PROCESS_CPUTIME: u32 = 2;
pub const CLOCK_THREAD_CPUTIME: u32 = 3;

pub const WHENCE_SET: u8 = 0;
pub const WHENCE_CUR: u8 = 1;
pub const WHENCE_END: u8 = 2;

pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;
pub const EVENTRWFLAGS_HANGUP: u16 = 1;
pub const SUBCLOCK_ABSTIME: u16 = 1;

pub const RIFLAGS_PEEK: u16 = 1;
pub const RIFLAGS_WAITALL: u16 = 2;
pub const SDFLAGS_RD: u8 = 1;
pub const SDFLAGS_WR: u8 = 2;

pub const ADVICE_NOREUSE: u8 = 5;

/// `iovec`/`ciovec`: { buf: u32, buf_len: u32 }.
pub const IOVEC_SIZE: u32 = 8;
/// `fdstat`: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16.
pub const FDSTAT_SIZE: u32 = 24;
/// `filestat`: dev @0, ino @8, filetype u8 @16, nlink @24, size @32, atim @40, mtim @48, ctim @56.
pub const FILESTAT_SIZE: u32 = 64;
/// `prestat`: tag u8 @0, pr_name_len u32 @4.
pub const PRESTAT_SIZE: u32 = 8;
/// `dirent`: d_next u64 @0, d_ino u64 @8, d_namlen u32 @16, d_type u8 @20.
pub const DIRENT_SIZE: u32 = 24;
/// `subscription`: userdata u64 @0, tag u8 @8, union @16 (clock: id u32 @16,
/// timeout u64 @24, precision u64 @32, flags u16 @40; fd: u32 @16).
pub const SUBSCRIPTION_SIZE: u32 = 48;
/// `event`: userdata u64 @0, error u16 @8, type u8 @10, nbytes u64 @16, flags u16 @24.
pub const EVENT_SIZE: u32 = 32;
