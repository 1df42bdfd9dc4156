//! `cargo xtask demo`: the main job on built-in sample data. Installs what it needs, builds
//! cfsctl, makes a small OCI image from `xtask/sample/rootfs`, pulls it into a fresh repository,
//! lists it, and shows a file from it (through a verified composefs mount when run as root and
//! the mount works, else re-created from the stored layer).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::json;

use crate::fixtures::{
    Blob, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, sha256_file, tar_directory, write_json_blob,
};
use crate::{command_output, ensure_tools, project_root, run_command};

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct Args {}

const TAG: &str = "sample";

/// Builds the sample OCI layout in `out` from `rootfs`; returns the layer's diff_id.
fn build_layout(rootfs: &Path, out: &Path) -> Result<String> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
    let tar = out.join("layer.tar");
    tar_directory(rootfs, &tar)?;
    let (diff_id, _) = sha256_file(&tar)?;
    run_command(Command::new("gzip").args(["-n", "-9"]).arg(&tar))?;
    let gz = out.join("layer.tar.gz");
    let (digest, size) = sha256_file(&gz)?;
    fs::rename(&gz, blobs.join(&digest)).context("cannot move the layer blob")?;
    let layer = Blob {
        digest: format!("sha256:{digest}"),
        size,
    };
    let config = write_json_blob(
        &blobs,
        &json!({
            "architecture": oci_architecture(),
            "os": "linux",
            "created": "2025-05-20T00:00:00Z",
            "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
            "history": [{ "created": "2025-05-20T00:00:00Z", "created_by": "cargo xtask demo" }],
        }),
    )?;
    let manifest = write_json_blob(
        &blobs,
        &json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(MEDIA_CONFIG),
            "layers": [layer.descriptor("application/vnd.oci.image.layer.v1.tar+gzip")],
        }),
    )?;
    let mut desc = manifest.descriptor(MEDIA_MANIFEST);
    desc["annotations"] = json!({ "org.opencontainers.image.ref.name": TAG });
    let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [desc] });
    fs::write(out.join("index.json"), serde_json::to_vec_pretty(&index)?)
        .context("cannot write index.json")?;
    fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .context("cannot write oci-layout")?;
    Ok(diff_id)
}

fn cfsctl(bin: &Path, repo: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--repo").arg(repo);
    c
}

/// Runs the demo.
pub fn run(_args: Args) -> Result<()> {
    ensure_tools(&[("skopeo", "skopeo"), ("tar", "tar"), ("gzip", "gzip")])?;
    let root = project_root();
    println!("==> building cfsctl");
    run_command(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--release", "-p", "cfsctl"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/cfsctl");
    let work = root.join("target/demo");
    let layout = work.join("oci");
    let repo = work.join("repo");

    println!(
        "==> making a sample OCI image from xtask/sample/rootfs in {}",
        layout.display()
    );
    let diff_id = build_layout(&root.join("xtask/sample/rootfs"), &layout)?;

    println!("==> a fresh repository in {}", repo.display());
    if repo.exists() {
        fs::remove_dir_all(&repo).with_context(|| format!("cannot remove {}", repo.display()))?;
    }
    let enforced = cfsctl(&bin, &repo)
        .arg("init")
        .output()
        .context("running cfsctl init")?;
    if enforced.status.success() {
        print!("{}", String::from_utf8_lossy(&enforced.stdout));
    } else {
        println!("(this filesystem has no fs-verity: using an insecure repository)");
        run_command(cfsctl(&bin, &repo).args(["init", "--insecure"]))?;
    }

    let image = format!("oci:{}:{TAG}", layout.display());
    println!("==> cfsctl oci pull {image} {TAG}");
    run_command(cfsctl(&bin, &repo).args(["oci", "pull", &image, TAG]))?;
    println!("==> cfsctl oci images");
    run_command(cfsctl(&bin, &repo).args(["oci", "images"]))?;

    println!("==> a file from the image: /hello.txt");
    if !show_mounted(&bin, &repo, &work)? {
        let tar = command_output(cfsctl(&bin, &repo).args(["oci", "layer", &diff_id]))?;
        let tar_path = work.join("layer.out.tar");
        fs::write(&tar_path, tar)
            .with_context(|| format!("cannot write {}", tar_path.display()))?;
        let file = command_output(
            Command::new("tar")
                .arg("-xOf")
                .arg(&tar_path)
                .arg("hello.txt"),
        )?;
        print!("(from the stored layer) {}", String::from_utf8_lossy(&file));
    }
    println!("==> cfsctl fsck");
    run_command(cfsctl(&bin, &repo).arg("fsck"))?;
    Ok(())
}

/// Mounts the image and prints /hello.txt from the mount; `false` if mounting is not possible
/// here (not root, or the mount commands are missing).
fn show_mounted(bin: &Path, repo: &Path, work: &Path) -> Result<bool> {
    if !rustix::process::geteuid().is_root() {
        return Ok(false);
    }
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt).with_context(|| format!("cannot create {}", mnt.display()))?;
    let status = cfsctl(bin, repo)
        .args(["oci", "mount", TAG])
        .arg(&mnt)
        .status()
        .context("running cfsctl oci mount")?;
    if !status.success() {
        println!("(mounting is not available: showing the file from the stored layer)");
        return Ok(false);
    }
    let text = fs::read_to_string(mnt.join("hello.txt"));
    print!(
        "(from the mounted image) {}",
        text.context("reading hello.txt from the mount")?
    );
    println!("==> cfsctl images (the composefs image, its name, where it is mounted)");
    let listed = run_command(cfsctl(bin, repo).arg("images"));
    run_command(Command::new("umount").arg(&mnt))?;
    listed?;
    Ok(true)
}

/// The OCI name of the host's architecture.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
