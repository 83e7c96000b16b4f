//! Test harness: a WAT guest that imports every WASI function and exports a
//! wasm wrapper `w_<name>` for each, so tests drive the real linker path
//! (host function called from wasm, memory found through the caller).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use tern_wasi::{add_to_linker, BlockingHooks, WasiCtx, WasiView, IMPORT_MODULE};
use wasmtime::{Caller, Engine, Instance, Linker, Memory, Module, Store, Val};

pub const SIGNATURES: &[(&str, &str, bool)] = &[
    ("args_get", "i32 i32", true),
    ("args_sizes_get", "i32 i32", true),
    ("environ_get", "i32 i32", true),
    ("environ_sizes_get", "i32 i32", true),
    ("clock_res_get", "i32 i32", true),
    ("clock_time_get", "i32 i64 i32", true),
    ("fd_advise", "i32 i64 i64 i32", true),
    ("fd_allocate", "i32 i64 i64", true),
    ("fd_close", "i32", true),
    ("fd_datasync", "i32", true),
    ("fd_fdstat_get", "i32 i32", true),
    ("fd_fdstat_set_flags", "i32 i32", true),
    ("fd_fdstat_set_rights", "i32 i64 i64", true),
    ("fd_filestat_get", "i32 i32", true),
    ("fd_filestat_set_size", "i32 i64", true),
    ("fd_filestat_set_times", "i32 i64 i64 i32", true),
    ("fd_pread", "i32 i32 i32 i64 i32", true),
    ("fd_prestat_get", "i32 i32", true),
    ("fd_prestat_dir_name", "i32 i32 i32", true),
    ("fd_pwrite", "i32 i32 i32 i64 i32", true),
    ("fd_read", "i32 i32 i32 i32", true),
    ("fd_readdir", "i32 i32 i32 i64 i32", true),
    ("fd_renumber", "i32 i32", true),
    ("fd_seek", "i32 i64 i32 i32", true),
    ("fd_sync", "i32", true),
    ("fd_tell", "i32 i32", true),
    ("fd_write", "i32 i32 i32 i32", true),
    ("path_create_directory", "i32 i32 i32", true),
    ("path_filestat_get", "i32 i32 i32 i32 i32", true),
    (
        "path_filestat_set_times",
        "i32 i32 i32 i32 i64 i64 i32",
        true,
    ),
    ("path_link", "i32 i32 i32 i32 i32 i32 i32", true),
    ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32", true),
    ("path_readlink", "i32 i32 i32 i32 i32 i32", true),
    ("path_remove_directory", "i32 i32 i32", true),
    ("path_rename", "i32 i32 i32 i32 i32 i32", true),
    ("path_symlink", "i32 i32 i32 i32 i32", true),
    ("path_unlink_file", "i32 i32 i32", true),
    ("poll_oneoff", "i32 i32 i32 i32", true),
    ("proc_exit", "i32", false),
    ("proc_raise", "i32", true),
    ("sched_yield", "", true),
    ("random_get", "i32 i32", true),
    ("sock_accept", "i32 i32 i32", true),
    ("sock_recv", "i32 i32 i32 i32 i32 i32", true),
    ("sock_send", "i32 i32 i32 i32 i32", true),
    ("sock_shutdown", "i32 i32", true),
];

fn forwarding_wat() -> String {
    let mut imports = String::new();
    let mut exports = String::new();
    for (name, params, returns) in SIGNATURES {
        let result = if *returns { "(result i32)" } else { "" };
        imports.push_str(&format!(
            "(import \"{IMPORT_MODULE}\" \"{name}\" (func ${name} (param {params}) {result}))\n"
        ));
        let gets: String = (0..params.split_whitespace().count())
            .map(|i| format!("local.get {i} "))
            .collect();
        exports.push_str(&format!(
            "(func (export \"w_{name}\") (param {params}) {result} {gets} call ${name})\n"
        ));
    }
    format!("(module\n{imports}(memory (export \"memory\") 2)\n{exports})")
}

pub struct Host {
    pub ctx: WasiCtx,
    pub capture: Arc<AtomicBool>,
    pub interrupts: Arc<AtomicU32>,
}

impl WasiView for Host {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.ctx
    }
    fn capture_requested(&self) -> bool {
        self.capture.load(Ordering::SeqCst)
    }
}

fn engine_and_module() -> &'static (Engine, Module) {
    static CELL: OnceLock<(Engine, Module)> = OnceLock::new();
    CELL.get_or_init(|| {
        let engine = Engine::default();
        let wasm = wat::parse_str(forwarding_wat()).expect("forwarding guest parses");
        let module = Module::new(&engine, wasm).expect("forwarding guest compiles");
        (engine, module)
    })
}

pub fn linker(engine: &Engine) -> Linker<Host> {
    let mut linker = Linker::new(engine);
    fn on_enter(_: &mut Caller<'_, Host>) -> wasmtime::Result<()> {
        Ok(())
    }
    fn on_interrupt(c: &mut Caller<'_, Host>) -> wasmtime::Result<()> {
        c.data().interrupts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    let hooks = BlockingHooks {
        on_enter,
        on_interrupt,
    };
    add_to_linker(&mut linker, hooks).expect("all imports register");
    linker
}

pub struct Guest {
    pub store: Store<Host>,
    pub instance: Instance,
    pub memory: Memory,
}

/// Scratch addresses in guest memory used by the helpers.
pub const RET: u32 = 0x100;
pub const RET2: u32 = 0x108;
pub const IOV: u32 = 0x200;
pub const STR: u32 = 0x400;
pub const STR2: u32 = 0x800;
pub const BUF: u32 = 0x1000;

pub fn i(v: u32) -> Val {
    Val::I32(v as i32)
}

pub fn l(v: u64) -> Val {
    Val::I64(v as i64)
}

impl Guest {
    pub fn new(ctx: WasiCtx) -> Guest {
        let (engine, module) = engine_and_module();
        let host = Host {
            ctx,
            capture: Arc::new(AtomicBool::new(false)),
            interrupts: Arc::new(AtomicU32::new(0)),
        };
        let mut store = Store::new(engine, host);
        let instance = linker(engine)
            .instantiate(&mut store, module)
            .expect("instantiates");
        let memory = instance
            .get_memory(&mut store, "memory")
            .expect("memory export");
        Guest {
            store,
            instance,
            memory,
        }
    }

    pub fn try_call(&mut self, name: &str, args: &[Val]) -> wasmtime::Result<i32> {
        let f = self
            .instance
            .get_func(&mut self.store, &format!("w_{name}"))
            .expect("wrapper exists");
        let mut out = [Val::I32(0)];
        let n = f.ty(&self.store).results().len();
        f.call(&mut self.store, args, &mut out[..n])?;
        Ok(out[0].unwrap_i32())
    }

    /// Calls a WASI function and returns its errno.
    pub fn call(&mut self, name: &str, args: &[Val]) -> i32 {
        self.try_call(name, args).expect("no trap")
    }

    pub fn poke(&mut self, addr: u32, bytes: &[u8]) {
        self.memory
            .write(&mut self.store, addr as usize, bytes)
            .expect("in bounds");
    }

    pub fn peek(&self, addr: u32, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.memory
            .read(&self.store, addr as usize, &mut out)
            .expect("in bounds");
        out
    }

    pub fn u32_at(&self, addr: u32) -> u32 {
        u32::from_le_bytes(self.peek(addr, 4).try_into().unwrap())
    }

    pub fn u64_at(&self, addr: u32) -> u64 {
        u64::from_le_bytes(self.peek(addr, 8).try_into().unwrap())
    }

    /// Opens `path` under `dirfd` (read+write+seek for files); Ok(fd) or Err(errno).
    pub fn open(&mut self, dirfd: u32, path: &str, oflags: u32, fdflags: u32) -> Result<u32, i32> {
        const RW: u64 = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6);
        // Like wasi-libc's opendir: directories are opened read-only.
        const DIR: u64 = (1 << 1) | (1 << 14);
        let rights = if oflags & 2 != 0 { DIR } else { RW };
        self.poke(STR, path.as_bytes());
        let args = [
            i(dirfd),
            i(1),
            i(STR),
            i(path.len() as u32),
            i(oflags),
            l(rights),
            l(RW),
            i(fdflags),
            i(RET),
        ];
        match self.call("path_open", &args) {
            0 => Ok(self.u32_at(RET)),
            e => Err(e),
        }
    }

    pub fn write_fd(&mut self, fd: u32, data: &[u8]) -> Result<u32, i32> {
        self.poke(BUF, data);
        let mut iov = BUF.to_le_bytes().to_vec();
        iov.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.poke(IOV, &iov);
        match self.call("fd_write", &[i(fd), i(IOV), i(1), i(RET)]) {
            0 => Ok(self.u32_at(RET)),
            e => Err(e),
        }
    }

    pub fn read_fd(&mut self, fd: u32, len: u32) -> Result<Vec<u8>, i32> {
        let mut iov = BUF.to_le_bytes().to_vec();
        iov.extend_from_slice(&len.to_le_bytes());
        self.poke(IOV, &iov);
        match self.call("fd_read", &[i(fd), i(IOV), i(1), i(RET)]) {
            0 => {
                let n = self.u32_at(RET) as usize;
                Ok(self.peek(BUF, n))
            }
            e => Err(e),
        }
    }

    pub fn seek(&mut self, fd: u32, offset: i64, whence: u32) -> Result<u64, i32> {
        match self.call("fd_seek", &[i(fd), Val::I64(offset), i(whence), i(RET)]) {
            0 => Ok(self.u64_at(RET)),
            e => Err(e),
        }
    }

    pub fn monotonic(&mut self) -> u64 {
        assert_eq!(self.call("clock_time_get", &[i(1), l(1), i(RET)]), 0);
        self.u64_at(RET)
    }

    pub fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.store.data_mut().ctx
    }
}
