//! `cfsctl mount IMAGE MOUNTPOINT`: mounts a stored image read-only (EROFS + overlayfs over the
//! repository's objects; see `cfs_image::mount`). `cfsctl mounts`: lists the mounted images
//! (see `cfs_image::mounts`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use cfs_repository::Repository;

/// Mounts image `name` (image ID or image ref) at `mountpoint`.
pub fn run(repo: &Repository, name: &str, mountpoint: &Path) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("mounting needs root (CAP_SYS_ADMIN)");
    }
    let meta = std::fs::metadata(mountpoint)
        .with_context(|| format!("mount point {}", mountpoint.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    cfs_image::mount::mount_image(repo, name, mountpoint)
        .with_context(|| format!("mounting image {name} at {}", mountpoint.display()))?;
    Ok(())
}

/// Prints each mounted image: composefs ID, mount point, and the mount namespace where it is
/// not ours. Images that are not in this repository are marked so.
pub fn list(repo: &Repository, json: bool) -> Result<()> {
    let mounted = cfs_image::mounts::mounted_images(repo.algorithm())?;
    if json {
        let mut list = Vec::new();
        for m in &mounted {
            list.push(serde_json::json!({
                "composefs_id": m.image.to_hex(),
                "mountpoint": m.mountpoint,
                "namespace": m.namespace,
                "in_repository": repo.has_object(&m.image)?,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for m in mounted {
        let mut line = format!("{}\t{}", m.image, m.mountpoint.display());
        if let Some(ns) = &m.namespace {
            line.push_str(&format!("\t(namespace {ns})"));
        }
        if !repo.has_object(&m.image)? {
            line.push_str("\t(not in this repository)");
        }
        println!("{line}");
    }
    Ok(())
}
