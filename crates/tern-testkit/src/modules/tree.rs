//! The module tree of one crate target, read from its sources: for every module (file or
//! inline), the names it defines, the names it imports and the paths it refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::{Item, Visibility};

use super::collect::{self, Ref, Use};
use super::{Error, Sources};

/// One module of the tree.
#[derive(Debug)]
pub(super) struct Module {
    /// Names from the crate root down; empty for the root.
    pub path: Vec<String>,
    pub parent: Option<usize>,
    /// The file its items are in (an inline module's is its parent's file).
    pub file: PathBuf,
    pub children: BTreeMap<String, usize>,
    /// Names of the items it defines other than modules.
    pub items: BTreeSet<String>,
    pub uses: Vec<Use>,
    pub refs: Vec<Ref>,
}

/// Every module of a target; index 0 is the root.
#[derive(Debug)]
pub(super) struct Tree {
    pub modules: Vec<Module>,
}

/// Reads the tree whose root file is `root`, following each `mod name;` to its file.
pub(super) fn load(sources: &Sources, root: &Path) -> Result<Tree, Error> {
    let mut tree = Tree {
        modules: vec![Module {
            path: Vec::new(),
            parent: None,
            file: root.to_path_buf(),
            children: BTreeMap::new(),
            items: BTreeSet::new(),
            uses: Vec::new(),
            refs: Vec::new(),
        }],
    };
    let file = parse(sources, root)?;
    // A root's `mod` files sit beside it, whatever its name.
    let dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
    tree.load_items(sources, 0, &file.items, &dir)?;
    Ok(tree)
}

fn parse(sources: &Sources, path: &Path) -> Result<syn::File, Error> {
    let text = sources.get(path).map(String::as_str).unwrap_or_default();
    syn::parse_file(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.span().start().line,
        message: e.to_string(),
    })
}

impl Tree {
    /// Records `items` as module `m`'s; `dir` is where the files of its `mod name;` children are.
    fn load_items(
        &mut self,
        sources: &Sources,
        m: usize,
        items: &[Item],
        dir: &Path,
    ) -> Result<(), Error> {
        for item in items {
            match item {
                Item::Mod(module) => self.load_module(sources, m, module, dir)?,
                Item::Use(item) => {
                    // Anything but a private `use` may be there to be imported from here.
                    let reexport = !matches!(item.vis, Visibility::Inherited);
                    let uses = collect::flatten_use(item, reexport);
                    self.modules[m].uses.extend(uses);
                }
                other => {
                    if let Some(name) = collect::item_name(other) {
                        self.modules[m].items.insert(name);
                    }
                    let (uses, refs) = collect::references(other);
                    self.modules[m].uses.extend(uses);
                    self.modules[m].refs.extend(refs);
                }
            }
        }
        Ok(())
    }

    fn load_module(
        &mut self,
        sources: &Sources,
        parent: usize,
        module: &syn::ItemMod,
        dir: &Path,
    ) -> Result<(), Error> {
        let name = collect::unraw(&module.ident);
        let line = module.ident.span().start().line;
        let parent_file = self.modules[parent].file.clone();
        if module.attrs.iter().any(|a| a.path().is_ident("path")) {
            return Err(Error::Unsupported {
                file: parent_file,
                line,
                what: "a #[path] attribute on a module",
            });
        }
        let child_dir = dir.join(&name);
        let (file, parsed) = match &module.content {
            Some(_) => (parent_file.clone(), None),
            None => {
                let flat = dir.join(format!("{name}.rs"));
                let nested = child_dir.join("mod.rs");
                let file = [flat, nested]
                    .into_iter()
                    .find(|f| sources.contains_key(f))
                    .ok_or_else(|| Error::MissingModule {
                        file: parent_file.clone(),
                        line,
                        name: name.clone(),
                    })?;
                let parsed = parse(sources, &file)?;
                (file, Some(parsed))
            }
        };
        let mut path = self.modules[parent].path.clone();
        path.push(name.clone());
        let child = self.modules.len();
        self.modules.push(Module {
            path,
            parent: Some(parent),
            file,
            children: BTreeMap::new(),
            items: BTreeSet::new(),
            uses: Vec::new(),
            refs: Vec::new(),
        });
        self.modules[parent].children.insert(name, child);
        let items = match (&module.content, &parsed) {
            (Some((_, items)), _) => items.as_slice(),
            (None, Some(file)) => file.items.as_slice(),
            (None, None) => &[],
        };
        self.load_items(sources, child, items, &child_dir)
    }
}
