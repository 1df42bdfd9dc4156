//! The deployment's state directory, `<repo's parent>/state/deploy/<composefs id hex>/` with
//! `etc/upper`, `etc/work` (the `/etc` overlay) and `var` (bound on `/var`): one path
//! computation for `prepare-boot`, which creates it, and `setup-root`, which mounts from it
//! (docs/boot.md, "The state directory"). The layout is composefs-rs 0.9.4's.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use cfs_repository::ObjectId;

use crate::error::BootError;

/// `<repo_parent>/state/deploy/<id hex>`: the state of the deployment booting image `id`
/// (the hex is the composefs argument's digest, without the algorithm).
pub fn deploy_dir(repo_parent: &Path, id: &ObjectId) -> PathBuf {
    repo_parent.join("state/deploy").join(id.to_hex())
}

/// The subdirectories of a deployment's state directory, in creation order.
pub const SUBDIRS: [&str; 4] = ["etc", "etc/upper", "etc/work", "var"];

/// Creates [`deploy_dir`] and its [`SUBDIRS`] (existing ones are kept with their contents:
/// they are the deployment's `/etc` changes and `/var`), each new directory's parent fsynced.
/// The deployment directory itself is 0700 (it holds copies of `/etc` files such as
/// `shadow`); `etc/upper` and `var` are 0755, as the `/etc` and `/var` they become. A path
/// that exists but is not a directory (or is a symlink) is refused.
pub fn create_deploy_dirs(repo_parent: &Path, id: &ObjectId) -> Result<PathBuf, BootError> {
    let dir = deploy_dir(repo_parent, id);
    for (path, mode) in [
        (repo_parent.join("state"), 0o755),
        (repo_parent.join("state/deploy"), 0o755),
        (dir.clone(), 0o700),
    ] {
        mkdir(&path, mode)?;
    }
    for sub in SUBDIRS {
        mkdir(&dir.join(sub), 0o755)?;
    }
    Ok(dir)
}

/// Makes one directory (or accepts an existing real directory) and fsyncs its parent when new.
fn mkdir(path: &Path, mode: u32) -> Result<(), BootError> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            let parent = path.parent().unwrap_or(Path::new("/"));
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(BootError::io("syncing", parent))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(path).map_err(BootError::io("checking", path))?;
            if meta.is_dir() {
                Ok(())
            } else {
                Err(BootError::Io {
                    what: "creating the state directory",
                    path: path.to_owned(),
                    source: std::io::Error::other(
                        "exists and is not a directory (or is a symlink)",
                    ),
                })
            }
        }
        Err(e) => Err(BootError::io("creating", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cfs_repository::{FsVerityHasher, HashAlgorithm};

    #[test]
    fn the_state_directory_is_composefs_rs_layout_and_refuses_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let id = FsVerityHasher::digest(HashAlgorithm::Sha256, b"image");
        let dir = create_deploy_dirs(tmp.path(), &id).expect("create");
        assert_eq!(
            dir,
            tmp.path().join(format!("state/deploy/{}", id.to_hex()))
        );
        for sub in SUBDIRS {
            assert!(dir.join(sub).is_dir(), "{sub}");
        }
        std::fs::write(dir.join("var/marker"), b"kept").expect("marker");
        create_deploy_dirs(tmp.path(), &id).expect("again");
        assert_eq!(
            std::fs::read(dir.join("var/marker")).expect("read"),
            b"kept"
        );

        let other = FsVerityHasher::digest(HashAlgorithm::Sha256, b"other");
        let odir = deploy_dir(tmp.path(), &other);
        std::os::unix::fs::symlink("/tmp", &odir).expect("symlink");
        assert!(create_deploy_dirs(tmp.path(), &other).is_err());
    }
}
