//! The deployment's state directory: where the writable parts of a booted image live on the
//! physical root (`<root>/state/deploy/<image id hex>/{etc/upper,etc/work,var}`, the layout
//! composefs-rs 0.9.4 uses). `prepare-boot` creates it; `setup-root` mounts from it.

use std::path::{Path, PathBuf};

use cfs_repository::ObjectId;

/// `root/state/deploy/<hex of id>`: the state directory of the deployment of image `id` on
/// the physical root `root` (the repository's parent directory).
pub fn deploy_dir(root: &Path, id: &ObjectId) -> PathBuf {
    root.join("state/deploy").join(id.to_hex())
}

#[cfg(test)]
mod tests {
    use cfs_repository::HashAlgorithm;

    use super::*;

    #[test]
    fn names_the_deployment_by_bare_hex() {
        let id = ObjectId::from_bytes(HashAlgorithm::Sha256, &[0x1f; 32]).expect("id");
        assert_eq!(
            deploy_dir(Path::new("/sysroot"), &id),
            PathBuf::from(format!("/sysroot/state/deploy/{}", "1f".repeat(32)))
        );
    }
}
