use crate::guest::*;
use crate::*;
use tern_wasi::{ProcExit, WasiConfig, WasiCtx};
use wasmtime::Val;

fn c_string_at(g: &Guest, addr: u32) -> String {
    let bytes = g.peek(addr, 256);
    let end = bytes.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(bytes[..end].to_vec()).unwrap()
}

#[test]
fn args_and_env_round_trip() {
    let args = vec!["prog".to_string(), "héllo wörld".to_string(), String::new()];
    let env = vec![
        ("A".to_string(), "1".to_string()),
        ("PATH".to_string(), "/bin:/usr/bin".to_string()),
    ];
    let ctx = WasiCtx::new(WasiConfig {
        args: args.clone(),
        env: env.clone(),
        ..WasiConfig::default()
    })
    .unwrap();
    let mut g = Guest::new(ctx);

    assert_eq!(g.call("args_sizes_get", &[i(RET), i(RET2)]), 0);
    assert_eq!(g.u32_at(RET), 3);
    assert_eq!(
        g.u32_at(RET2) as usize,
        args.iter().map(|a| a.len() + 1).sum::<usize>()
    );
    assert_eq!(g.call("args_get", &[i(BUF), i(BUF + 64)]), 0);
    let got: Vec<String> = (0..3)
        .map(|k| c_string_at(&g, g.u32_at(BUF + 4 * k)))
        .collect();
    assert_eq!(got, args);
    assert_eq!(g.u32_at(BUF), BUF + 64);

    assert_eq!(g.call("environ_sizes_get", &[i(RET), i(RET2)]), 0);
    assert_eq!(g.u32_at(RET), 2);
    assert_eq!(
        g.u32_at(RET2),
        ("A=1".len() + 1 + "PATH=/bin:/usr/bin".len() + 1) as u32
    );
    assert_eq!(g.call("environ_get", &[i(BUF), i(BUF + 64)]), 0);
    let got: Vec<String> = (0..2)
        .map(|k| c_string_at(&g, g.u32_at(BUF + 4 * k)))
        .collect();
    assert_eq!(got, ["A=1", "PATH=/bin:/usr/bin"]);
}

#[test]
fn proc_exit_reports_code() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let err = g.try_call("proc_exit", &[i(42)]).unwrap_err();
    assert_eq!(err.downcast_ref::<ProcExit>(), Some(&ProcExit(42)));
    assert_eq!(g.ctx().exit_code(), Some(42));
    assert_eq!(g.call("proc_raise", &[i(2)]), ENOSYS);
}

#[test]
fn a_start_program_writes_a_file_and_exits() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "greeting.txt")
      (data (i32.const 32) "hi from wasm\n")
      (data (i32.const 64) "\20\00\00\00\0d\00\00\00")
      (func (export "_start")
        (if (call $open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 12)
                        (i32.const 9) (i64.const 0x40) (i64.const 0) (i32.const 0) (i32.const 8))
          (then (call $exit (i32.const 1))))
        (drop (call $write (i32.load (i32.const 8)) (i32.const 64) (i32.const 1) (i32.const 72)))
        (call $exit (i32.load (i32.const 72)))))"#;
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let module = wasmtime::Module::new(g.store.engine(), wat::parse_str(wat).unwrap()).unwrap();
    let engine = g.store.engine().clone();
    let instance = linker(&engine).instantiate(&mut g.store, &module).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut g.store, "_start")
        .unwrap();
    let err = start.call(&mut g.store, ()).unwrap_err();
    assert_eq!(
        err.downcast_ref::<ProcExit>(),
        Some(&ProcExit(13)),
        "exit code = bytes written"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("greeting.txt")).unwrap(),
        b"hi from wasm\n"
    );
}

#[test]
fn bad_guest_input_gives_errno() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let far = 0xFFFF_FFF0u32;
    assert_eq!(g.call("fd_write", &[i(1), i(far), i(1), i(RET)]), EFAULT);
    g.poke(
        IOV,
        &[0x3_0000u32.to_le_bytes(), 16u32.to_le_bytes()].concat(),
    );
    assert_eq!(g.call("fd_write", &[i(1), i(IOV), i(1), i(RET)]), EFAULT);
    assert_eq!(
        g.call("fd_write", &[i(1), i(IOV), i(0x2000_0000), i(RET)]),
        EFAULT
    );
    assert_eq!(g.call("fd_read", &[i(99), i(IOV), i(1), i(RET)]), EBADF);
    assert_eq!(g.call("args_sizes_get", &[i(far), i(RET)]), EFAULT);
    assert_eq!(g.call("random_get", &[i(0x1_0000), i(0x10_0000)]), EFAULT);
    assert_eq!(g.call("random_get", &[i(BUF), i(64)]), 0);
    assert_eq!(
        g.call("fd_readdir", &[i(3), i(far), i(4096), l(0), i(RET)]),
        EFAULT
    );
    assert_eq!(g.call("fd_fdstat_get", &[i(3), i(far)]), EFAULT);
    assert_eq!(g.call("clock_time_get", &[i(1), l(0), i(far)]), EFAULT);
    assert_eq!(g.call("fd_seek", &[i(3), Val::I64(0), i(7), i(RET)]), EBADF);
    assert_eq!(
        g.call("poll_oneoff", &[i(BUF), i(BUF + 512), i(0), i(RET)]),
        EINVAL
    );
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(3), i(BUF), i(1)]),
        ENAMETOOLONG
    );

    let rw = l((1 << 1) | (1 << 6));
    let open = |g: &mut Guest, path: u32, len: u32, ret: u32| {
        g.call(
            "path_open",
            &[i(3), i(0), i(path), i(len), i(CREAT), rw, rw, i(0), i(ret)],
        )
    };
    assert_eq!(open(&mut g, STR, 0x7FFF_FFFF, RET), ENAMETOOLONG);
    assert_eq!(open(&mut g, far, 16, RET), EFAULT);
    g.poke(STR, &[b'a', 0xff, 0xfe]);
    assert_eq!(open(&mut g, STR, 3, RET), EILSEQ);
    g.poke(STR, b"ok.txt");
    assert_eq!(open(&mut g, STR, 6, far), EFAULT);
    assert!(
        !tmp.path().join("ok.txt").exists(),
        "nothing happens before the result pointer is known good"
    );
    assert_eq!(
        g.call(
            "path_open",
            &[i(3), i(0), i(STR), i(6), i(0x100), rw, rw, i(0), i(RET)]
        ),
        EINVAL
    );
    assert_eq!(g.open(3, "ok.txt", CREAT, 0), Ok(4), "no descriptor leaked");
    assert_eq!(g.seek(4, 0, 7), Err(EINVAL));
    assert_eq!(g.seek(1, 0, 0), Err(70), "stdout is not seekable");
}

#[test]
fn stdio_and_preopen_descriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    assert_eq!(g.call("fd_fdstat_get", &[i(1), i(BUF)]), 0);
    let tty = rustix::termios::isatty(rustix::stdio::stdout());
    assert_eq!(g.peek(BUF, 1)[0], if tty { 2 } else { 0 });
    assert_eq!(g.u64_at(BUF + 8), 1 << 6, "stdout may only write");
    assert_eq!(g.call("fd_fdstat_get", &[i(3), i(BUF)]), 0);
    assert_eq!(g.peek(BUF, 1)[0], 3);
    assert_eq!(g.call("fd_prestat_get", &[i(3), i(BUF)]), 0);
    assert_eq!(g.peek(BUF, 8), [0, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(g.call("fd_prestat_dir_name", &[i(3), i(BUF), i(5)]), 0);
    assert_eq!(g.peek(BUF, 5), b"/work");
    assert_eq!(g.call("fd_prestat_get", &[i(4), i(BUF)]), EBADF);
    assert_eq!(g.write_fd(2, b""), Ok(0));
}

#[test]
fn provides_and_may_block() {
    for (name, _, _) in SIGNATURES {
        assert!(tern_wasi::provides(name), "{name}");
    }
    assert!(!tern_wasi::provides("fd_nonsense"));
    let blocking: Vec<&str> = SIGNATURES
        .iter()
        .map(|s| s.0)
        .filter(|n| tern_wasi::may_block(n))
        .collect();
    assert_eq!(
        blocking,
        ["fd_read", "poll_oneoff", "sock_accept", "sock_recv"]
    );
}

/// Throws deterministic garbage at every import: whatever the arguments, the
/// host must answer with an errno (or a clean ProcExit), never trap or panic.
#[test]
fn random_arguments_never_trap() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    for fd in 0..3 {
        assert_eq!(g.call("fd_close", &[i(fd)]), 0, "keep garbage off stdio");
    }
    // Blocking imports give up after one slice instead of sleeping.
    g.store
        .data()
        .capture
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let noise: Vec<u8> = (0..0x2_0000).map(|_| (next() % 7) as u8).collect();
    g.poke(0, &noise);
    let mem_size = 0x2_0000u64;
    let mut ok = 0usize;
    for _ in 0..20000 {
        let (name, params, _) = SIGNATURES[(next() % SIGNATURES.len() as u64) as usize];
        if name == "proc_exit" {
            continue;
        }
        let args: Vec<Val> = params
            .split_whitespace()
            .map(|ty| {
                let r = next();
                let v = match r % 5 {
                    0 => r >> 40 & 0xf,
                    1 => (r >> 8) % mem_size,
                    2 => mem_size - (r >> 8) % 64,
                    3 => r >> 32,
                    _ => r >> 3,
                };
                if ty == "i64" {
                    Val::I64(v as i64)
                } else {
                    Val::I32(v as u32 as i32)
                }
            })
            .collect();
        let errno = g
            .try_call(name, &args)
            .unwrap_or_else(|e| panic!("{name}{args:?} trapped: {e:?}"));
        assert!((0..=76).contains(&errno), "{name} returned {errno}");
        ok += usize::from(errno == 0);
    }
    assert!(
        ok > 100,
        "only {ok} calls succeeded: the test is not reaching the hosts' happy paths"
    );
}
