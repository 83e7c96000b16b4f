use crate::guest::*;
use crate::*;
use std::time::Duration;
use tern_wasi::{Error, FdKindState, WasiCtx, WasiState};

#[test]
fn save_and_restore_keep_fds_and_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let scratch = g.open(3, "scratch.txt", CREAT, 0).unwrap();
    let log = g.open(3, "log.txt", CREAT | TRUNC, 0).unwrap();
    let sub = g.open(3, "sub", DIRECTORY, 0).unwrap();
    assert_eq!((scratch, log, sub), (4, 5, 6));
    assert_eq!(g.call("fd_close", &[i(scratch)]), 0);
    assert_eq!(g.write_fd(log, b"abc"), Ok(3));

    let state = g.ctx().save().unwrap();
    let json = serde_json::to_string(&state).unwrap();
    let state: WasiState = serde_json::from_str(&json).unwrap();
    let log_state = state.fds.iter().find(|f| f.fd == log).unwrap();
    assert!(
        matches!(&log_state.kind, FdKindState::File { path, offset: 3, write: true, .. } if path == "log.txt")
    );
    assert!(state.fds.iter().all(|f| f.fd != scratch));
    drop(g);

    let restored = WasiCtx::restore(&state, &preopens(tmp.path()), vec![]).unwrap();
    assert_eq!(restored.save().unwrap().fds, state.fds);
    let mut g = Guest::new(restored);
    assert_eq!(g.call("fd_tell", &[i(log), i(RET)]), 0);
    assert_eq!(g.u64_at(RET), 3);
    assert_eq!(g.write_fd(log, b"def"), Ok(3));
    assert_eq!(
        std::fs::read(tmp.path().join("log.txt")).unwrap(),
        b"abcdef"
    );
    assert_eq!(g.seek(log, 0, 0), Ok(0));
    assert_eq!(g.read_fd(log, 100).unwrap(), b"abcdef");
    assert_eq!(
        g.write_fd(scratch, b"x"),
        Err(EBADF),
        "the hole stays a hole"
    );
    std::fs::write(tmp.path().join("sub/inner"), "").unwrap();
    g.poke(STR, b"inner");
    assert_eq!(
        g.call("path_filestat_get", &[i(sub), i(0), i(STR), i(5), i(BUF)]),
        0
    );
    assert_eq!(
        g.open(3, "new.txt", CREAT, 0),
        Ok(scratch),
        "numbering continues as before"
    );

    // Missing preopen or file: errors that name what is missing.
    let err = WasiCtx::restore(&state, &[], vec![]).unwrap_err();
    assert!(
        matches!(&err, Error::MissingPreopen(p) if p == "/work"),
        "{err}"
    );
    std::fs::remove_file(tmp.path().join("log.txt")).unwrap();
    let err = WasiCtx::restore(&state, &preopens(tmp.path()), vec![]).unwrap_err();
    assert!(err.to_string().contains("/work/log.txt"), "{err}");
}

#[test]
fn monotonic_clock_continues_after_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let before = g.monotonic();
    std::thread::sleep(Duration::from_millis(20));
    let state = g.ctx().save().unwrap();
    assert!(state.monotonic_ns >= before + 20_000_000);
    let mut g = Guest::new(WasiCtx::restore(&state, &preopens(tmp.path()), vec![]).unwrap());
    let after = g.monotonic();
    assert!(
        after >= state.monotonic_ns,
        "{after} < {}",
        state.monotonic_ns
    );
    assert_eq!(g.call("clock_time_get", &[i(0), l(1), i(RET)]), 0);
    assert!(
        g.u64_at(RET) > 1_600_000_000_000_000_000,
        "realtime is wall-clock ns"
    );
    assert_eq!(g.call("clock_time_get", &[i(9), l(1), i(RET)]), EINVAL);
}
