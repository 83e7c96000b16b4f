use crate::guest::*;
use crate::*;
use tern_wasi::WasiCtx;

#[test]
fn file_write_seek_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let fd = g.open(3, "out.txt", CREAT | TRUNC, 0).unwrap();
    assert_eq!(fd, 4, "first opened fd follows stdio and the preopen");
    assert_eq!(g.write_fd(fd, b"hello world"), Ok(11));
    assert_eq!(
        std::fs::read(tmp.path().join("out.txt")).unwrap(),
        b"hello world"
    );
    assert_eq!(g.seek(fd, 0, 0), Ok(0));
    assert_eq!(g.read_fd(fd, 5).unwrap(), b"hello");
    assert_eq!(g.call("fd_tell", &[i(fd), i(RET)]), 0);
    assert_eq!(g.u64_at(RET), 5);
    assert_eq!(g.seek(fd, -5, 2), Ok(6));
    assert_eq!(g.read_fd(fd, 100).unwrap(), b"world");
    assert_eq!(g.read_fd(fd, 100).unwrap(), b"", "EOF reads 0 bytes");

    // pwrite/pread leave the offset alone.
    g.poke(BUF, b"J");
    g.poke(IOV, &[BUF.to_le_bytes(), 1u32.to_le_bytes()].concat());
    assert_eq!(g.call("fd_pwrite", &[i(fd), i(IOV), i(1), l(0), i(RET)]), 0);
    g.poke(IOV, &[BUF.to_le_bytes(), 5u32.to_le_bytes()].concat());
    assert_eq!(g.call("fd_pread", &[i(fd), i(IOV), i(1), l(6), i(RET)]), 0);
    assert_eq!(g.peek(BUF, 5), b"world");
    assert_eq!(g.seek(fd, 0, 1), Ok(11));
    assert_eq!(
        std::fs::read(tmp.path().join("out.txt")).unwrap(),
        b"Jello world"
    );

    // Two iovecs are filled in order from one read.
    assert_eq!(g.seek(fd, 0, 0), Ok(0));
    let iovs = [
        BUF.to_le_bytes(),
        3u32.to_le_bytes(),
        (BUF + 100).to_le_bytes(),
        4u32.to_le_bytes(),
    ]
    .concat();
    g.poke(IOV, &iovs);
    assert_eq!(g.call("fd_read", &[i(fd), i(IOV), i(2), i(RET)]), 0);
    assert_eq!(g.u32_at(RET), 7);
    assert_eq!(g.peek(BUF, 3), b"Jel");
    assert_eq!(g.peek(BUF + 100, 4), b"lo w");

    assert_eq!(g.call("fd_filestat_get", &[i(fd), i(BUF)]), 0);
    assert_eq!(g.peek(BUF + 16, 1)[0], 4, "regular file");
    assert_eq!(g.u64_at(BUF + 32), 11, "size");
    assert_eq!(g.call("fd_filestat_set_size", &[i(fd), l(4)]), 0);
    assert_eq!(std::fs::read(tmp.path().join("out.txt")).unwrap(), b"Jell");
}

fn dirents(bytes: &[u8]) -> Vec<(u64, String, u8)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 24 <= bytes.len() {
        let next = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let namlen = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        let ty = bytes[at + 20];
        let name = String::from_utf8(bytes[at + 24..at + 24 + namlen].to_vec()).unwrap();
        out.push((next, name, ty));
        at += 24 + namlen;
    }
    out
}

#[test]
fn readdir_is_sorted_with_index_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["zeta", "alpha", "Mid"] {
        std::fs::write(tmp.path().join(name), name).unwrap();
    }
    std::fs::create_dir(tmp.path().join("beta")).unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));

    assert_eq!(
        g.call("fd_readdir", &[i(3), i(BUF), i(4096), l(0), i(RET)]),
        0
    );
    let n = g.u32_at(RET) as usize;
    let all = dirents(&g.peek(BUF, n));
    let expect = [
        (1, ".", 3),
        (2, "..", 3),
        (3, "Mid", 4),
        (4, "alpha", 4),
        (5, "beta", 3),
        (6, "zeta", 4),
    ];
    let expect: Vec<(u64, String, u8)> = expect
        .iter()
        .map(|&(c, s, t)| (c, s.to_string(), t))
        .collect();
    assert_eq!(all, expect);

    // Resuming from a cookie continues at that index.
    assert_eq!(
        g.call("fd_readdir", &[i(3), i(BUF), i(4096), l(3), i(RET)]),
        0
    );
    let rest = dirents(&g.peek(BUF, g.u32_at(RET) as usize));
    assert_eq!(rest.first().map(|e| e.1.as_str()), Some("alpha"));
    assert_eq!(rest.len(), 3);

    // A buffer too small is filled completely, signalling "retry bigger".
    assert_eq!(
        g.call("fd_readdir", &[i(3), i(BUF), i(30), l(0), i(RET)]),
        0
    );
    assert_eq!(g.u32_at(RET), 30);

    // The same listing comes back from a directory opened by path.
    let sub = g.open(3, ".", DIRECTORY, 0).unwrap();
    assert_eq!(
        g.call("fd_readdir", &[i(sub), i(BUF), i(4096), l(0), i(RET)]),
        0
    );
    assert_eq!(dirents(&g.peek(BUF, g.u32_at(RET) as usize)), expect);
}

#[test]
fn paths_cannot_escape_the_preopen() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("box");
    std::fs::create_dir(&sandbox).unwrap();
    std::fs::create_dir(sandbox.join("sub")).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "secret").unwrap();
    std::fs::write(sandbox.join("inside.txt"), "ok").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), sandbox.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", sandbox.join("rel")).unwrap();
    let mut g = Guest::new(ctx_in(&sandbox));

    assert!(g.open(3, "inside.txt", 0, 0).is_ok());
    for path in [
        "../secret.txt",
        "sub/../../secret.txt",
        "abs",
        "rel",
        "/etc/passwd",
        "sub/../abs",
    ] {
        let r = g.open(3, path, 0, 0);
        assert!(r.is_err(), "{path} must be refused, got {r:?}");
    }
    // Relative to a subdirectory, `..` may not climb out of it either.
    let sub = g.open(3, "sub", DIRECTORY, 0).unwrap();
    assert!(g.open(sub, "../inside.txt", 0, 0).is_err());

    g.poke(STR, b"../made");
    assert_ne!(g.call("path_create_directory", &[i(3), i(STR), i(7)]), 0);
    assert!(!tmp.path().join("made").exists());
    g.poke(STR, b"../secret.txt");
    assert_ne!(
        g.call("path_filestat_get", &[i(3), i(1), i(STR), i(13), i(BUF)]),
        0
    );
    assert_ne!(g.call("path_unlink_file", &[i(3), i(STR), i(13)]), 0);
    assert!(tmp.path().join("secret.txt").exists());
    // A guest may not plant an absolute symlink either.
    let target = tmp.path().join("secret.txt").to_string_lossy().into_owned();
    g.poke(STR, target.as_bytes());
    g.poke(STR2, b"planted");
    assert_ne!(
        g.call(
            "path_symlink",
            &[i(STR), i(target.len() as u32), i(3), i(STR2), i(7)]
        ),
        0
    );
}

#[test]
fn renumber_moves_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let a = g.open(3, "a.txt", CREAT, 0).unwrap();
    let b = g.open(3, "b.txt", CREAT, 0).unwrap();
    assert_eq!((a, b), (4, 5));
    assert_eq!(g.call("fd_renumber", &[i(a), i(b)]), 0);
    assert_eq!(g.write_fd(b, b"A"), Ok(1));
    assert_eq!(g.write_fd(a, b"x"), Err(EBADF));
    assert_eq!(std::fs::read(tmp.path().join("a.txt")).unwrap(), b"A");
    assert_eq!(std::fs::read(tmp.path().join("b.txt")).unwrap(), b"");
    assert_eq!(
        g.call("fd_renumber", &[i(b), i(9)]),
        EBADF,
        "target must be open"
    );
    assert_eq!(g.call("fd_renumber", &[i(b), i(b)]), 0);
    // The number freed by the renumber is handed out again.
    assert_eq!(g.open(3, "c.txt", CREAT, 0), Ok(4));
    assert_eq!(g.call("fd_close", &[i(b)]), 0);
    assert_eq!(g.call("fd_close", &[i(b)]), EBADF);
}

#[test]
fn rename_of_open_file_is_tracked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = Guest::new(ctx_in(tmp.path()));
    let fd = g.open(3, "a.txt", CREAT, 0).unwrap();
    assert_eq!(g.write_fd(fd, b"1"), Ok(1));
    g.poke(STR, b"a.txt");
    g.poke(STR2, b"b.txt");
    assert_eq!(
        g.call("path_rename", &[i(3), i(STR), i(5), i(3), i(STR2), i(5)]),
        0
    );
    let state = g.ctx().save().unwrap();
    let mut g = Guest::new(WasiCtx::restore(&state, &preopens(tmp.path()), vec![]).unwrap());
    assert_eq!(g.write_fd(fd, b"2"), Ok(1));
    assert_eq!(std::fs::read(tmp.path().join("b.txt")).unwrap(), b"12");
}
