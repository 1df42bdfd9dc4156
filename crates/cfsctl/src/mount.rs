//! `cfsctl mount IMAGE MOUNTPOINT`: mounts a stored image read-only (EROFS + overlayfs over the
//! repository's objects; see `cfs_image::mount`).

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
