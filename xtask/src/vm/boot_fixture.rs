//! The bootable Debian fixture of `cargo xtask vm-test --boot`: an OCI image layout (tag
//! `boot`, uncompressed tar layers made by GNU tar) that a guest pulls and deploys.
//!
//! 1. `base`: the Debian debootstrap root of `cargo xtask fixtures` (the very same tar).
//! 2. `kernel`: the Debian cloud kernel package as bootable images carry it: its modules and
//!    `vmlinuz` under `/usr/lib/modules/<kver>/`, and its `/boot` files where the package puts
//!    them (the boot transformation empties `/boot`, which the guest checks).
//! 3. `boot`: `/usr/lib/modules/<kver>/initramfs.img` (busybox, a stripped `cfsctl` with its
//!    libraries, the modules the root needs, and the `/init` of `boot_guest.rs`), the test
//!    program as `/usr/sbin/init`, a data file whose sha256 the test program checks, and an
//!    empty `/sysroot`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Cpio, Kernel, add_program, boot_guest, read, reproducible_tar, write_layout};
use crate::run_command;

/// The tag of the image in the layout.
pub(crate) const TAG: &str = "boot";
/// Where the data file the test program checks lives in the image.
pub(crate) const DATA_PATH: &str = "usr/share/cfs-boot-test/data";

/// What the host needs to know about the fixture it built.
pub(crate) struct Fixture {
    /// The layout directory (`<root>/layout`).
    pub(crate) layout: PathBuf,
}

/// Builds the fixture under `root` (which becomes the OCI disk's content).
pub(crate) fn build(
    root: &Path,
    kernel: &Kernel,
    cfsctl: &Path,
    busybox: &Path,
    base_tar: &Path,
) -> Result<Fixture> {
    let layout = root.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let stage = root.join("stage");
    let kver = kernel_version(&kernel.root)?;

    let mut layers = Vec::new();
    layers.push(put_file(&blobs, base_tar)?);

    // The kernel layer.
    let k = stage.join("kernel");
    let modules = k.join("usr/lib/modules").join(&kver);
    fs::create_dir_all(modules.parent().context("parent")?)?;
    run_command(
        Command::new("cp")
            .arg("-a")
            .arg(kernel.root.join("lib/modules").join(&kver))
            .arg(&modules),
    )?;
    let vmlinuz = kernel.root.join(format!("boot/vmlinuz-{kver}"));
    fs::copy(&vmlinuz, modules.join("vmlinuz"))
        .with_context(|| format!("copying {}", vmlinuz.display()))?;
    run_command(
        Command::new("cp")
            .arg("-a")
            .arg(kernel.root.join("boot"))
            .arg(k.join("boot")),
    )?;
    layers.push(put_tar(&blobs, &k)?);

    // The boot layer.
    let b = stage.join("boot");
    let modules = b.join("usr/lib/modules").join(&kver);
    fs::create_dir_all(&modules)?;
    fs::write(
        modules.join("initramfs.img"),
        initramfs(kernel, cfsctl, busybox, &stage)?,
    )?;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let data_sha = hex::encode(Sha256::digest(&data));
    let data_file = b.join(DATA_PATH);
    fs::create_dir_all(data_file.parent().context("parent")?)?;
    fs::write(&data_file, &data)?;
    // A copy beside the layout: the tampering guest finds the file's object by its digest.
    fs::write(root.join("data"), &data)?;
    fs::create_dir_all(b.join("usr/sbin"))?;
    let init = boot_guest::TEST_PROGRAM.replace("@DATA_SHA256@", &data_sha);
    fs::write(b.join("usr/sbin/init"), init)?;
    run_command(
        Command::new("chmod")
            .arg("0755")
            .arg(b.join("usr/sbin/init")),
    )?;
    fs::create_dir_all(b.join("sysroot"))?;
    layers.push(put_tar(&blobs, &b)?);
    fs::remove_dir_all(&stage)?;

    write_layout(
        &layout,
        &layers,
        TAG,
        json!({"Cmd": ["/usr/sbin/init"], "Labels": {"containers.bootc": "1"}}),
        Some("2025-05-20T00:00:00Z"),
    )?;
    Ok(Fixture { layout })
}

/// The single `lib/modules/<kver>` of the kernel package.
fn kernel_version(root: &Path) -> Result<String> {
    let mut found = Vec::new();
    for e in fs::read_dir(root.join("lib/modules"))? {
        found.push(e?.file_name().to_string_lossy().into_owned());
    }
    ensure!(
        found.len() == 1,
        "expected one lib/modules/<kver> in the kernel package, found {found:?}"
    );
    Ok(found.remove(0))
}

/// The image's `initramfs.img`: an uncompressed newc cpio.
fn initramfs(kernel: &Kernel, cfsctl: &Path, busybox: &Path, stage: &Path) -> Result<Vec<u8>> {
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "usr", "usr/bin", "proc", "sys", "dev", "tmp", "run", "sysroot", "modules", "etc",
    ] {
        cpio.dir(dir);
    }
    cpio.file("init", boot_guest::INITRAMFS_INIT.as_bytes(), 0o755);
    cpio.file("bin/busybox", &read(busybox)?, 0o755);
    // The dev-profile binary carries ~100 MB of debug info the initramfs does not need.
    fs::create_dir_all(stage)?;
    let stripped = stage.join("cfsctl");
    run_command(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(cfsctl),
    )?;
    add_program(&mut cpio, &stripped, "usr/bin/cfsctl")?;
    let mut order = String::new();
    for (name, bytes) in &kernel.modules {
        cpio.file(&format!("modules/{name}.ko"), bytes, 0o644);
        order.push_str(&format!("{name}.ko\n"));
    }
    cpio.file("modules/order", order.as_bytes(), 0o644);
    Ok(cpio.finish())
}

/// Copies (or hardlinks) a file into the blobs; returns its sha256 hex and size.
fn put_file(blobs: &Path, file: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h)?;
    let hex = hex::encode(h.finalize());
    let dest = blobs.join(&hex);
    if !dest.exists() && fs::hard_link(file, &dest).is_err() {
        fs::copy(file, &dest)?;
    }
    Ok((hex, size))
}

/// A GNU tar of `dir` (sorted, numeric root ownership, fixed mtimes) as a blob.
fn put_tar(blobs: &Path, dir: &Path) -> Result<(String, u64)> {
    let tar = reproducible_tar(dir)?;
    let hex = hex::encode(Sha256::digest(&tar));
    fs::write(blobs.join(&hex), &tar)?;
    Ok((hex, tar.len() as u64))
}
