//! `cargo xtask check-cycles`: finds import cycles between the modules of each crate.
//!
//! Every crate root of the workspace (`crates/*/src/lib.rs`, `main.rs`, `bin/*.rs`, and the
//! same under `xtask/src`) is parsed with `syn`, following `mod` declarations to their files
//! (`foo.rs` or `foo/mod.rs`, children of `foo` in `foo/`) and into inline `mod foo { .. }`
//! blocks. Every path a module names is collected: the leaves of its `use` trees (grouped and
//! nested trees too, so `use crate::{a::b, c}` names both `a::b` and `c`) and the paths inside
//! its code (`crate::store::set_name(..)`, types, patterns, and the tokens of macro calls).
//! Paths starting with `crate::`, `super::` or `self::` are resolved against the module tree,
//! following `use` re-exports (`pub use x::Y` and globs), to the module that holds the item.
//!
//! The rule: a reference from module `F` to module `T` is an edge between the two *siblings*
//! under their deepest common ancestor `P`: the child of `P` that holds `F` depends on the
//! child of `P` that holds `T`. So `crate::pull::fetch` naming `crate::store::x` makes
//! `pull -> store`; `crate::pull::a` naming `crate::pull::b::y` makes `a -> b` inside `pull`.
//! When one module is an ancestor of the other (a module using its own submodules, or a
//! submodule using its parent's items through `super::`) there is no edge: a parent and its
//! children are one unit. A cycle is a strongly connected component of more than one sibling;
//! each is reported with the `file:line` of every reference that forms it.
//!
//! Excluded: items marked `#[cfg(test)]` (test modules may reach anywhere), `pub(in ..)`
//! visibility paths (they grant access, they do not use anything), and intra-doc links.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use crate::project_root;

/// Arguments of `cargo xtask check-cycles`.
#[derive(clap::Args)]
pub struct Args {
    /// Crate directories to check (default: every `crates/*` and `xtask`).
    crates: Vec<PathBuf>,
    /// Also count `#[cfg(test)]` code (not part of the rule; shows what tests tie together).
    #[arg(long)]
    with_tests: bool,
}

/// Checks every crate; prints each cycle and fails if there is any.
pub fn run(args: Args) -> Result<()> {
    let root = project_root();
    let dirs = if args.crates.is_empty() {
        workspace_crates(&root)?
    } else {
        args.crates
            .iter()
            .map(|d| {
                if d.is_absolute() {
                    d.clone()
                } else {
                    root.join(d)
                }
            })
            .collect()
    };
    let mut cycles = 0;
    for dir in &dirs {
        for crate_root in crate_roots(dir)? {
            let mut found = check_crate(&crate_root, args.with_tests)?;
            for site in found
                .iter_mut()
                .flat_map(|c| c.edges.iter_mut())
                .flat_map(|e| e.sites.iter_mut())
            {
                if let Ok(rel) = site.file.strip_prefix(&root) {
                    site.file = rel.to_path_buf();
                }
            }
            let shown = crate_root.strip_prefix(&root).unwrap_or(&crate_root);
            if found.is_empty() {
                println!("{}: no import cycles", shown.display());
            }
            for cycle in &found {
                println!("{}: {cycle}", shown.display());
            }
            cycles += found.len();
        }
    }
    if cycles > 0 {
        bail!("{cycles} import cycle(s) found (see above); docs/ARCHITECTURE.md, \"Module rules\"");
    }
    Ok(())
}

/// The crate directories of the workspace: `crates/*` and `xtask`, sorted.
fn workspace_crates(root: &Path) -> Result<Vec<PathBuf>> {
    let crates_dir = root.join("crates");
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&crates_dir)
        .with_context(|| format!("cannot list {}", crates_dir.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot list {}", crates_dir.display()))?
            .path();
        if path.join("Cargo.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    dirs.push(root.join("xtask"));
    Ok(dirs)
}

/// The crate roots of one package directory: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` and
/// `src/bin/*/main.rs` (each its own module tree).
fn crate_roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let src = dir.join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    let bin = src.join("bin");
    if bin.is_dir() {
        let mut bins = Vec::new();
        for entry in
            std::fs::read_dir(&bin).with_context(|| format!("cannot list {}", bin.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", bin.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "rs") && path.is_file() {
                bins.push(path);
            } else if path.join("main.rs").is_file() {
                bins.push(path.join("main.rs"));
            }
        }
        bins.sort();
        roots.extend(bins);
    }
    if roots.is_empty() {
        bail!(
            "{}: no src/lib.rs, src/main.rs or src/bin/*.rs",
            dir.display()
        );
    }
    Ok(roots)
}

/// A module's path from the crate root (`[]` is the root itself).
type ModPath = Vec<String>;

/// Shows a module path as Rust spells it: `crate`, `crate::a::b`.
fn show(path: &[String]) -> String {
    std::iter::once("crate")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("::")
}

/// Where a reference was written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    /// The source file.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
    /// The path as written (`crate::erofs::directory_size`).
    pub text: String,
}

/// One dependency between siblings: `from` (a child of `parent`) names something in `to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The sibling that refers.
    pub from: String,
    /// The sibling referred to.
    pub to: String,
    /// Every reference that makes this edge.
    pub sites: Vec<Site>,
}

/// A strongly connected component of more than one sibling module.
#[derive(Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The common parent of the siblings (`[]`: top-level modules of the crate).
    pub parent: ModPath,
    /// The siblings in the cycle, sorted.
    pub members: Vec<String>,
    /// The edges between members.
    pub edges: Vec<Edge>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = |m: &String| {
            let mut p = self.parent.clone();
            p.push(m.clone());
            show(&p)
        };
        let members: Vec<String> = self.members.iter().map(full).collect();
        writeln!(f, "import cycle between {}", members.join(", "))?;
        for edge in &self.edges {
            writeln!(f, "  {} -> {}:", full(&edge.from), full(&edge.to))?;
            for site in &edge.sites {
                writeln!(
                    f,
                    "    {}:{}: {}",
                    site.file.display(),
                    site.line,
                    site.text
                )?;
            }
        }
        Ok(())
    }
}

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
struct CrateTree {
    modules: BTreeMap<ModPath, ModInfo>,
    refs: Vec<RawRef>,
    /// Paths in code that start with a plain name (`Foo`, `x::y`): they reach another module
    /// only through a glob import of one that re-exports it (see [`CrateTree::through_glob`]).
    bare_refs: Vec<RawRef>,
    /// Whether `#[cfg(test)]` items count (`--with-tests`).
    with_tests: bool,
}

/// Finds the import cycles of the crate whose root file is `root` (`src/lib.rs`, ...);
/// `#[cfg(test)]` items are skipped unless `with_tests`.
pub fn check_crate(root: &Path, with_tests: bool) -> Result<Vec<Cycle>> {
    let mut tree = CrateTree {
        with_tests,
        ..CrateTree::default()
    };
    let src_dir = root.parent().unwrap_or(Path::new("."));
    tree.load_file(Vec::new(), root, src_dir)?;
    Ok(tree.cycles())
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
    fn edges(&self) -> BTreeMap<ModPath, BTreeMap<(String, String), Vec<Site>>> {
        let mut edges: BTreeMap<ModPath, BTreeMap<(String, String), Vec<Site>>> = BTreeMap::new();
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

    /// Every strongly connected component of more than one sibling.
    fn cycles(&self) -> Vec<Cycle> {
        let mut cycles = Vec::new();
        for (parent, level) in self.edges() {
            let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (from, to) in level.keys() {
                next.entry(from).or_default().insert(to);
            }
            let reach = |start: &str| {
                let mut seen = BTreeSet::new();
                let mut stack = vec![start];
                while let Some(n) = stack.pop() {
                    for &m in next.get(n).into_iter().flatten() {
                        if seen.insert(m) {
                            stack.push(m);
                        }
                    }
                }
                seen
            };
            let reaches: BTreeMap<&str, BTreeSet<&str>> =
                next.keys().map(|&n| (n, reach(n))).collect();
            let mut done: BTreeSet<&str> = BTreeSet::new();
            for (&n, from_n) in &reaches {
                if done.contains(n) {
                    continue;
                }
                let members: BTreeSet<&str> = from_n
                    .iter()
                    .copied()
                    .filter(|m| reaches.get(m).is_some_and(|r| r.contains(n)))
                    .chain([n])
                    .collect();
                done.extend(members.iter().copied());
                if members.len() < 2 {
                    continue;
                }
                let edges = level
                    .iter()
                    .filter(|((f, t), _)| {
                        members.contains(f.as_str()) && members.contains(t.as_str())
                    })
                    .map(|((f, t), sites)| {
                        let mut sites = sites.clone();
                        sites.sort();
                        sites.dedup();
                        Edge {
                            from: f.clone(),
                            to: t.clone(),
                            sites,
                        }
                    })
                    .collect();
                cycles.push(Cycle {
                    parent: parent.clone(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                    edges,
                });
            }
        }
        cycles
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path relative to `src/`, contents) into a temp crate; returns the dir.
    fn synthetic(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join("src").join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
        }
        dir
    }

    fn cycles_of(files: &[(&str, &str)]) -> Vec<Cycle> {
        let dir = synthetic(files);
        check_crate(&dir.path().join("src/lib.rs"), false).expect("check")
    }

    /// An edge as `(from, to, [(file relative to src/, line)])`.
    type Shape = (String, String, Vec<(String, usize)>);

    /// The shape of each edge of a cycle.
    fn shape(cycle: &Cycle) -> Vec<Shape> {
        cycle
            .edges
            .iter()
            .map(|e| {
                let sites = e
                    .sites
                    .iter()
                    .map(|s| {
                        let parts: Vec<_> = s.file.iter().collect();
                        let at = parts.iter().rposition(|p| *p == "src").expect("src");
                        let rel: PathBuf = parts[at + 1..].iter().collect();
                        (rel.display().to_string(), s.line)
                    })
                    .collect();
                (e.from.clone(), e.to.clone(), sites)
            })
            .collect()
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn finds_a_two_module_cycle_with_its_sites() {
        let cycles = cycles_of(&[
            ("lib.rs", "mod pull;\nmod store;\nmod other;\n"),
            (
                "pull.rs",
                "//! doc\nuse crate::store::Store;\npub fn fetch() {}\n",
            ),
            (
                "store.rs",
                "pub struct Store;\nfn f() {\n    crate::pull::fetch();\n}\n",
            ),
            ("other.rs", "use crate::store::Store;\n"),
        ]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].parent, Vec::<String>::new());
        assert_eq!(cycles[0].members, vec![s("pull"), s("store")]);
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (s("pull"), s("store"), vec![(s("pull.rs"), 2)]),
                (s("store"), s("pull"), vec![(s("store.rs"), 3)]),
            ]
        );
    }

    #[test]
    fn parent_and_child_are_one_unit() {
        // `a` uses its submodule, the submodule uses its parent (`super::` and `crate::a`),
        // and a grandchild reaches its grandparent: no cycle anywhere.
        let cycles = cycles_of(&[
            (
                "lib.rs",
                "pub mod a;\npub use a::Y;\nfn f() -> Y { a::Y }\n",
            ),
            (
                "a/mod.rs",
                "mod c;\nuse c::X;\npub use self::c::*;\npub struct Y;\nfn g(_: X) {}\n",
            ),
            (
                "a/c.rs",
                "use super::Y;\nuse crate::a::Y as Z;\nmod d { use super::super::Y; }\npub struct X;\n",
            ),
        ]);
        assert_eq!(cycles, vec![]);
    }

    #[test]
    fn grouped_and_nested_use_trees() {
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            (
                "a.rs",
                "use crate::{\n    c::Z,\n    b::{self as bee, inner::{W, *}},\n};\n",
            ),
            (
                "b.rs",
                "pub mod inner { pub struct W; }\nuse crate::c::Z;\n",
            ),
            ("c.rs", "pub struct Z;\nuse crate::{a::*};\n"),
        ]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].members, vec![s("a"), s("b"), s("c")]);
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (
                    s("a"),
                    s("b"),
                    vec![(s("a.rs"), 3), (s("a.rs"), 3), (s("a.rs"), 3)]
                ),
                (s("a"), s("c"), vec![(s("a.rs"), 2)]),
                (s("b"), s("c"), vec![(s("b.rs"), 2)]),
                (s("c"), s("a"), vec![(s("c.rs"), 2)]),
            ]
        );
    }

    #[test]
    fn super_resolves_relative_to_the_module() {
        // `a::deep::inner` reaches `b` through `super::super::b`; `b` reaches `a` through
        // `super::a` (in a top-level module `super` is the crate root).
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "mod deep;\npub fn fa() {}\n"),
            (
                "a/deep.rs",
                "mod inner {\n    use super::super::super::b::fb;\n}\n",
            ),
            ("b.rs", "pub fn fb() {}\nfn g() { super::a::fa() }\n"),
        ]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (s("a"), s("b"), vec![(s("a/deep.rs"), 2)]),
                (s("b"), s("a"), vec![(s("b.rs"), 2)]),
            ]
        );
    }

    #[test]
    fn re_exports_macros_and_nested_siblings() {
        // `b` names `a`'s type through the root's re-export, and `a` names `b` inside a macro;
        // inside `n`, `n::x` and `n::y` use each other (a cycle one level down).
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod n;\npub use a::A;\n"),
            (
                "a.rs",
                "pub struct A;\nfn f() { println!(\"{}\", crate::b::NAME); }\n",
            ),
            (
                "b.rs",
                "pub const NAME: &str = \"b\";\nfn g(_: crate::A) {}\n",
            ),
            ("n/mod.rs", "mod x;\nmod y;\n"),
            ("n/x.rs", "use super::y::Y;\npub struct X;\n"),
            ("n/y.rs", "pub struct Y;\nfn h(_: super::x::X) {}\n"),
        ]);
        assert_eq!(cycles.len(), 2);
        assert_eq!(cycles[0].parent, Vec::<String>::new());
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (s("a"), s("b"), vec![(s("a.rs"), 2)]),
                (s("b"), s("a"), vec![(s("b.rs"), 2)]),
            ]
        );
        assert_eq!(cycles[1].parent, vec![s("n")]);
        assert_eq!(cycles[1].members, vec![s("x"), s("y")]);
    }

    #[test]
    fn names_from_a_glob_import_follow_its_re_exports() {
        // `b` glob-imports the root, which re-exports `a::A`: naming `A` makes `b -> a`.
        // `c` glob-imports the root too but only names a local `A` of its own.
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
            (
                "a.rs",
                "pub struct A;\nuse crate::b::f;\nuse crate::c::g;\n",
            ),
            ("b.rs", "use super::*;\npub fn f() -> A {\n    A\n}\n"),
            ("c.rs", "use super::*;\nstruct A;\npub fn g() -> A { A }\n"),
        ]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].members, vec![s("a"), s("b")]);
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (s("a"), s("b"), vec![(s("a.rs"), 2)]),
                (s("b"), s("a"), vec![(s("b.rs"), 2), (s("b.rs"), 3)]),
            ]
        );
    }

    #[test]
    fn cfg_test_modules_and_visibility_paths_are_ignored() {
        let files = [
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::B;\npub(in crate::a) struct A;\n"),
            (
                "b.rs",
                "pub struct B;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n#[cfg(test)]\nuse crate::a::A;\n",
            ),
        ];
        let cycles = cycles_of(&files);
        assert_eq!(cycles, vec![]);
        // With `--with-tests` the test module's use counts.
        let dir = synthetic(&files);
        let cycles = check_crate(&dir.path().join("src/lib.rs"), true).expect("check");
        assert_eq!(cycles.len(), 1);
        assert_eq!(
            shape(&cycles[0]),
            vec![
                (s("a"), s("b"), vec![(s("a.rs"), 1)]),
                (s("b"), s("a"), vec![(s("b.rs"), 3), (s("b.rs"), 5)]),
            ]
        );
    }

    #[test]
    fn the_workspace_crates_have_no_cycles() {
        // crates/oci is left out while its pull engine is being restructured (pull <-> store).
        let root = project_root();
        for dir in [
            "crates/cfsctl",
            "crates/image",
            "crates/repository",
            "xtask",
        ] {
            for crate_root in crate_roots(&root.join(dir)).expect("crate roots") {
                for with_tests in [false, true] {
                    let cycles = check_crate(&crate_root, with_tests).expect("check");
                    let shown: Vec<String> = cycles.iter().map(ToString::to_string).collect();
                    assert!(
                        cycles.is_empty(),
                        "{}:\n{}",
                        crate_root.display(),
                        shown.join("")
                    );
                }
            }
        }
    }

    #[test]
    fn missing_module_file_is_an_error_naming_it() {
        let dir = synthetic(&[("lib.rs", "mod gone;\n")]);
        let err = check_crate(&dir.path().join("src/lib.rs"), false).expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("mod gone;") && msg.contains("gone.rs"),
            "{msg}"
        );
    }
}
