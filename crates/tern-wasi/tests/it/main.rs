//! Integration tests: WAT guests driving every import through wasmtime.

mod blocking;
mod checkpoint;
mod fs;
mod guest;
mod process;

use std::path::Path;
use tern_wasi::{Preopen, WasiConfig, WasiCtx};

pub const EAGAIN: i32 = 6;
pub const EBADF: i32 = 8;
pub const EFAULT: i32 = 21;
pub const EILSEQ: i32 = 25;
pub const EINVAL: i32 = 28;
pub const ENAMETOOLONG: i32 = 37;
pub const ENOSYS: i32 = 52;

pub const CREAT: u32 = 1;
pub const DIRECTORY: u32 = 2;
pub const TRUNC: u32 = 8;

pub fn preopens(dir: &Path) -> Vec<Preopen> {
    vec![Preopen {
        host: dir.to_path_buf(),
        guest: "/work".into(),
    }]
}

pub fn ctx_in(dir: &Path) -> WasiCtx {
    WasiCtx::new(WasiConfig {
        preopens: preopens(dir),
        ..WasiConfig::default()
    })
    .unwrap()
}
