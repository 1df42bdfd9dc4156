//! The module tree of one crate for `check-cycles`: files parsed with `syn`, `mod`
//! declarations followed, every path a module names collected, and each resolved (through
//! re-exports and globs) to the module that holds it, giving the edges between siblings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use super::{ModPath, Site};

/// The edges between siblings, keyed by their parent, then `(from, to)`, with their sites.
pub(super) type Levels = BTreeMap<ModPath, BTreeMap<(String, String), Vec<Site>>>;

/// What one module holds, as far as path resolution needs it.
#[derive(Default)]
struct ModInfo {
    /// Child modules (file or inline).
    children: BTreeSet<String>,
    /// Names `use`d here (`use a::b::C` and `use a::B as C`: `C`), with the raw path.
    aliases: BTreeMap<String, Vec<String>>,
    /// Raw paths of glob imports (`use a::b::*`).
    globs: Vec<Vec<String>>,
    /// Names of the items defined here (functions, types, traits, consts, statics, macros).
    items: BTreeSet<String>,
}

/// A path as written in module `from`, before resolution.
struct RawRef {
    from: ModPath,
    segments: Vec<String>,
    site: Site,
}

/// A crate's module tree and every path its modules name.
#[derive(Default)]
pub(super) struct CrateTree {
    modules: BTreeMap<ModPath, ModInfo>,
    refs: Vec<RawRef>,
    /// Paths in code that start with a plain name (`Foo`, `x::y`): they reach another module
    /// only through a glob import of one that re-exports it (see [`CrateTree::through_glob`]).
    bare_refs: Vec<RawRef>,
    /// Whether `#[cfg(test)]` items count (`--with-tests`).
    with_tests: bool,
}

/// True for `#[cfg(test)]`.
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| match &a.meta {
        syn::Meta::List(list) => list.path.is_ident("cfg") && list.tokens.to_string() == "test",
        _ => false,
    })
}

/// The attributes of an item, where it has them.
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The name an item defines in its module's namespace, if any.
fn item_name(item: &syn::Item) -> Option<String> {
    use syn::Item;
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
    Some(ident.to_string())
}

/// How deep re-export chains are followed (they are short; the bound only stops a `use` loop).
const MAX_DEPTH: usize = 32;

/// The 1-based line of a span (needs proc-macro2's `span-locations`).
fn line_of(span: Span) -> usize {
    span.start().line
}

/// One leaf of a `use` tree: its full path (a glob ends in `*`), the name it brings into
/// scope (`None` for a glob), and the line of its last segment.
struct UseLeaf {
    segments: Vec<String>,
    name: Option<String>,
    line: usize,
}

/// Flattens a `use` tree into its leaves (`use a::{b, c::*}`: `a::b`, `a::c::*`).
fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut segments = prefix.clone();
            let bound = if name == "self" {
                prefix.last().cloned()
            } else {
                segments.push(name.clone());
                Some(name)
            };
            out.push(UseLeaf {
                segments,
                name: bound,
                line: line_of(n.ident.span()),
            });
        }
        syn::UseTree::Rename(r) => {
            let mut segments = prefix.clone();
            if r.ident != "self" {
                segments.push(r.ident.to_string());
            }
            out.push(UseLeaf {
                segments,
                name: Some(r.rename.to_string()),
                line: line_of(r.ident.span()),
            });
        }
        syn::UseTree::Glob(g) => {
            let mut segments = prefix.clone();
            segments.push("*".to_string());
            out.push(UseLeaf {
                segments,
                name: None,
                line: line_of(g.star_token.span),
            });
        }
        syn::UseTree::Group(g) => {
            for item in &g.items {
                use_leaves(item, prefix, out);
            }
        }
    }
}

impl CrateTree {
    /// Loads the crate whose root file is `root`; `#[cfg(test)]` items count if `with_tests`.
    pub(super) fn load(root: &Path, with_tests: bool) -> Result<Self> {
        let mut tree = CrateTree {
            with_tests,
            ..CrateTree::default()
        };
        let src_dir = root.parent().unwrap_or(Path::new("."));
        tree.load_file(Vec::new(), root, src_dir)?;
        Ok(tree)
    }

    /// Parses `file` as module `path` (whose child files live in `child_dir`) and loads its
    /// submodules.
    fn load_file(&mut self, path: ModPath, file: &Path, child_dir: &Path) -> Result<()> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed =
            syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
        self.load_items(path, &parsed.items, file, child_dir)
    }

    /// Loads the items of module `path`, written in `file`.
    fn load_items(
        &mut self,
        path: ModPath,
        items: &[syn::Item],
        file: &Path,
        child_dir: &Path,
    ) -> Result<()> {
        self.modules.entry(path.clone()).or_default();
        for item in items {
            if !self.with_tests && is_cfg_test(item_attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    self.module(&path).children.insert(name.clone());
                    let mut child = path.clone();
                    child.push(name.clone());
                    let dir = child_dir.join(&name);
                    if let Some((_, inner)) = &m.content {
                        self.load_items(child, inner, file, &dir)?;
                    } else {
                        if m.attrs.iter().any(|a| a.path().is_ident("path")) {
                            bail!(
                                "{}:{}: #[path] on `mod {name}` is not supported by check-cycles",
                                file.display(),
                                line_of(m.ident.span())
                            );
                        }
                        let flat = child_dir.join(format!("{name}.rs"));
                        let nested = dir.join("mod.rs");
                        let child_file = if flat.is_file() {
                            flat
                        } else if nested.is_file() {
                            nested
                        } else {
                            bail!(
                                "{}:{}: `mod {name};` has neither {} nor {}",
                                file.display(),
                                line_of(m.ident.span()),
                                flat.display(),
                                nested.display()
                            );
                        };
                        self.load_file(child, &child_file, &dir)?;
                    }
                }
                syn::Item::Use(u) => {
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                    for leaf in leaves {
                        let info = self.module(&path);
                        match &leaf.name {
                            Some(name) => {
                                info.aliases.insert(name.clone(), leaf.segments.clone());
                            }
                            None => {
                                let mut source = leaf.segments.clone();
                                source.pop();
                                info.globs.push(source);
                            }
                        }
                        self.push_use_ref(&path, leaf, file);
                    }
                }
                other => {
                    if let Some(name) = item_name(other) {
                        self.module(&path).items.insert(name);
                    }
                    let mut collector = RefCollector {
                        tree: self,
                        from: &path,
                        file,
                    };
                    collector.visit_item(other);
                }
            }
        }
        Ok(())
    }

    /// The module at `path` (created empty if new).
    fn module(&mut self, path: &ModPath) -> &mut ModInfo {
        self.modules.entry(path.clone()).or_default()
    }

    /// Records a `use` leaf as a reference (a glob names the module it reads from).
    fn push_use_ref(&mut self, from: &ModPath, leaf: UseLeaf, file: &Path) {
        let mut segments = leaf.segments;
        let text = segments.join("::");
        if segments.last().is_some_and(|s| s == "*") {
            segments.pop();
        }
        self.refs.push(RawRef {
            from: from.clone(),
            segments,
            site: Site {
                file: file.to_path_buf(),
                line: leaf.line,
                text,
            },
        });
    }

    /// Turns a path written in module `from` into a path from the crate root, or `None` for
    /// a path outside the crate (another crate, a local name, a primitive).
    fn absolute(&self, from: &[String], segments: &[String], depth: usize) -> Option<Vec<String>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let first = segments.first()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => from.to_vec(),
            "super" => {
                let mut b = from.to_vec();
                b.pop()?;
                b
            }
            name => {
                // A relative path: a child module, or a name this module `use`s.
                let info = self.modules.get(from)?;
                if info.children.contains(name) {
                    let mut b = from.to_vec();
                    b.push(name.to_string());
                    b
                } else if let Some(target) = info.aliases.get(name) {
                    if target.first().is_some_and(|s| s == name) {
                        return None; // `use foo;` of an extern crate
                    }
                    let mut abs = self.absolute(from, target, depth + 1)?;
                    abs.extend(segments[1..].iter().cloned());
                    return Some(abs);
                } else {
                    return None;
                }
            }
        };
        for seg in &segments[1..] {
            if seg == "super" {
                base.pop()?;
            } else if seg != "self" {
                base.push(seg.clone());
            }
        }
        Some(base)
    }

    /// The module holding the item at absolute path `segments`, following re-exports.
    fn resolve(&self, segments: &[String], depth: usize) -> ModPath {
        let mut segs = segments.to_vec();
        'restart: for _ in 0..MAX_DEPTH {
            if depth > MAX_DEPTH {
                break;
            }
            let mut module: ModPath = Vec::new();
            for (i, seg) in segs.iter().enumerate() {
                let Some(info) = self.modules.get(&module) else {
                    return module;
                };
                if info.children.contains(seg) {
                    module.push(seg.clone());
                    continue;
                }
                if info.items.contains(seg) {
                    return module;
                }
                if let Some(target) = info.aliases.get(seg) {
                    if let Some(mut abs) = self.absolute(&module, target, 0)
                        && abs != segs[..=i]
                    {
                        abs.extend(segs[i + 1..].iter().cloned());
                        segs = abs;
                        continue 'restart;
                    }
                    return module;
                }
                for glob in &info.globs {
                    let Some(source) = self.absolute(&module, glob, 0) else {
                        continue;
                    };
                    let holder = self.resolve(&source, depth + 1);
                    let Some(hinfo) = self.modules.get(&holder) else {
                        continue;
                    };
                    if holder != module
                        && (hinfo.children.contains(seg)
                            || hinfo.items.contains(seg)
                            || hinfo.aliases.contains_key(seg))
                    {
                        let mut abs = holder.clone();
                        abs.extend(segs[i..].iter().cloned());
                        segs = abs;
                        continue 'restart;
                    }
                }
                return module;
            }
            return module;
        }
        Vec::new()
    }

    /// A plain path (`Foo`, `x::y`) written in module `from` as a path from the crate root,
    /// when its first name comes from a glob import (`use super::*`, `use crate::a::*`), or
    /// `None` (a local name, an extern crate, a name `use`d by name: that `use` is the ref).
    fn through_glob(&self, from: &ModPath, segments: &[String]) -> Option<Vec<String>> {
        let info = self.modules.get(from)?;
        let first = segments.first()?;
        if info.children.contains(first)
            || info.items.contains(first)
            || info.aliases.contains_key(first)
        {
            return None;
        }
        for glob in &info.globs {
            let Some(source) = self.absolute(from, glob, 0) else {
                continue;
            };
            let holder = self.resolve(&source, 0);
            let Some(hinfo) = self.modules.get(&holder) else {
                continue;
            };
            if hinfo.children.contains(first)
                || hinfo.items.contains(first)
                || hinfo.aliases.contains_key(first)
            {
                let mut abs = holder;
                abs.extend(segments.iter().cloned());
                return Some(abs);
            }
        }
        None
    }

    /// The edges between siblings, keyed by their parent, then `(from, to)`.
    pub(super) fn edges(&self) -> Levels {
        let mut edges = Levels::new();
        let resolved = self
            .refs
            .iter()
            .map(|r| (r, self.absolute(&r.from, &r.segments, 0)))
            .chain(
                self.bare_refs
                    .iter()
                    .map(|r| (r, self.through_glob(&r.from, &r.segments))),
            );
        for (r, abs) in resolved {
            let Some(abs) = abs else {
                continue;
            };
            let target = self.resolve(&abs, 0);
            let common = r
                .from
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == r.from.len() || common == target.len() {
                continue; // ancestor and descendant: one unit
            }
            edges
                .entry(r.from[..common].to_vec())
                .or_default()
                .entry((r.from[common].clone(), target[common].clone()))
                .or_default()
                .push(r.site.clone());
        }
        edges
    }
}

/// Collects the paths an item's code names (not its `mod`/`use` items, handled by the loader).
struct RefCollector<'a> {
    tree: &'a mut CrateTree,
    from: &'a ModPath,
    file: &'a Path,
}

impl RefCollector<'_> {
    fn push(&mut self, segments: Vec<String>, span: Span) {
        self.tree.refs.push(RawRef {
            from: self.from.clone(),
            site: Site {
                file: self.file.to_path_buf(),
                line: line_of(span),
                text: segments.join("::"),
            },
            segments,
        });
    }

    /// Finds `crate::a::b` / `super::a` / `self::a` in a macro's unparsed tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => self.scan_tokens(g.stream()),
                TokenTree::Ident(id)
                    if (id == "crate" || id == "super" || id == "self")
                        && !follows_colons(&tokens, i) =>
                {
                    let span = id.span();
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (tokens.get(j), tokens.get(j + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        let Some(TokenTree::Ident(next)) = tokens.get(j + 2) else {
                            break;
                        };
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.push(segments, span);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// True when `tokens[i]` comes right after `::` (so it is not the start of a path).
fn follows_colons(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2
        && matches!((&tokens[i - 2], &tokens[i - 1]),
            (TokenTree::Punct(a), TokenTree::Punct(b)) if a.as_char() == ':' && b.as_char() == ':')
}

impl<'ast> Visit<'ast> for RefCollector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if self.tree.with_tests || !is_cfg_test(item_attrs(item)) {
            visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // A module inside a function body: not part of the file tree, not followed.
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        // A `use` inside a function body: a reference, but no alias visible to other modules.
        if !self.tree.with_tests && is_cfg_test(&u.attrs) {
            return;
        }
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        for leaf in leaves {
            self.tree.push_use_ref(self.from, leaf, self.file);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some(first) = path.segments.first()
            && path.leading_colon.is_none()
        {
            let head = first.ident.to_string();
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if matches!(head.as_str(), "crate" | "super" | "self") {
                if segments.len() > 1 {
                    self.push(segments, first.ident.span());
                }
            } else {
                self.tree.bare_refs.push(RawRef {
                    from: self.from.clone(),
                    site: Site {
                        file: self.file.to_path_buf(),
                        line: line_of(first.ident.span()),
                        text: segments.join("::"),
                    },
                    segments,
                });
            }
        }
        visit::visit_path(self, path);
    }

    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {
        // `pub(in crate::a)` grants visibility; it does not use `a`.
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}
