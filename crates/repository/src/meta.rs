//! `meta.json`: the repository's format version, hash algorithm and verity mode, and how it
//! is read (a regular file opened without following a symlink, size-bounded).
//!
//! It also carries the fields composefs-rs 0.9.4 reads to open a repository (`version`, which
//! both formats share, `algorithm`, `features`, `erofs_formats`), so that composefs-rs's
//! `cfsctl` and initramfs can open and mount a cfs repository (docs/repository.md). A
//! meta.json written before those fields were added still opens.

use std::fs::File;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::digest::HashAlgorithm;
use crate::error::{Error, IoContext, Result};
use crate::layout::{self, OpenFileError};

/// The on-disk format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub(crate) const FORMAT_NAME: &str = "cfs-repository";

/// Whether the kernel verifies objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerityMode {
    /// fs-verity is enabled on every object and checked when an object is reused or opened.
    Enforced,
    /// The filesystem cannot do verity (or the user asked not to): names are trusted, and only
    /// fsck re-hashes content.
    Insecure,
}

impl std::fmt::Display for VerityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforced => "enforced",
            Self::Insecure => "insecure",
        })
    }
}

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Always `cfs-repository`.
    pub format: String,
    /// The on-disk format version ([`FORMAT_VERSION`]); also composefs-rs's base repository
    /// version (1 in both).
    pub version: u32,
    /// The hash algorithm of every object name and image ID.
    pub hash: HashAlgorithm,
    /// Whether verity is enforced.
    pub verity: VerityMode,
    /// composefs-rs: the fs-verity algorithm, `fsverity-<hash>-12` (see [`Meta::new`]).
    /// Absent in a meta.json from before composefs-rs compatibility; when present it must
    /// agree with `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// composefs-rs: feature flags (`v1_erofs` read-only-compatible: images are EROFS V1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// composefs-rs: the EROFS format of the repository's images (`{"default": 1}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erofs_formats: Option<ErofsFormats>,
}

/// composefs-rs's feature flags, in its ext4-like three tiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Features {
    /// Features older tools may ignore.
    #[serde(default)]
    pub compatible: Vec<String>,
    /// Features older tools may read but must not write.
    #[serde(default)]
    pub read_only_compatible: Vec<String>,
    /// Features older tools must refuse.
    #[serde(default)]
    pub incompatible: Vec<String>,
}

/// composefs-rs's EROFS format configuration: the version images are written in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErofsFormats {
    /// The format version of new images (cfs writes version 1).
    pub default: u32,
}

/// composefs-rs's feature flag for an EROFS V1 repository.
const V1_EROFS: &str = "v1_erofs";

impl Meta {
    /// The metadata `init` writes: cfs's fields and composefs-rs's.
    pub fn new(hash: HashAlgorithm, verity: VerityMode) -> Self {
        Self {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            hash,
            verity,
            algorithm: Some(composefs_algorithm(hash)),
            features: Some(Features {
                read_only_compatible: vec![V1_EROFS.to_owned()],
                ..Features::default()
            }),
            erofs_formats: Some(ErofsFormats { default: 1 }),
        }
    }
}

/// composefs-rs's name of the fs-verity algorithm: `fsverity-sha256-12` (4 KiB blocks).
pub fn composefs_algorithm(hash: HashAlgorithm) -> String {
    format!("fsverity-{}-12", hash.name())
}

/// How `init` chooses the verity mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitVerity {
    /// Enforce verity; fail if the filesystem cannot do it.
    Require,
    /// Create an insecure repository (verity not used even if available).
    Insecure,
}

/// A composefs-rs `meta.json`: an object with its `version` and `algorithm` and no cfs
/// `format`.
fn is_composefs_rs(bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(v)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return false;
    };
    !v.contains_key("format")
        && v.get("algorithm").is_some_and(serde_json::Value::is_string)
        && v.get("version").is_some_and(serde_json::Value::is_u64)
}

/// Reads and checks `meta.json` (a regular file, opened without following a symlink).
pub(crate) fn read_meta(root: BorrowedFd<'_>, path: &Path) -> Result<Meta> {
    let meta_path = path.join("meta.json");
    let fd = match layout::open_regular(root, "meta.json") {
        Ok(fd) => fd,
        Err(OpenFileError::Errno(Errno::NOENT)) => {
            return Err(Error::NotARepository(path.to_owned()));
        }
        Err(OpenFileError::Errno(e)) => return Err(e).ctx("opening", meta_path),
        Err(OpenFileError::NotRegular(what)) => {
            return Err(Error::NotRegular {
                path: meta_path,
                what,
            });
        }
    };
    let mut meta_bytes = Vec::new();
    // Far more than any meta.json; a bound so a huge file cannot fill memory.
    File::from(fd)
        .take(1 << 20)
        .read_to_end(&mut meta_bytes)
        .ctx("reading", &meta_path)?;
    let meta: Meta = serde_json::from_slice(&meta_bytes).map_err(|e| {
        if is_composefs_rs(&meta_bytes) {
            Error::ComposefsRs(path.to_owned())
        } else {
            Error::BadMeta {
                path: path.to_owned(),
                message: format!("not valid repository metadata: {e}"),
            }
        }
    })?;
    if meta.format != FORMAT_NAME || meta.version != FORMAT_VERSION {
        return Err(Error::BadMeta {
            path: path.to_owned(),
            message: format!(
                "format {:?} version {} is not understood by this cfsctl (it reads {FORMAT_NAME} version {FORMAT_VERSION})",
                meta.format, meta.version
            ),
        });
    }
    if let Some(algorithm) = &meta.algorithm
        && *algorithm != composefs_algorithm(meta.hash)
    {
        return Err(Error::BadMeta {
            path: path.to_owned(),
            message: format!(
                "\"algorithm\": {algorithm:?} disagrees with \"hash\": {:?} (expected {:?})",
                meta.hash.name(),
                composefs_algorithm(meta.hash)
            ),
        });
    }
    if let Some(features) = &meta.features
        && !features.incompatible.is_empty()
    {
        return Err(Error::BadMeta {
            path: path.to_owned(),
            message: format!(
                "incompatible features {:?} are not understood by this cfsctl",
                features.incompatible
            ),
        });
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn read(json: &str) -> Result<Meta> {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("meta.json"), json).expect("write");
        let root = std::fs::File::open(tmp.path()).expect("open");
        read_meta(root.as_fd(), tmp.path())
    }

    #[test]
    fn writes_composefs_rs_fields() {
        let json = serde_json::to_value(Meta::new(HashAlgorithm::Sha256, VerityMode::Insecure))
            .expect("json");
        assert_eq!(json["version"], 1);
        assert_eq!(json["algorithm"], "fsverity-sha256-12");
        assert_eq!(
            json["features"]["read-only-compatible"],
            serde_json::json!(["v1_erofs"])
        );
        assert_eq!(json["erofs_formats"], serde_json::json!({"default": 1}));
        assert_eq!(json["format"], "cfs-repository");
        assert_eq!(json["hash"], "sha256");
    }

    #[test]
    fn old_meta_without_composefs_fields_opens() {
        let meta =
            read(r#"{"format":"cfs-repository","version":1,"hash":"sha512","verity":"insecure"}"#)
                .expect("old meta.json");
        assert_eq!(meta.hash, HashAlgorithm::Sha512);
        assert_eq!(meta.algorithm, None);
    }

    #[test]
    fn refuses_disagreeing_algorithm_and_incompatible_features() {
        let err = read(
            r#"{"format":"cfs-repository","version":1,"hash":"sha256","verity":"insecure","algorithm":"fsverity-sha512-12"}"#,
        )
        .expect_err("algorithm mismatch");
        assert!(err.to_string().contains("disagrees"), "{err}");
        let err = read(
            r#"{"format":"cfs-repository","version":1,"hash":"sha256","verity":"insecure","features":{"incompatible":["x"]}}"#,
        )
        .expect_err("incompatible feature");
        assert!(err.to_string().contains("incompatible features"), "{err}");
    }
}
