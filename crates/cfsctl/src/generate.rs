//! Files generated from the command-line definition itself: shell completions
//! (`cfsctl completions bash|zsh|fish`) and man pages (`cfsctl generate-man DIR`, hidden; what
//! `cargo xtask man` commits under docs/man/).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Command;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: Command, shell: clap_complete::Shell) -> Result<()> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the completion script")
}

/// Writes one man page per command and subcommand into `dir`: `cfsctl.1`,
/// `cfsctl-oci.1`, `cfsctl-oci-pull.1`, …; hidden commands get none.
pub fn man_pages(cmd: Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd;
    cmd.build();
    write_tree(&cmd, cmd.get_name(), dir)
}

fn write_tree(cmd: &Command, name: &str, dir: &Path) -> Result<()> {
    let page = cmd.clone().name(name.to_owned());
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_tree(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
