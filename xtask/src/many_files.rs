//! `cargo xtask bench --many-files N`: peak memory with many files (docs/performance.md,
//! "Memory with many files"). Builds one uncompressed layer of N empty files (half in one
//! flat directory, half spread over 300 directories three levels down) as an OCI layout,
//! pulls it into an insecure repository, and runs `oci pull`, `oci create-image`,
//! `oci mount` (as root; checked to show N files, then unmounted), `fsck` and `gc` under
//! GNU time, printing wall time and peak RSS (`%M`, the child's `ru_maxrss`) with the load
//! average before and after. Everything lives in a temporary directory, removed at the end
//! unless `--keep`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

use crate::{ensure_tools, project_root, run_command};

/// Directories the nested half of the files is spread over.
const NESTED_DIRS: usize = 300;

/// Runs the measurement with `files` files; `cfsctl` is built in release mode first unless
/// given. Prints a markdown table.
pub fn run(files: usize, cfsctl: Option<PathBuf>, keep: bool) -> Result<()> {
    ensure!(files > 0, "--many-files needs at least one file");
    ensure_tools(&[("time", "time")])?;
    let bin = match cfsctl {
        Some(b) => fs::canonicalize(&b).with_context(|| format!("{}", b.display()))?,
        None => build_cfsctl()?,
    };
    let work = std::env::temp_dir().join(format!("cfs-many-files.{}", std::process::id()));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = measure(files, &bin, &work);
    // Never leave the mount behind, whatever failed.
    let mnt = work.join("mnt");
    if mnt.exists() {
        let _ = Command::new("umount")
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status();
    }
    if keep {
        eprintln!("kept {}", work.display());
    } else {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    print!("{}", result?);
    Ok(())
}

/// `cargo build --release -p cfsctl`; the path of the binary it made.
fn build_cfsctl() -> Result<PathBuf> {
    let root = project_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_command(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "cfsctl",
    ]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join("release/cfsctl"))
}

fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "?".into())
}

fn measure(files: usize, bin: &Path, work: &Path) -> Result<String> {
    write_layout(files, &work.join("oci"))?;
    let repo = work.join("repo");
    let cfs = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--repo").arg(&repo).args(args);
        c
    };
    run_command(cfs(&["init", "--insecure"]).stdout(std::process::Stdio::null()))?;
    let mut out = String::new();
    writeln!(out, "files: {files}; load average before: {}", load())?;
    writeln!(out, "| command | wall s | peak RSS MiB |")?;
    writeln!(out, "|---|---|---|")?;
    let source = format!("oci:{}:many", work.join("oci").display());
    let mut row = |name: &str, args: &[&str]| -> Result<()> {
        let (wall, rss_kib) = timed(cfs(args), work)?;
        writeln!(out, "| `{name}` | {wall:.2} | {} |", rss_kib / 1024)?;
        Ok(())
    };
    row(
        "oci pull oci:DIR:many",
        &["oci", "pull", "--quiet", &source, "many"],
    )?;
    row("oci create-image many", &["oci", "create-image", "many"])?;
    if rustix::process::geteuid().is_root() {
        let mnt = work.join("mnt");
        fs::create_dir(&mnt)?;
        let mnt_s = mnt.to_str().context("non-UTF-8 temporary directory")?;
        row("oci mount many DIR", &["oci", "mount", "many", mnt_s])?;
        let shown = count_files(&mnt)?;
        run_command(Command::new("umount").arg(&mnt))?;
        ensure!(shown == files, "the mount shows {shown} files, not {files}");
    } else {
        eprintln!("not root: `oci mount` not measured");
    }
    row("fsck", &["fsck"])?;
    row("gc", &["gc"])?;
    writeln!(out, "load average after: {}", load())?;
    Ok(out)
}

/// Runs `cmd` under GNU time; (wall seconds, peak RSS in KiB). Fails if it fails.
fn timed(cmd: Command, work: &Path) -> Result<(f64, u64)> {
    let time_out = work.join(".time");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%e %M", "-o"])
        .arg(&time_out)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(std::process::Stdio::null());
    let output = timed
        .output()
        .with_context(|| format!("running {:?}", cmd.get_args()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = fs::read_to_string(&time_out).context("reading GNU time's output")?;
    let last = text.lines().last().unwrap_or_default();
    let mut f = last.split_whitespace();
    let (Some(wall), Some(rss), None) = (f.next(), f.next(), f.next()) else {
        bail!("unexpected GNU time output {text:?}");
    };
    Ok((wall.parse()?, rss.parse()?))
}

fn count_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// One ustar header (mode, mtime 1700000000, owned by 0:0) for an empty entry.
fn header(out: &mut Vec<u8>, name: &str, dir: bool) -> Result<()> {
    let mut h = [0u8; 512];
    let name = name.as_bytes();
    ensure!(name.len() <= 100, "tar name too long");
    h[..name.len()].copy_from_slice(name);
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, if dir { 0o755 } else { 0o644 });
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, 0);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h, 148, 7, sum);
    h[155] = b' ';
    out.extend_from_slice(&h);
    Ok(())
}

/// The layer tar: `flat/` with half the files, `nested/a/b/dNNN/` with the rest.
fn layer(files: usize) -> Result<Vec<u8>> {
    let mut t = Vec::with_capacity((files + NESTED_DIRS + 4) * 512);
    let flat = files / 2;
    header(&mut t, "flat/", true)?;
    for i in 0..flat {
        header(&mut t, &format!("flat/file-{i:07}"), false)?;
    }
    for d in 0..NESTED_DIRS {
        header(&mut t, &format!("nested/a/b/d{d:03}/"), true)?;
    }
    for i in 0..files - flat {
        header(
            &mut t,
            &format!("nested/a/b/d{:03}/file-{i:07}", i % NESTED_DIRS),
            false,
        )?;
    }
    t.resize(t.len() + 1024, 0);
    Ok(t)
}

/// Writes `data` as a blob of the layout; its descriptor's digest and size.
fn blob(oci: &Path, data: &[u8]) -> Result<(String, usize)> {
    let hex = hex::encode(Sha256::digest(data));
    fs::write(oci.join("blobs/sha256").join(&hex), data)?;
    Ok((format!("sha256:{hex}"), data.len()))
}

/// An OCI layout at `oci` with the image `many`: one uncompressed layer of `files` files.
fn write_layout(files: usize, oci: &Path) -> Result<()> {
    fs::create_dir_all(oci.join("blobs/sha256"))?;
    let layer = layer(files)?;
    let (ldigest, lsize) = blob(oci, &layer)?;
    drop(layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [ldigest]},
    });
    let (cdigest, csize) = blob(oci, &serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cdigest, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": ldigest, "size": lsize}],
    });
    let (mdigest, msize) = blob(oci, &serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": mdigest, "size": msize,
                       "annotations": {"org.opencontainers.image.ref.name": "many"}}],
    });
    fs::write(oci.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(oci.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}
