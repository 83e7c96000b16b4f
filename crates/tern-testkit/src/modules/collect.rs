//! What one item says about names: the `use` imports it holds and the paths it refers to, each
//! with its line, still unresolved.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Ident, Item, ItemUse, UseTree};

/// One name brought into a module by `use` (a `use` tree is flattened to one per leaf).
#[derive(Debug, Clone)]
pub(super) struct Use {
    /// The name it binds; `None` for a glob.
    pub name: Option<String>,
    /// The path it imports (for a glob, the path of what is globbed).
    pub path: Vec<String>,
    pub line: usize,
    /// Whether it is visible beyond its module (`pub`, `pub(crate)`, ...).
    pub reexport: bool,
}

/// A path written in code, such as `crate::view::Node::new` or `Node`.
#[derive(Debug, Clone)]
pub(super) struct Ref {
    pub path: Vec<String>,
    pub line: usize,
}

/// The identifier without its `r#`, as a name is written in paths.
pub(super) fn unraw(ident: &Ident) -> String {
    let name = ident.to_string();
    name.strip_prefix("r#").map(str::to_string).unwrap_or(name)
}

/// The name a non-module item defines, if it defines one.
pub(super) fn item_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Macro(i) => i.ident.as_ref()?,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::TraitAlias(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(unraw(ident))
}

/// Flattens a `use` item into one [`Use`] per leaf. A `use ::name` path is another crate's and
/// is left out.
pub(super) fn flatten_use(item: &ItemUse, reexport: bool) -> Vec<Use> {
    let mut uses = Vec::new();
    if item.leading_colon.is_none() {
        flatten(&item.tree, &mut Vec::new(), reexport, &mut uses);
    }
    uses
}

fn flatten(tree: &UseTree, prefix: &mut Vec<String>, reexport: bool, out: &mut Vec<Use>) {
    let mut leaf = |ident: &Ident, name: Option<String>| {
        let mut path = prefix.clone();
        // `use a::b::{self}` imports `a::b` itself.
        if ident != "self" {
            path.push(unraw(ident));
        }
        let name = name.or_else(|| path.last().cloned());
        if !path.is_empty() {
            out.push(Use {
                name,
                path,
                line: ident.span().start().line,
                reexport,
            });
        }
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(unraw(&p.ident));
            flatten(&p.tree, prefix, reexport, out);
            prefix.pop();
        }
        UseTree::Name(n) => leaf(&n.ident, None),
        UseTree::Rename(r) => leaf(&r.ident, Some(unraw(&r.rename))),
        UseTree::Glob(g) => {
            if !prefix.is_empty() {
                out.push(Use {
                    name: None,
                    path: prefix.clone(),
                    line: g.star_token.span.start().line,
                    reexport,
                });
            }
        }
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, reexport, out);
            }
        }
    }
}

/// The `use` imports inside `item` (in function bodies, say) and every path it refers to.
pub(super) fn references(item: &Item) -> (Vec<Use>, Vec<Ref>) {
    let mut collector = Collector::default();
    collector.visit_item(item);
    (collector.uses, collector.refs)
}

#[derive(Default)]
struct Collector {
    uses: Vec<Use>,
    refs: Vec<Ref>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        self.uses.extend(flatten_use(item, false));
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first() {
                self.refs.push(Ref {
                    path: path.segments.iter().map(|s| unraw(&s.ident)).collect(),
                    line: first.ident.span().start().line,
                });
            }
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // A one-segment macro name (`format!`) is in the macro namespace, where no module is.
        if mac.path.segments.len() > 1 {
            self.visit_path(&mac.path);
        }
        scan_tokens(mac.tokens.clone(), &mut self.refs);
    }

    // Attributes name other crates' macros (`derive`, `serde`, `cfg`) or hold doc text; and a
    // `pub(in path)` names where an item is visible, not something it uses.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}
}

/// A token of a macro's input as far as paths are concerned.
enum Token {
    Ident(Ident),
    /// `::`
    PathSep,
    Other,
}

/// Finds the paths in a macro's unparsed input: each run `a::b::c` of identifiers joined by
/// `::` that is not itself preceded by `::` (a `::name` path is another crate's).
fn scan_tokens(tokens: TokenStream, refs: &mut Vec<Ref>) {
    let mut flat = Vec::new();
    flatten_tokens(tokens, &mut flat);
    let mut i = 0;
    while i < flat.len() {
        let Token::Ident(first) = &flat[i] else {
            i += 1;
            continue;
        };
        let after_sep = i > 0 && matches!(flat[i - 1], Token::PathSep);
        let mut path = vec![unraw(first)];
        i += 1;
        while let (Some(Token::PathSep), Some(Token::Ident(next))) = (flat.get(i), flat.get(i + 1))
        {
            path.push(unraw(next));
            i += 2;
        }
        if !after_sep {
            let line = first.span().start().line;
            refs.push(Ref { path, line });
        }
    }
}

fn flatten_tokens(tokens: TokenStream, out: &mut Vec<Token>) {
    let mut joint_colon = false;
    for tree in tokens {
        let was_joint_colon = std::mem::take(&mut joint_colon);
        match tree {
            TokenTree::Ident(ident) => out.push(Token::Ident(ident)),
            TokenTree::Punct(p) if p.as_char() == ':' && was_joint_colon => {
                out.pop();
                out.push(Token::PathSep);
            }
            TokenTree::Punct(p) => {
                joint_colon = p.as_char() == ':' && p.spacing() == Spacing::Joint;
                out.push(Token::Other);
            }
            TokenTree::Group(g) => {
                // A group's brackets end any path running into or out of it.
                out.push(Token::Other);
                flatten_tokens(g.stream(), out);
                out.push(Token::Other);
            }
            TokenTree::Literal(_) => out.push(Token::Other),
        }
    }
}
