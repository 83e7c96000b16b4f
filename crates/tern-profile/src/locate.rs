//! Field paths (`files[1].guest`) and where they are in the text.
//!
//! The toml crate reports where an error is (a byte span) but not which field it concerns,
//! and validation after deserialization knows the field but not where it is. Both are answered
//! from the spanned tree [`toml::de::DeTable`] of the same text. A table's span there is not
//! its extent: a `[limits]` table spans its header and a dotted `limits.memory` its key, so
//! lookups search every key and value rather than descending by containment.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a field or array element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path(pub(crate) Vec<Seg>);

impl Path {
    pub(crate) fn key(&self, key: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub(crate) fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

/// Keys are written as TOML would need them: bare when they can be, quoted otherwise, so that
/// `env."MY.VAR"` is not mistaken for a nested table.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The most specific key or value whose span holds `span`, and its path (a key's path ends
/// with that key). `None` when nothing does, as for an error about the whole document.
pub(crate) fn path_at(root: &DeTable<'_>, span: &Range<usize>) -> Option<(Path, Range<usize>)> {
    let mut best: Option<(Path, Range<usize>)> = None;
    walk_table(root, &Path::default(), &mut |path, node| {
        let holds = node.start <= span.start
            && span.end <= node.end
            && (node.start < node.end || node.start == span.start);
        if !holds {
            return;
        }
        // Smallest span wins; on a tie the deeper path does, since an array of tables shares
        // its first element's header span.
        let better = match &best {
            None => true,
            Some((p, s)) => {
                let (len, best_len) = (node.len(), s.len());
                len < best_len || (len == best_len && path.0.len() > p.0.len())
            }
        };
        if better {
            best = Some((path.clone(), node.clone()));
        }
    });
    best
}

fn walk_table(table: &DeTable<'_>, path: &Path, visit: &mut dyn FnMut(&Path, &Range<usize>)) {
    for (key, value) in table.iter() {
        let child = path.key(key.get_ref());
        visit(&child, &key.span());
        walk_value(value, &child, visit);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &Path,
    visit: &mut dyn FnMut(&Path, &Range<usize>),
) {
    visit(path, &value.span());
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, visit),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                walk_value(item, &path.index(i), visit);
            }
        }
        _ => {}
    }
}

/// Where the field at `path` is written: the span of its key (for table entries) and of its
/// value. `None` when the path is not in the text, as for a default.
pub(crate) fn find(
    root: &DeTable<'_>,
    path: &Path,
) -> Option<(Option<Range<usize>>, Range<usize>)> {
    let (first, rest) = path.0.split_first()?;
    let Seg::Key(k) = first else { return None };
    let (key, mut value) = root.iter().find(|(key, _)| key.get_ref() == k)?;
    let mut key_span = Some(key.span());
    for seg in rest {
        let next = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let (key, v) = t.iter().find(|(key, _)| key.get_ref() == k)?;
                key_span = Some(key.span());
                v
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                key_span = None;
                a.get(*i)?
            }
            _ => return None,
        };
        value = next;
    }
    Some((key_span, value.span()))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
