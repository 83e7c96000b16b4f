//! Running `tern` as a separate process, the way users and scripts do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// All tests share one Tern home so that each fixture is instrumented and compiled once.
pub fn tern_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tern-home")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(format!("{name}.wasm"))
}

pub fn tern(args: &[&str]) -> Output {
    tern_in(&tern_home(), args)
}

/// Run `tern` with another Tern home, as on a machine that has never seen the module.
pub fn tern_in(home: &Path, args: &[&str]) -> Output {
    tern_with(home, args, &[])
}

/// Run `tern` with extra environment variables.
pub fn tern_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env("TERN_HOME", home)
        .envs(env.iter().copied())
        .output()
        .expect("tern runs")
}

/// What a run leaves behind that must match between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Result {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
    pub files: Vec<(String, Vec<u8>)>,
}

pub fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            )
        })
        .collect();
    out.sort();
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
