//! Resolves each path of a module tree to the module that defines what it names, and so makes
//! the graph between top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::tree::Tree;
use super::{Location, ModuleGraph, ROOT};

/// What a name or path stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// A module of the tree.
    Module(usize),
    /// An item (or something inside one) defined in this module.
    Item(usize),
    /// Something of another crate, or of the prelude.
    External,
    /// Nothing this module defines or imports.
    Unknown,
}

/// The graph between the top-level modules of `tree`, whose root file is `root`.
pub(super) fn graph(tree: &Tree, root: PathBuf) -> ModuleGraph {
    let mut modules: BTreeSet<String> = BTreeSet::from([ROOT.to_string()]);
    modules.extend(tree.modules[0].children.keys().cloned());
    let mut edges: BTreeMap<(String, String), Vec<Location>> = BTreeMap::new();
    for (m, module) in tree.modules.iter().enumerate() {
        // The root's visible imports are there to be imported from it, and so are wiring
        // (followed when a path goes through them) rather than something the root uses. A glob
        // makes no edge by itself: each name used through it does, where it is used.
        let uses = (module.uses.iter())
            .filter(|u| u.name.is_some() && !(m == 0 && u.reexport))
            .map(|u| (&u.path, u.line));
        let refs = module.refs.iter().map(|r| (&r.path, r.line));
        for (path, line) in uses.chain(refs) {
            let target = match tree.resolve(m, path, &mut BTreeSet::new()) {
                // A name alone in code is never a module (it may be a local variable that has
                // a module's name); a module named by a longer path is a reference to it.
                Meaning::Module(_) if path.len() == 1 => continue,
                Meaning::Module(d) | Meaning::Item(d) => d,
                Meaning::External | Meaning::Unknown => continue,
            };
            let (from, to) = (tree.top(m), tree.top(target));
            if from != to {
                let location = Location {
                    file: module.file.clone(),
                    line,
                };
                edges.entry((from, to)).or_default().push(location);
            }
        }
    }
    for refs in edges.values_mut() {
        refs.sort();
        refs.dedup();
    }
    ModuleGraph {
        root,
        modules,
        edges,
    }
}

/// The `(module, name)` lookups under way, so that globs importing each other end.
type Visiting = BTreeSet<(usize, String)>;

impl Tree {
    /// The node a module belongs to: its top-level ancestor, or [`ROOT`].
    fn top(&self, m: usize) -> String {
        self.modules[m]
            .path
            .first()
            .cloned()
            .unwrap_or(ROOT.to_string())
    }

    /// What `path`, written in module `from`, names.
    fn resolve(&self, from: usize, path: &[String], visiting: &mut Visiting) -> Meaning {
        let Some(first) = path.first() else {
            return Meaning::External;
        };
        let (mut current, rest) = match first.as_str() {
            "crate" => (0, &path[1..]),
            "self" => (from, &path[1..]),
            "super" => {
                let mut current = from;
                let mut supers = 0;
                while path.get(supers).is_some_and(|s| s == "super") {
                    match self.modules[current].parent {
                        Some(parent) => current = parent,
                        None => return Meaning::External,
                    }
                    supers += 1;
                }
                (current, &path[supers..])
            }
            // A local variable, a generic, the prelude or another crate.
            name => match self.lookup(from, name, visiting) {
                Meaning::Module(m) => (m, &path[1..]),
                Meaning::Item(m) => return Meaning::Item(m),
                Meaning::External | Meaning::Unknown => return Meaning::External,
            },
        };
        for segment in rest {
            match self.lookup(current, segment, visiting) {
                Meaning::Module(m) => current = m,
                Meaning::Item(m) => return Meaning::Item(m),
                Meaning::External => return Meaning::External,
                // Something this checker does not model (a `#[macro_export]` macro, say): it
                // still comes from the module the path has reached.
                Meaning::Unknown => return Meaning::Item(current),
            }
        }
        Meaning::Module(current)
    }

    /// What `name` stands for inside module `m`: a child, an item, or an import.
    fn lookup(&self, m: usize, name: &str, visiting: &mut Visiting) -> Meaning {
        let key = (m, name.to_string());
        if !visiting.insert(key.clone()) {
            return Meaning::Unknown;
        }
        let found = self.lookup_unguarded(m, name, visiting);
        visiting.remove(&key);
        found
    }

    fn lookup_unguarded(&self, m: usize, name: &str, visiting: &mut Visiting) -> Meaning {
        let module = &self.modules[m];
        if let Some(&child) = module.children.get(name) {
            return Meaning::Module(child);
        }
        if module.items.contains(name) {
            return Meaning::Item(m);
        }
        let named = module
            .uses
            .iter()
            .filter(|u| u.name.as_deref() == Some(name));
        let mut external = false;
        for import in named {
            match self.resolve(m, &import.path, visiting) {
                Meaning::External | Meaning::Unknown => external = true,
                found => return found,
            }
        }
        if external {
            return Meaning::External;
        }
        // Explicit names shadow globs, so globs are tried last.
        for glob in module.uses.iter().filter(|u| u.name.is_none()) {
            if let Meaning::Module(globbed) = self.resolve(m, &glob.path, visiting) {
                match self.lookup(globbed, name, visiting) {
                    Meaning::Unknown => {}
                    found => return found,
                }
            }
        }
        Meaning::Unknown
    }
}
