//! End-to-end check that `cfsctl digest` prints exactly what `fsverity digest` (fsverity-utils,
//! Debian package `fsverity`) prints, for SHA-256 and SHA-512: on files at the block-size edges,
//! on a 2 GiB sparse file and on every regular file under /usr/bin.
//!
//! Both tools get the same argument lists and their standard outputs must be equal byte for
//! byte. Files are passed many per invocation so that /usr/bin takes a few processes, not
//! thousands. A failing batch is retried once, because other work on the machine (a package
//! install) may change /usr/bin between the two tools' runs. Without `fsverity` on `PATH` the tests skip, or fail when `CI` is set (see
//! [`common::require_tool`]).

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files per invocation of each tool.
const BATCH: usize = 256;

/// The `cfsctl` flag and the `fsverity` flag selecting each algorithm, or none for the default
/// (SHA-256 for both tools, so the defaults are compared too).
const ALGORITHMS: [(&str, &[&str], &[&str]); 2] = [
    ("sha256 (default)", &[], &[]),
    ("sha512", &["--hash", "sha512"], &["--hash-alg=sha512"]),
];

/// Runs `command` and returns its standard output, or why it failed.
fn stdout_of(mut command: Command) -> Result<Vec<u8>, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// Runs both tools on `batch` and compares their outputs.
fn compare_batch(
    name: &str,
    cfsctl_args: &[&str],
    fsverity_args: &[&str],
    batch: &[PathBuf],
) -> Result<(), String> {
    let mut fsverity = Command::new("fsverity");
    fsverity
        .arg("digest")
        .args(fsverity_args)
        .arg("--")
        .args(batch);
    let mut cfsctl = Command::new(env!("CARGO_BIN_EXE_cfsctl"));
    cfsctl.arg("digest").args(cfsctl_args).arg("--").args(batch);
    let want = stdout_of(fsverity)?;
    let got = stdout_of(cfsctl)?;

    // One line per file from the reference tool, so that equal outputs cannot be equally empty
    // or truncated.
    let lines = want
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    if lines != batch.len() {
        return Err(format!(
            "fsverity printed {lines} lines for {} files:\n{}",
            batch.len(),
            String::from_utf8_lossy(&want)
        ));
    }
    if got == want {
        return Ok(());
    }
    let want = String::from_utf8_lossy(&want);
    let got = String::from_utf8_lossy(&got);
    let first_difference = want
        .lines()
        .zip(got.lines())
        .find(|(w, g)| w != g)
        .map_or_else(
            || "(one output is a prefix of the other)".to_owned(),
            |(w, g)| format!("fsverity: {w}\ncfsctl:   {g}"),
        );
    Err(format!(
        "{name}: cfsctl digest differs from fsverity digest on {} files ({} vs {} lines); \
         first difference:\n{first_difference}",
        batch.len(),
        got.lines().count(),
        want.lines().count(),
    ))
}

/// Asserts that `cfsctl digest` and `fsverity digest` print the same for `files`, with both
/// algorithms.
///
/// A batch that fails is tried once more, with the files that are still regular files: a
/// package being installed while the test runs can replace or remove files under /usr/bin
/// between the two tools' runs. A wrong digest from cfsctl is wrong both times.
fn assert_same_digests(files: &[PathBuf]) {
    assert!(!files.is_empty(), "nothing to compare");
    for (name, cfsctl_args, fsverity_args) in ALGORITHMS {
        for batch in files.chunks(BATCH) {
            let Err(first) = compare_batch(name, cfsctl_args, fsverity_args, batch) else {
                continue;
            };
            let _ = writeln!(
                std::io::stderr(),
                "retrying a batch once, in case files changed underneath: {first}"
            );
            let still: Vec<PathBuf> = batch
                .iter()
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
                .cloned()
                .collect();
            if still.is_empty() {
                continue;
            }
            if let Err(second) = compare_batch(name, cfsctl_args, fsverity_args, &still) {
                panic!("{second}");
            }
        }
    }
}

/// Writes `len` bytes of a non-repeating pattern to `path`.
fn write_pattern(path: &Path, len: usize) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 12)) as u8)
        .collect();
    std::fs::write(path, data).expect("write test file");
}

#[test]
fn block_size_edges() {
    if !common::require_tool("fsverity") {
        return;
    }
    let dir = tempfile::tempdir().expect("create temporary directory");
    let files: Vec<PathBuf> = [0, 1, 4095, 4096, 4097, (1 << 20) + 1]
        .into_iter()
        .map(|len| {
            let path = dir.path().join(format!("{len}-bytes"));
            write_pattern(&path, len);
            path
        })
        .collect();
    assert_same_digests(&files);
}

/// File names are printed as their raw bytes, as `fsverity` prints them, even when they are not
/// UTF-8.
#[test]
fn non_utf8_file_name() {
    use std::os::unix::ffi::OsStrExt;
    if !common::require_tool("fsverity") {
        return;
    }
    let dir = tempfile::tempdir().expect("create temporary directory");
    let path = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"name-\xff-not-utf8"));
    write_pattern(&path, 100);
    assert_same_digests(&[path]);
}

#[test]
fn sparse_2_gib() {
    if !common::require_tool("fsverity") {
        return;
    }
    let dir = tempfile::tempdir().expect("create temporary directory");
    let path = dir.path().join("sparse");
    let mut file = std::fs::File::create(&path).expect("create sparse file");
    // Mostly holes, with a little data in the middle so the tree is not all zero blocks.
    file.seek(SeekFrom::Start(1 << 30))
        .expect("seek into sparse file");
    file.write_all(b"data in the middle of a hole")
        .expect("write into sparse file");
    file.set_len(2 << 30).expect("extend sparse file to 2 GiB");
    drop(file);
    assert_same_digests(&[path]);
}

/// Every path under `dir` that is, or is a symlink to, a regular file (both tools open paths
/// following symlinks). Symlinks to directories are not descended into.
fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("read directory entry").path();
        let Ok(lstat) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if lstat.is_dir() {
            regular_files(&path, out);
        } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push(path);
        }
    }
}

#[test]
fn every_file_in_usr_bin() {
    if !common::require_tool("fsverity") {
        return;
    }
    let mut files = Vec::new();
    regular_files(Path::new("/usr/bin"), &mut files);
    files.sort();
    assert!(
        files.len() > 100,
        "only {} regular files under /usr/bin",
        files.len()
    );
    assert_same_digests(&files);
}
