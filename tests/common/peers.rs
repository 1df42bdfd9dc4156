//! Finds (or installs) the composefs-rs `cfsctl` that cfs's image IDs are compared with
//! (docs/image.md, "The canonical tree"): composefs-rs 0.9.4, crates.io `composefs-ctl`.
//!
//! Include it with `#[path = "common/peers.rs"] mod peers;`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The composefs-rs version cfs's canonical-tree rules match.
pub const COMPOSEFS_RS_VERSION: &str = "0.9.4";

/// composefs-rs's `cfsctl`: `$CFS_COMPOSEFS_RS` if set, else
/// `target/peers/composefs-rs-0.9.4/bin/cfsctl`, installed there with
/// `cargo install --locked composefs-ctl --version 0.9.4 --root ...` when absent (once; later
/// runs find it). `None` (the test skips, saying why) when cargo cannot install it; under `CI`
/// that is a failure instead.
pub fn composefs_rs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CFS_COMPOSEFS_RS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CFS_COMPOSEFS_RS={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let root = target.join(format!("peers/composefs-rs-{COMPOSEFS_RS_VERSION}"));
    let bin = root.join("bin/cfsctl");
    if bin.is_file() {
        return Some(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", "composefs-ctl", "--version"])
        .arg(COMPOSEFS_RS_VERSION)
        .arg("--root")
        .arg(&root)
        // Its own temporary build directory, not the (possibly locked) one of this test run.
        .env_remove("CARGO_TARGET_DIR")
        .status();
    let why = match status {
        Ok(s) if s.success() && bin.is_file() => return Some(bin),
        Ok(s) => format!("cargo install composefs-ctl {COMPOSEFS_RS_VERSION} failed ({s})"),
        Err(e) => format!("cannot run cargo install: {e}"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("composefs-rs cfsctl is needed and CI is set: {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipping: {why}");
    None
}
