//! Live migration between processes: a program moves, while it runs, from `tern run` to a
//! `tern receive` (and on, hop after hop); its output, exit code and files must equal those of
//! an unmoved run. And a migration that fails leaves the program running where it was.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tern_testkit::{wait_until, Migrated};

use crate::harness::{assert_ends_alike, fixture, tern, Ending};

struct Case<'a> {
    fixture: &'a str,
    args: &'a [&'a str],
    /// Guest directory to grant a fresh host directory as, if any.
    dir: Option<&'a str>,
}

/// `fixture` run with `args`, granted no directory.
fn case<'a>(fixture: &'a str, args: &'a [&'a str]) -> Case<'a> {
    Case {
        fixture,
        args,
        dir: None,
    }
}

/// Where each place keeps the program's directory: one shared by all (same machine), or one
/// of its own (as on different machines: the files must move with the program).
#[derive(Clone, Copy, PartialEq)]
enum Dirs {
    Shared,
    Own,
}

/// One process the program runs in: the first `tern run`, then each `tern receive`.
struct Place {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    socket: PathBuf,
}

fn spawn(case: &Case<'_>, work: &Path, dir: &Path, n: usize, receive: bool) -> (Place, PathBuf) {
    let out = work.join(format!("{n}.out"));
    let err = work.join(format!("{n}.err"));
    let socket = work.join(format!("{n}.sock"));
    let port = work.join(format!("{n}.port"));
    let mut c = tern().command();
    if receive {
        c.arg("receive").arg("--port-file").arg(&port);
    } else {
        c.arg("run");
    }
    c.arg("--control").arg(&socket);
    if let Some(g) = case.dir {
        c.arg("--dir").arg(format!("{}::{g}", dir.display()));
    }
    c.arg(fixture(case.fixture));
    if !receive {
        c.arg("--").args(case.args);
    }
    let child = c
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("tern starts");
    (
        Place {
            child,
            out,
            err,
            socket,
        },
        port,
    )
}

fn wait_for(path: &Path) {
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(5),
        &format!("{} to appear", path.display()),
        || path.exists(),
        String::new,
    );
}

/// `tern instance migrate <socket> --to <to> -o json <extra…>`.
fn migrate(socket: &Path, to: &str, extra: &[&str]) -> Migrated {
    let out = tern()
        .command()
        .args(["instance", "migrate"])
        .arg(socket)
        .args(["--to", to, "-o", "json"])
        .args(extra)
        .output()
        .expect("tern runs");
    Migrated::of(&out)
}

/// The unmoved run, with the files it leaves in a directory of its own (an empty one if the
/// program is granted none).
fn reference(case: &Case<'_>, work: &Path) -> Ending {
    let dir = work.join("reference");
    match case.dir {
        Some(guest) => tern().unmoved_in(&dir, guest, case.fixture, case.args),
        None => {
            std::fs::create_dir_all(&dir).expect("mkdir");
            tern().unmoved(case.fixture, case.args).with_files_in(&dir)
        }
    }
}

/// Run the program and move it `hops` times, `every` apart; returns what it left and how
/// many moves were committed.
fn moved(
    case: &Case<'_>,
    work: &Path,
    hops: usize,
    every: Duration,
    extra: &[&str],
    dirs: Dirs,
) -> (Ending, usize) {
    let dir_of = |n: usize| {
        let d = match dirs {
            Dirs::Shared => work.join("moved"),
            // Places alternate between two directories: a move back finds an earlier copy.
            Dirs::Own => work.join(format!("moved-{}", n % 2)),
        };
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    };
    let dir = dir_of(0);
    let (first, _) = spawn(case, work, &dir, 0, false);
    wait_for(&first.socket);
    let mut places = vec![first];
    let mut committed = 0;
    for n in 1..=hops {
        std::thread::sleep(every);
        let (next, port) = spawn(case, work, &dir_of(n), n, true);
        wait_for(&port);
        let addr = std::fs::read_to_string(&port).expect("port");
        let from = places.last().expect("place").socket.clone();
        let Migrated { code, report, .. } = migrate(&from, addr.trim(), extra);
        if code == Some(0) {
            assert_eq!(report["outcome"], "committed", "{report}");
            wait_for(&next.socket);
            places.push(next);
            committed += 1;
        } else {
            // The program ended before it could move (or the move failed): the destination
            // never runs it.
            let mut next = next;
            let status = next.child.wait().expect("wait");
            assert_ne!(
                status.code(),
                Some(0),
                "a destination that was not told to go ran"
            );
            break;
        }
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut code = None;
    let last = places.len() - 1;
    let final_dir = dir_of(last);
    for (i, mut p) in places.into_iter().enumerate() {
        let status = p.child.wait().expect("wait");
        if i < last {
            assert_eq!(status.code(), Some(0), "a source ends quietly once moved");
        } else {
            code = status.code();
        }
        stdout.extend(std::fs::read(&p.out).expect("out"));
        stderr.extend(std::fs::read(&p.err).expect("err"));
    }
    let ending = Ending {
        code,
        stdout: Some(stdout),
        stderr: Some(stderr),
        files: None,
    };
    (ending.with_files_in(&final_dir), committed)
}

/// Move `case` `hops` times, `every_ms` apart: it ends like an unmoved run.
fn check(case: Case<'_>, hops: usize, every_ms: u64, extra: &[&str]) {
    check_with(case, hops, every_ms, extra, Dirs::Shared)
}

fn check_with(case: Case<'_>, hops: usize, every_ms: u64, extra: &[&str], dirs: Dirs) {
    let every = Duration::from_millis(every_ms);
    let work = tempfile::tempdir().expect("tempdir");
    let want = reference(&case, work.path());
    let (got, committed) = moved(&case, work.path(), hops, every, extra, dirs);
    assert!(committed >= 1, "{}: no move was committed", case.fixture);
    assert_ends_alike(
        &format!("{} moved {committed} times", case.fixture),
        &got,
        &want,
    );
}

#[test]
fn a_compute_loop_moves_three_times() {
    check(case("compute", &["400000000"]), 3, 150, &[]);
}

#[test]
fn a_printer_moves_without_losing_or_repeating_a_line() {
    check(case("printer", &["8000"]), 4, 100, &[]);
}

/// The file writer, in a directory granted as `/data`.
fn writer() -> Case<'static> {
    Case {
        dir: Some("/data"),
        ..case("files", &["/data", "60000"])
    }
}

#[test]
fn a_file_writer_moves_with_its_open_descriptors() {
    check(writer(), 3, 100, &[]);
}

#[test]
fn files_move_with_the_program_to_a_directory_of_its_own() {
    check_with(writer(), 3, 100, &[], Dirs::Own);
}

#[test]
fn a_large_memory_that_keeps_changing_moves() {
    check(case("bigmem", &["64", "200"]), 2, 300, &[]);
}

#[test]
fn page_hashing_finds_written_pages_too() {
    check(case("bigmem", &["32", "200"]), 2, 200, &["--hashing"]);
}

#[test]
fn a_failed_migration_leaves_the_program_running_where_it_was() {
    let big = case("bigmem", &["128", "150"]);
    let work = tempfile::tempdir().expect("tempdir");
    let want = reference(&big, work.path());
    let dir = work.path().join("moved");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (mut src, _) = spawn(&big, work.path(), &dir, 0, false);
    wait_for(&src.socket);

    // A destination prepared for another module is refused before anything moves.
    let wrong = case("compute", &[]);
    let (mut other, port) = spawn(&wrong, work.path(), &dir, 1, true);
    wait_for(&port);
    let addr = std::fs::read_to_string(&port).expect("port");
    let Migrated { code, report, .. } = migrate(&src.socket, addr.trim(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["failed_step"], "prepare", "{report}");
    assert!(
        report["reason"].as_str().unwrap_or("").contains("refused"),
        "{report}"
    );
    assert_ne!(other.child.wait().expect("wait").code(), Some(0));

    // A destination that dies in the middle of the transfer.
    let (mut dying, port) = spawn(&big, work.path(), &dir, 2, true);
    wait_for(&port);
    let addr = std::fs::read_to_string(&port).expect("port");
    let migrating = tern()
        .command()
        .args(["instance", "migrate"])
        .arg(&src.socket)
        .args(["--to", addr.trim(), "-o", "json", "--bandwidth", "200MiB"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tern runs");
    std::thread::sleep(Duration::from_millis(100));
    dying.child.kill().expect("kill");
    let _ = dying.child.wait();
    let Migrated { code, report, .. } = Migrated::of(&migrating.wait_with_output().expect("wait"));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["outcome"], "failed", "{report}");

    // The program never stopped: its output is whole and the same as an unmoved run's.
    let status = src.child.wait().expect("wait");
    let got = Ending {
        code: status.code(),
        stdout: Some(std::fs::read(&src.out).expect("out")),
        ..Ending::default()
    };
    assert_ends_alike("bigmem after two failed migrations", &got, &want);
}
