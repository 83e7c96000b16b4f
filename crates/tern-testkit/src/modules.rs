//! The dependency graph between a crate's top-level modules, and its cycles.
//!
//! A node is a top-level module (a child of `lib.rs`, `main.rs` or a `bin/` root); a nested
//! module such as `sim/world.rs` is part of its top-level ancestor, because that is the level
//! at which a crate is read and split. The root's own items (those defined in `lib.rs` itself)
//! form the node `crate`. An edge `a -> b` is any path in `a` that resolves to something `b`
//! defines: `use` trees, types, expressions and patterns, and paths inside macro invocations
//! (scanned token by token, since a macro's input is not parsed). Names are resolved the way
//! rustc does for the cases a crate uses: `crate::`, `super::`, `self::`, names brought in by
//! `use` (renamed or globbed), and re-exports followed to the module that defines the item, so a
//! cycle cannot hide behind a `pub use` in `lib.rs`. Those re-exports are the root's wiring, not
//! a dependency of the root, so they make no edge of their own.
//!
//! Test code counts like any other: a `#[cfg(test)] mod tests` belongs to its module and its
//! references are its module's. Exempting it would let a test reach into a module that depends
//! on the one under test, and the rule "no edge back" is easier to keep without exceptions.
//!
//! Known limits, none used in this workspace: a `#[path]` attribute is refused rather than
//! followed; doc links are not references; a name used from an external crate is never an edge.

mod collect;
mod resolve;
mod scc;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The text of a crate's `.rs` files, keyed by their path relative to its `src/` directory.
pub type Sources = BTreeMap<PathBuf, String>;

/// The name of the node that stands for the items defined in the crate root itself.
pub const ROOT: &str = "crate";

/// Why a crate's modules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory or file under `src/` could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid Rust.
    #[error("cannot parse {path} (line {line}): {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The directory has neither `lib.rs`, `main.rs` nor a `bin/` target.
    #[error("{0} has no lib.rs, main.rs or bin/ target")]
    NoRoot(PathBuf),
    /// A `mod name;` whose file is neither `name.rs` nor `name/mod.rs`.
    #[error("{file}:{line}: no file for `mod {name};`")]
    MissingModule {
        file: PathBuf,
        line: usize,
        name: String,
    },
    /// A construct the checker does not follow; refusing it beats a graph with holes.
    #[error("{file}:{line}: {what} is not supported by the module-cycle check")]
    Unsupported {
        file: PathBuf,
        line: usize,
        what: &'static str,
    },
}

/// A place in the source: a file relative to `src/`, and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// The dependencies between the top-level modules of one crate target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleGraph {
    /// The target's root file, relative to `src/` (`lib.rs`, `main.rs`, `bin/x.rs`).
    pub root: PathBuf,
    /// Every node: each top-level module and [`ROOT`].
    pub modules: BTreeSet<String>,
    /// Each edge `(from, to)` with every reference that makes it, in file and line order.
    pub edges: BTreeMap<(String, String), Vec<Location>>,
}

/// One edge of a cycle, with the references that make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub refs: Vec<Location>,
}

/// A set of modules that all depend on each other (a strongly connected component with more
/// than one module), with every edge between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub root: PathBuf,
    /// The modules, sorted by name.
    pub modules: Vec<String>,
    /// The edges between those modules, sorted by `(from, to)`.
    pub edges: Vec<Edge>,
}

/// The cycles of one crate, named by its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateCycles {
    pub name: String,
    pub cycles: Vec<Cycle>,
}

/// Reads every `.rs` file under `src`.
pub fn read_sources(src: &Path) -> Result<Sources, Error> {
    let mut sources = Sources::new();
    read_dir(src, Path::new(""), &mut sources)?;
    Ok(sources)
}

fn read_dir(src: &Path, relative: &Path, sources: &mut Sources) -> Result<(), Error> {
    let dir = src.join(relative);
    let read = |source| Error::Read {
        path: dir.clone(),
        source,
    };
    for entry in std::fs::read_dir(&dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let path = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(read)?;
        if kind.is_dir() {
            read_dir(src, &path, sources)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(src.join(&path)).map_err(|source| Error::Read {
                path: src.join(&path),
                source,
            })?;
            sources.insert(path, text);
        }
    }
    Ok(())
}

/// The module graph of each target (library, main binary, `bin/` binaries) in `sources`;
/// none if `sources` has no target root.
pub fn graphs(sources: &Sources) -> Result<Vec<ModuleGraph>, Error> {
    roots(sources)
        .into_iter()
        .map(|root| Ok(resolve::graph(&tree::load(sources, &root)?, root)))
        .collect()
}

fn roots(sources: &Sources) -> Vec<PathBuf> {
    sources
        .keys()
        .filter(|path| {
            let parts: Vec<_> = path.iter().filter_map(|p| p.to_str()).collect();
            matches!(
                parts.as_slice(),
                ["lib.rs"] | ["main.rs"] | ["bin", _] | ["bin", _, "main.rs"]
            )
        })
        .cloned()
        .collect()
}

/// The cycles of every target of the crate whose source directory is `src`.
pub fn check_crate(src: &Path) -> Result<Vec<Cycle>, Error> {
    let sources = read_sources(src)?;
    if roots(&sources).is_empty() {
        return Err(Error::NoRoot(src.to_path_buf()));
    }
    Ok(graphs(&sources)?
        .iter()
        .flat_map(ModuleGraph::cycles)
        .collect())
}

/// The cycles of every crate under `crates_dir` (each directory with a `src/`), by name.
pub fn check_crates(crates_dir: &Path) -> Result<Vec<CrateCycles>, Error> {
    let read = |source| Error::Read {
        path: crates_dir.to_path_buf(),
        source,
    };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(crates_dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.join("src").is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            Ok(CrateCycles {
                name: name.unwrap_or_default(),
                cycles: check_crate(&dir.join("src"))?,
            })
        })
        .collect()
}

impl ModuleGraph {
    /// Every set of two or more modules that depend on each other, sorted by first module.
    pub fn cycles(&self) -> Vec<Cycle> {
        let names: Vec<&String> = self.modules.iter().collect();
        let index = |name: &String| names.iter().position(|n| *n == name);
        let mut next = vec![Vec::new(); names.len()];
        for (from, to) in self.edges.keys() {
            if let (Some(f), Some(t)) = (index(from), index(to)) {
                next[f].push(t);
            }
        }
        let mut cycles: Vec<Cycle> = scc::components(&next)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut modules: Vec<String> =
                    component.iter().map(|&i| names[i].clone()).collect();
                modules.sort();
                let edges = self
                    .edges
                    .iter()
                    .filter(|((from, to), _)| modules.contains(from) && modules.contains(to))
                    .map(|((from, to), refs)| Edge {
                        from: from.clone(),
                        to: to.clone(),
                        refs: refs.clone(),
                    })
                    .collect();
                Cycle {
                    root: self.root.clone(),
                    modules,
                    edges,
                }
            })
            .collect();
        cycles.sort_by(|a, b| a.modules.cmp(&b.modules));
        cycles
    }
}

/// How many references of an edge a report shows; the rest are counted. The alternate form
/// (`{:#}`) shows them all.
const SHOWN_REFS: usize = 4;

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = self.root.display();
        writeln!(f, "cycle in {root} between {}:", self.modules.join(", "))?;
        let limit = if f.alternate() {
            usize::MAX
        } else {
            SHOWN_REFS
        };
        for edge in &self.edges {
            let shown: Vec<String> = (edge.refs.iter().take(limit))
                .map(|l| format!("{}:{}", l.file.display(), l.line))
                .collect();
            write!(f, "  {} -> {}: {}", edge.from, edge.to, shown.join(", "))?;
            match edge.refs.len().saturating_sub(shown.len()) {
                0 => writeln!(f)?,
                more => writeln!(f, " and {more} more")?,
            }
        }
        Ok(())
    }
}
