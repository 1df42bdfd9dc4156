//! Helpers shared by the end-to-end tests in `tests/`, which run `cfsctl` against real external
//! tools (`fsverity`, `mkcomposefs`, `skopeo`, ...).
//!
//! Use it from a test crate with `mod common;`. Each test crate uses its own subset of the
//! helpers, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod snapshot;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where `name` is found on `PATH` as an executable file, if anywhere.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the external tool `name` is installed, for a test that needs it.
///
/// Returns `true` if it is on `PATH`. If it is not: when the environment variable `CI` is set
/// (to anything), the tool is part of the test environment, so this panics and the test fails;
/// otherwise it prints `skipping: NAME not installed` to stderr (uncaptured, so it shows in a
/// plain `cargo test` run) and returns `false`, and the test should return early:
///
/// ```ignore
/// if !common::require_tool("fsverity") {
///     return;
/// }
/// ```
pub fn require_tool(name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed (not found on PATH), and CI is set: install it");
    }
    // Straight to the process's stderr rather than `eprintln!`, which the test harness captures
    // and hides for passing tests: a skipped test should say so in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "skipping: {name} not installed");
    false
}

/// The corpus `name` (`composefs-dumps`, `tar-corpus`) in `shared/`, the directory beside this
/// checkout, for a test that needs it.
///
/// Returns its path if it is there. If not: when the environment variable `CI` is set, this
/// panics and the test fails; otherwise it prints `skipping: ...` to stderr (uncaptured, as
/// [`require_tool`] does) and returns `None`, and the test should return early.
pub fn shared_corpus(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "the corpus {name} is missing at {} and CI is set",
            dir.display()
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipping: corpus {name} not found at {}",
        dir.display()
    );
    None
}

/// Runs `cfsctl --repo REPO ARGS...` (the binary under test), with stdin closed and `CFS_REPO`
/// unset so only `--repo` decides the repository.
pub fn cfsctl<S: AsRef<OsStr>>(repo: &Path, args: &[S]) -> Output {
    cfsctl_binary(Path::new(env!("CARGO_BIN_EXE_cfsctl")), repo, args)
}

/// [`cfsctl`] with another copy of the binary (`bin`), e.g. one a test checked and copied.
pub fn cfsctl_binary<S: AsRef<OsStr>>(bin: &Path, repo: &Path, args: &[S]) -> Output {
    Command::new(bin)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("CFS_REPO")
        .stdin(Stdio::null())
        .output()
        .expect("run cfsctl")
}

/// Asserts that a `cfsctl` run succeeded (showing its output if not); returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cfsctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the tests run as root; if not, says that `what` is skipped and why (uncaptured,
/// so it shows in a plain `cargo test`).
pub fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipping {what}: needs root (run the tests as root to include it)"
    );
    false
}

/// A mount point, unmounted (lazily) when dropped, so a failing assertion leaves no mount
/// behind.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// The Debian fixtures (`cargo xtask fixtures`): their directory (`$CFS_FIXTURES`, else
/// `target/fixtures`) and `fixtures.json`; `None` (skip, with a message) when they are not
/// built, and a panic under `CI`, where they must be.
pub fn fixtures() -> Option<(PathBuf, serde_json::Value)> {
    let root = std::env::var_os("CFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    let Ok(json) = std::fs::read(root.join("fixtures.json")) else {
        if std::env::var_os("CI").is_some() {
            panic!("{} missing: run cargo xtask fixtures", root.display());
        }
        let _ = writeln!(
            std::io::stderr(),
            "skipping: no fixtures in {} (cargo xtask fixtures)",
            root.display()
        );
        return None;
    };
    Some((root, serde_json::from_slice(&json).expect("fixtures.json")))
}

/// Runs skopeo with `args`, panicking with its message if it fails; its stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
