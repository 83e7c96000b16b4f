use std::ops::Range;

use toml::de::DeTable;
use toml::Spanned;

use crate::locate::{self, Path};

/// Something wrong with a profile: where (file, line and column when known, field path) and
/// what was expected. Displays as `tern.toml:7:10: limits.memory: expected a size such as
/// "512MiB", …, got "lots"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {}{message}", location(*.line, *.column), field_prefix(.field))]
pub struct ProfileError {
    /// The file name the caller gave.
    pub file: String,
    /// 1-based line, when the problem is at a place in the text (a missing top-level field
    /// is not).
    pub line: Option<usize>,
    /// 1-based column, in characters, with `line`.
    pub column: Option<usize>,
    /// The field concerned, such as `limits.memory` or `files[1].guest`; empty for syntax
    /// errors.
    pub field: String,
    /// Which kind of problem, for callers that react to some differently.
    pub kind: ErrorKind,
    /// What is wrong, without the location.
    pub message: String,
}

/// The kinds of [`ProfileError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The text is not valid TOML.
    Syntax,
    /// A field the profile format does not have (often a typo).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or a value outside what it allows.
    Invalid,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn build(
    file: &str,
    text: &str,
    at: Option<usize>,
    field: String,
    kind: ErrorKind,
    message: String,
) -> ProfileError {
    let (line, column) = match at.map(|offset| locate::line_column(text, offset)) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    ProfileError {
        file: file.to_owned(),
        line,
        column,
        field,
        kind,
        message,
    }
}

/// Turns an error of the toml crate (a syntax error when `tree` is `None`, else one from
/// deserializing `tree`) into a [`ProfileError`], finding the field from the error's span and
/// restating serde's wording as "expected …, got …".
pub(crate) fn from_toml(
    file: &str,
    text: &str,
    tree: Option<&Spanned<DeTable<'_>>>,
    err: &toml::de::Error,
) -> ProfileError {
    let span = err.span();
    let message = err.message().trim().to_owned();
    let Some(tree) = tree else {
        return build(
            file,
            text,
            span.map(|s| s.start),
            String::new(),
            ErrorKind::Syntax,
            format!("invalid TOML: {message}"),
        );
    };
    // An error about the root table (a missing top-level field) carries the root's span,
    // which is no place in the text.
    let span = span.filter(|s| *s != tree.span());
    let found = span
        .as_ref()
        .and_then(|s| locate::path_at(tree.get_ref(), s));
    let (path, at) = match (&found, &span) {
        (Some((path, node)), _) => (path.clone(), Some(node.start)),
        (None, Some(s)) => (Path::default(), Some(s.start)),
        (None, None) => (Path::default(), None),
    };

    if let Some(name) = backquoted_after(&message, "missing field ") {
        return build(
            file,
            text,
            at,
            path.key(name).to_string(),
            ErrorKind::MissingField,
            "required field is missing".to_owned(),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // The span is the key's, so the path already ends with the unknown name.
        let expected = rest.split_once(", ").map_or("", |(_, e)| e);
        let message = match expected {
            "" | "there are no fields" => "unknown field".to_owned(),
            e => format!("unknown field, {e}"),
        };
        return build(
            file,
            text,
            at,
            path.to_string(),
            ErrorKind::UnknownField,
            message,
        );
    }
    build(
        file,
        text,
        at,
        path.to_string(),
        ErrorKind::Invalid,
        restate(&message),
    )
}

/// The text between the first pair of backquotes after `prefix`, when `message` starts with it.
fn backquoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Serde says "invalid type: string \"x\", expected a boolean"; a person reading a config
/// error wants what to write first, and in TOML's words rather than Rust's.
fn restate(message: &str) -> String {
    let plain = |s: &str| -> String {
        match s {
            "f64" | "f32" => "a number".to_owned(),
            "u64" | "u32" | "u16" | "i64" => "an integer".to_owned(),
            "a sequence" => "an array".to_owned(),
            "a map" => "a table".to_owned(),
            "a string" | "a boolean" => s.to_owned(),
            s if s.starts_with("struct ") => "a table".to_owned(),
            s if s.starts_with("sequence") => "an array".to_owned(),
            s if s.starts_with("map") => "a table".to_owned(),
            s => s.to_owned(),
        }
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return format!("expected {}, got {}", plain(expected), plain(got));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!(
                "expected {}, got {}",
                quote_variants(expected),
                quote_variants(got)
            );
        }
    }
    message.to_owned()
}

/// `` `never`, `always` `` → `"never", "always"`, as the values are written in TOML.
fn quote_variants(s: &str) -> String {
    s.replace('`', "\"")
}

/// What validation found: the field, whether the problem is its key (a bad name) or its
/// value, and the message.
pub(crate) struct Found {
    pub(crate) path: Path,
    pub(crate) at_key: bool,
    pub(crate) message: String,
}

/// The problem that comes first in the text (those at no place, such as defaults, last), so
/// that fixing errors top to bottom works.
pub(crate) fn from_validation(
    file: &str,
    text: &str,
    tree: &Spanned<DeTable<'_>>,
    found: Vec<Found>,
) -> ProfileError {
    let placed = found.into_iter().map(|f| {
        let span: Option<Range<usize>> =
            locate::find(tree.get_ref(), &f.path).map(|(key, value)| {
                if f.at_key {
                    key.unwrap_or(value)
                } else {
                    value
                }
            });
        (span.map(|s| s.start), f)
    });
    let first = placed.min_by_key(|(at, _)| at.unwrap_or(usize::MAX));
    match first {
        Some((at, f)) => build(
            file,
            text,
            at,
            f.path.to_string(),
            ErrorKind::Invalid,
            f.message,
        ),
        // Validation only reports failure with at least one finding.
        None => build(
            file,
            text,
            None,
            String::new(),
            ErrorKind::Invalid,
            "invalid profile".to_owned(),
        ),
    }
}
