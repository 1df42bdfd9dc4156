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

use crate::project_root;
use tree::{CrateTree, Levels};

mod tree;

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

/// Finds the import cycles of the crate whose root file is `root` (`src/lib.rs`, ...);
/// `#[cfg(test)]` items are skipped unless `with_tests`.
pub fn check_crate(root: &Path, with_tests: bool) -> Result<Vec<Cycle>> {
    Ok(cycles(CrateTree::load(root, with_tests)?.edges()))
}

/// Every strongly connected component of more than one sibling.
fn cycles(levels: Levels) -> Vec<Cycle> {
    let mut cycles = Vec::new();
    for (parent, level) in levels {
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
        let reaches: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&n| (n, reach(n))).collect();
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
                .filter(|((f, t), _)| members.contains(f.as_str()) && members.contains(t.as_str()))
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

#[cfg(test)]
mod tests;
