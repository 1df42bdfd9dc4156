//! Peer implementations the benchmark and the comparison tests run cfs against: today
//! composefs-rs's `cfsctl` 0.9.4 (crate `composefs-ctl`), installed on demand with
//! `cargo install --locked` into a cache directory, `<peers>/composefs-rs-0.9.4`, where
//! `<peers>` is `$CFS_PEERS` or else `<workspace>/target/peers`.
//!
//! `cargo xtask peers` installs it if missing and prints the binary's path (`--no-install`:
//! only look), so tests outside xtask can find it the same way; [`composefs_rs`] is the
//! function behind it.
//!
//! How composefs-rs 0.9.4's `cfsctl` is driven (read from its source): the repository is
//! `--repo DIR`, made by `cfsctl --repo DIR init [--insecure] [--algorithm fsverity-sha256-12]`
//! (its default algorithm is sha512; `--insecure` makes a repository whose objects the kernel
//! does not verify, the only kind possible on a filesystem or kernel without fs-verity). It
//! records that in the repository's meta.json, so later commands need no flag. `cfsctl --repo
//! DIR oci pull REF [NAME]` hands every reference, `oci:` layouts included, to skopeo through
//! containers-image-proxy (only `containers-storage:` has a native path); so a plain-http
//! registry must be declared insecure in a registries.conf that skopeo reads
//! (`CONTAINERS_REGISTRIES_CONF`), as its command line has no TLS flag.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{command_output, project_root, run_command};

/// The composefs-rs release compared against.
pub const COMPOSEFS_RS_VERSION: &str = "0.9.4";

/// Arguments of `cargo xtask peers`.
#[derive(clap::Args)]
pub struct Args {
    /// Only look for the peers; fail (naming the install command) when one is missing.
    #[arg(long)]
    no_install: bool,
}

/// Whether [`composefs_rs`] may run `cargo install`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Install {
    /// Install when absent (a few minutes of compiling, once).
    IfMissing,
    /// Never: fail if absent, with the command that would install it.
    Never,
}

/// `cargo xtask peers`: ensures the peers and prints where they are.
pub fn run(args: Args) -> Result<()> {
    let install = if args.no_install {
        Install::Never
    } else {
        Install::IfMissing
    };
    println!("{}", composefs_rs(install)?.display());
    Ok(())
}

/// The cache directory of the peers: `$CFS_PEERS`, else `<workspace>/target/peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("CFS_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target/peers"))
}

/// The install root of composefs-rs's cfsctl.
pub fn composefs_rs_root() -> PathBuf {
    peers_dir().join(format!("composefs-rs-{COMPOSEFS_RS_VERSION}"))
}

/// The path of composefs-rs's `cfsctl` [`COMPOSEFS_RS_VERSION`], installing it first if it is
/// absent and `install` allows. Fails, saying how to install it, when it is absent and may not
/// be installed, when the install fails, or when the binary there is another version.
pub fn composefs_rs(install: Install) -> Result<PathBuf> {
    let root = composefs_rs_root();
    let bin = root.join("bin/cfsctl");
    let command = install_command(&root);
    if !bin.is_file() {
        if install == Install::Never {
            bail!(
                "composefs-rs cfsctl {COMPOSEFS_RS_VERSION} is not installed at {} \
                 (install it with `{}`, or `cargo xtask peers`; $CFS_PEERS moves the cache)",
                bin.display(),
                crate::display_command(&command)
            );
        }
        println!(
            "installing composefs-rs cfsctl {COMPOSEFS_RS_VERSION} into {} (compiles for a few \
             minutes, once)",
            root.display()
        );
        let mut command = command;
        run_command(&mut command).with_context(|| {
            format!(
                "cannot install composefs-rs cfsctl {COMPOSEFS_RS_VERSION} (crates.io reachable?)"
            )
        })?;
    }
    check_version(&bin)?;
    Ok(bin)
}

/// `cargo install --locked composefs-ctl --version V --root ROOT`.
fn install_command(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["install", "--locked", "composefs-ctl", "--version"])
        .arg(COMPOSEFS_RS_VERSION)
        .arg("--root")
        .arg(root);
    c
}

/// Fails unless `bin --version` names [`COMPOSEFS_RS_VERSION`].
fn check_version(bin: &Path) -> Result<()> {
    let out = command_output(Command::new(bin).arg("--version"))
        .with_context(|| format!("{} does not run", bin.display()))?;
    let text = String::from_utf8_lossy(&out);
    let found = text.split_whitespace().any(|w| w == COMPOSEFS_RS_VERSION);
    if !found {
        bail!(
            "{} says {:?}, not version {COMPOSEFS_RS_VERSION}: remove {} to reinstall",
            bin.display(),
            text.trim(),
            composefs_rs_root().display()
        );
    }
    Ok(())
}
