//! The check that most of Tern's tests end with: a program that was moved, checkpointed or
//! resumed while it ran ends exactly as an uninterrupted ("unmoved") run of the same program
//! does: the same exit code, and byte for byte the same output and files.

use std::path::Path;
use std::process::Output;

use crate::tern::{files_in, fixture, text, Files, Tern};

/// How a program ended, as far as a test looks: its exit code (`None` if it was killed), and
/// those of its output streams and files that the test has (`None`: not looked at, such as
/// the standard error of a workload, whose logs hold its standard output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    pub code: Option<i32>,
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
    pub files: Option<Files>,
}

impl Ending {
    /// A process's exit code and both its output streams.
    pub fn of(out: &Output) -> Ending {
        Ending {
            code: out.status.code(),
            stdout: Some(out.stdout.clone()),
            stderr: Some(out.stderr.clone()),
            files: None,
        }
    }

    /// The same, with the files the program left in `dir`.
    pub fn with_files_in(mut self, dir: &Path) -> Ending {
        self.files = Some(files_in(dir));
        self
    }

    /// Its standard output as text ("" if not looked at).
    pub fn stdout_text(&self) -> String {
        text(self.stdout.as_deref().unwrap_or_default())
    }
}

impl Tern {
    /// How `fixture` run with `args`, uninterrupted, ends.
    pub fn unmoved(&self, fixture_name: &str, args: &[&str]) -> Ending {
        let module = fixture(fixture_name).display().to_string();
        let mut a = vec!["run", module.as_str(), "--"];
        a.extend_from_slice(args);
        Ending::of(&self.run(&a))
    }

    /// The same with the host directory `dir` (created if missing) granted as `guest`; its
    /// files are part of the ending.
    pub fn unmoved_in(&self, dir: &Path, guest: &str, fixture_name: &str, args: &[&str]) -> Ending {
        std::fs::create_dir_all(dir).expect("mkdir");
        let grant = format!("{}::{guest}", dir.display());
        let module = fixture(fixture_name).display().to_string();
        let mut a = vec!["run", "--dir", grant.as_str(), module.as_str(), "--"];
        a.extend_from_slice(args);
        Ending::of(&self.run(&a)).with_files_in(dir)
    }
}

/// `got` ends like `want`, the uninterrupted run of the same program: the same exit code (and
/// `want` has one: it ran to its end), and each output stream and the files that `got` looked
/// at byte for byte the same. `what` names the case in the failure message.
pub fn assert_ends_alike(what: &str, got: &Ending, want: &Ending) {
    let want_stderr = text(want.stderr.as_deref().unwrap_or_default());
    assert!(
        want.code.is_some(),
        "{what}: the unmoved run did not end with an exit code: {want_stderr}"
    );
    let streams = [
        ("stdout", &got.stdout, &want.stdout),
        ("stderr", &got.stderr, &want.stderr),
    ];
    let kept = |name: &str| format!("{what}: the unmoved run's {name} was not kept");
    for (name, got, want) in streams {
        let Some(got) = got else { continue };
        let want = want.as_ref().unwrap_or_else(|| panic!("{}", kept(name)));
        assert!(
            got == want,
            "{what}: {name} differs from the unmoved run's: {}",
            first_difference(got, want)
        );
    }
    assert_eq!(got.code, want.code, "{what}: exit code");
    if let Some(got) = &got.files {
        let want = want
            .files
            .as_ref()
            .unwrap_or_else(|| panic!("{}", kept("files")));
        assert!(
            got == want,
            "{what}: files differ from the unmoved run's: {}",
            files_difference(got, want)
        );
    }
}

/// Where two outputs part: the byte offset, the line, and the two lines there.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let line_start = got[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_of = |b: &[u8]| {
        let rest = b.get(line_start..).unwrap_or_default();
        let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        format!("{:?}", text(&rest[..end.min(200)]))
    };
    let line = got[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    format!(
        "{} bytes against {}, first difference at byte {at} (line {line}): got {}, want {}",
        got.len(),
        want.len(),
        line_of(got),
        line_of(want)
    )
}

/// Which files are missing, extra or different, with their sizes.
fn files_difference(got: &Files, want: &Files) -> String {
    let size = |f: &Files, name: &str| f.iter().find(|(n, _)| n == name).map(|(_, b)| b.len());
    let mut names: Vec<&str> = got.iter().chain(want).map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| match (size(got, n), size(want, n)) {
            (Some(_), None) => Some(format!("{n} is extra")),
            (None, Some(_)) => Some(format!("{n} is missing")),
            (Some(g), Some(w))
                if got.iter().find(|f| f.0 == n) != want.iter().find(|f| f.0 == n) =>
            {
                Some(format!("{n} differs ({g} bytes against {w})"))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(stdout: &str, code: i32) -> Ending {
        Ending {
            code: Some(code),
            stdout: Some(stdout.into()),
            ..Ending::default()
        }
    }

    #[test]
    fn the_same_ending_passes_and_unlooked_parts_are_not_compared() {
        let mut want = ending("a\nb\n", 3);
        want.stderr = Some(b"noise".to_vec());
        assert_ends_alike("same", &ending("a\nb\n", 3), &want);
    }

    #[test]
    #[should_panic(expected = "first difference at byte 3 (line 2): got \"bX\", want \"b\"")]
    fn a_different_output_is_located() {
        assert_ends_alike("moved", &ending("a\nbX\n", 3), &ending("a\nb\n", 3));
    }

    #[test]
    #[should_panic(expected = "exit code")]
    fn a_different_code_fails() {
        assert_ends_alike("moved", &ending("a\n", 1), &ending("a\n", 3));
    }

    #[test]
    #[should_panic(expected = "did not end with an exit code")]
    fn an_unmoved_run_without_a_code_fails() {
        let mut want = ending("", 0);
        want.code = None;
        assert_ends_alike("moved", &Ending::default(), &want);
    }

    #[test]
    fn files_are_told_apart_by_name() {
        let got = vec![("a".into(), vec![1]), ("b".into(), vec![2])];
        let want = vec![("a".into(), vec![1, 1]), ("c".into(), vec![3])];
        assert_eq!(
            files_difference(&got, &want),
            "a differs (1 bytes against 2), b is extra, c is missing"
        );
    }
}
