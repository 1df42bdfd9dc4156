//! `meta.json`: the repository's format version, hash algorithm and verity mode, and how it
//! is read (a regular file opened without following a symlink, size-bounded).

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
    /// The on-disk format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// The hash algorithm of every object name and image ID.
    pub hash: HashAlgorithm,
    /// Whether verity is enforced.
    pub verity: VerityMode,
}

/// How `init` chooses the verity mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitVerity {
    /// Enforce verity; fail if the filesystem cannot do it.
    Require,
    /// Create an insecure repository (verity not used even if available).
    Insecure,
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
    let meta: Meta = serde_json::from_slice(&meta_bytes).map_err(|e| Error::BadMeta {
        path: path.to_owned(),
        message: format!("not valid repository metadata: {e}"),
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
    Ok(meta)
}
