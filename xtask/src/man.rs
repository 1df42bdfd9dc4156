//! `cargo xtask man [--check]`: the man pages of every cfsctl command, generated from its clap
//! definition (`cfsctl generate-man`, clap_mangen) into docs/man/, which is committed. With
//! `--check` (a CI step) nothing is written: it fails if docs/man/ differs from what the code
//! generates, naming the pages that are stale, missing or left over.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{project_root, run_command};

/// Command line of `cargo xtask man`.
#[derive(clap::Args)]
pub struct Args {
    /// Only compare docs/man/ with freshly generated pages; fail if they differ.
    #[arg(long)]
    check: bool,
}

/// Generates (or checks) docs/man/.
pub fn run(args: Args) -> Result<()> {
    let cfsctl = crate::vm::build_cfsctl(false)?;
    let dest = project_root().join("docs/man");
    let fresh_dir = project_root().join("target/man");
    if fresh_dir.exists() {
        fs::remove_dir_all(&fresh_dir)
            .with_context(|| format!("removing {}", fresh_dir.display()))?;
    }
    run_command(Command::new(&cfsctl).arg("generate-man").arg(&fresh_dir))?;
    if args.check {
        let problems = compare(&fresh_dir, &dest)?;
        if !problems.is_empty() {
            bail!(
                "docs/man/ is out of date ({}); run `cargo xtask man` and commit it",
                problems.join(", ")
            );
        }
        println!("docs/man/ is up to date");
        return Ok(());
    }
    if dest.exists() {
        fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    fs::create_dir_all(&dest)?;
    for name in pages(&fresh_dir)? {
        fs::copy(fresh_dir.join(&name), dest.join(&name))
            .with_context(|| format!("writing docs/man/{name}"))?;
    }
    println!("wrote {}", dest.display());
    Ok(())
}

fn pages(dir: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") {
            out.insert(name);
        }
    }
    Ok(out)
}

/// What differs between the generated pages and the committed ones.
fn compare(fresh: &Path, committed: &Path) -> Result<Vec<String>> {
    let (new, old) = (pages(fresh)?, pages(committed)?);
    let mut problems = Vec::new();
    for name in new.union(&old) {
        match (new.contains(name), old.contains(name)) {
            (true, false) => problems.push(format!("{name} missing")),
            (false, true) => problems.push(format!("{name} left over")),
            _ => {
                if fs::read(fresh.join(name))? != fs::read(committed.join(name))? {
                    problems.push(format!("{name} stale"));
                }
            }
        }
    }
    Ok(problems)
}
