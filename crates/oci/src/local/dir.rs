//! `dir:DIR`: skopeo's directory transport. `manifest.json` is the top-level manifest (a list
//! when copied with `--all`), the instances of a list are `<hex>.manifest.json`, blobs are
//! `<hex>`. The `version` file, when there, must be `Directory Transport Version: 1.1`, or
//! 1.0 (containers/image before 2018), whose blobs were `<hex>.tar`; containers/image reads a
//! directory without one too, and so do we. Signatures (`signature-N`) are not read.
//! Every name is one component opened in DIR with `O_NOFOLLOW` ([`super::fsutil`]).

use std::path::PathBuf;

use super::fsutil::{Root, read_whole};
use super::layout::{open_exact, read_small};
use super::{BlobInner, LocalError, MAX_MANIFEST};

/// The `version` file of the current layout.
const VERSION_1_1: &[u8] = b"Directory Transport Version: 1.1\n";
/// The `version` file of the layout before containers/image 1.1 (blobs named `<hex>.tar`).
const VERSION_1_0: &[u8] = b"Directory Transport Version: 1.0\n";

/// An opened `dir:` source.
pub(crate) struct DirSource {
    root: Root,
    /// Blobs are `<hex>.tar` (version 1.0) rather than `<hex>`.
    tar_suffix: bool,
}

impl DirSource {
    pub(crate) fn open(details: &str) -> Result<Self, LocalError> {
        if details.is_empty() {
            return Err(LocalError::BadReference {
                details: details.to_owned(),
                why: "no directory".into(),
            });
        }
        let root = Root::open(std::path::Path::new(details))?;
        let tar_suffix = match root.open_file("version")? {
            None => false,
            Some((file, len)) => {
                let path = root.display("version");
                let v = read_whole(file, len, 4096, &path)?;
                if v == VERSION_1_1 {
                    false
                } else if v == VERSION_1_0 {
                    true
                } else {
                    return Err(LocalError::BadLayout {
                        path,
                        why: format!(
                            "unknown directory transport version {:?} (expected {:?} or {:?})",
                            String::from_utf8_lossy(&v),
                            String::from_utf8_lossy(VERSION_1_1),
                            String::from_utf8_lossy(VERSION_1_0)
                        ),
                    });
                }
            }
        };
        Ok(Self { root, tar_suffix })
    }

    fn blob_name(&self, hex: &str) -> String {
        if self.tar_suffix {
            format!("{hex}.tar")
        } else {
            hex.to_owned()
        }
    }

    pub(crate) fn blob_location(&self, hex: &str) -> PathBuf {
        self.root.display(&self.blob_name(hex))
    }

    pub(crate) fn top_manifest(&self) -> Result<Vec<u8>, LocalError> {
        read_small(&self.root, "manifest.json")
    }

    pub(crate) fn read_instance_manifest(
        &self,
        hex: &str,
        max: u64,
    ) -> Result<Vec<u8>, LocalError> {
        let name = format!("{hex}.manifest.json");
        let path = self.root.display(&name);
        let (file, len) = self
            .root
            .open_file(&name)?
            .ok_or(LocalError::Missing { path: path.clone() })?;
        read_whole(file, len, max.min(MAX_MANIFEST), &path)
    }

    pub(crate) fn read_blob(&self, hex: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        let name = self.blob_name(hex);
        match self.root.open_file(&name)? {
            Some((file, len)) => read_whole(file, len, max, &self.root.display(&name)),
            // The instances of a list are stored as manifests, not blobs.
            None => match self.read_instance_manifest(hex, max) {
                Err(LocalError::Missing { .. }) => Err(LocalError::Missing {
                    path: self.root.display(&name),
                }),
                other => other,
            },
        }
    }

    pub(crate) fn open_blob(&self, hex: &str, size: u64) -> Result<BlobInner, LocalError> {
        open_exact(&self.root, &self.blob_name(hex), size)
    }
}
