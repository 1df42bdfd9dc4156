//! The composefs kernel argument: which image the initramfs mounts as the root, in the forms
//! composefs-rs 0.9.4 writes and reads (docs/boot.md, "The kernel argument").
//!
//! - `composefs.digest=v1-sha256-12:<hex>`: the self-describing form, for a version-1 composefs
//!   EROFS (what cfs and composefs-rs write for container images). `v2-…` names a version-2
//!   EROFS. Several may appear (different algorithms); the first whose algorithm is the
//!   repository's is used.
//! - `composefs=<hex>`: the older shorthand, meaning a version-2 EROFS; used only when no
//!   `composefs.digest=` of the repository's algorithm is present.
//! - `?` right after `=` (`composefs.digest=?v1-…`, `composefs=?<hex>`): an insecure
//!   repository; the root is mounted without `verity=require`.
//!
//! The command line is split as the kernel does: on ASCII whitespace, except inside double
//! quotes (which have no escapes). Parsing is apart from I/O: callers pass the text.

use std::fmt;

use cfs_repository::{DigestParseError, HashAlgorithm, ObjectId};

/// The key of the self-describing form.
pub const KEY_DIGEST: &str = "composefs.digest";
/// The key of the shorthand (version-2 EROFS) form.
pub const KEY_SHORT: &str = "composefs";
/// The only fs-verity block size composefs uses, as log2 (4096 bytes).
pub const LG_BLOCK_SIZE: u8 = 12;

/// The composefs EROFS format version a kernel argument names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErofsFormat {
    /// Version 1 (compact inodes, `mkcomposefs --min-version=1`): what cfs writes.
    V1,
    /// Version 2 (composefs-rs's older format).
    V2,
}

/// A parsed (or to be printed) composefs kernel argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComposefsKarg {
    /// Which form: [`ErofsFormat::V1`] prints as `composefs.digest=v1-…`, `V2` as `composefs=`.
    pub format: ErofsFormat,
    /// The composefs ID: the fs-verity digest of the EROFS image.
    pub id: ObjectId,
    /// `?`: the image is mounted without requiring fs-verity.
    pub insecure: bool,
}

impl ComposefsKarg {
    /// The argument for a version-1 image (what `compute-karg` prints for cfs's images).
    pub fn v1(id: ObjectId, insecure: bool) -> Self {
        Self {
            format: ErofsFormat::V1,
            id,
            insecure,
        }
    }
}

impl fmt::Display for ComposefsKarg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = if self.insecure { "?" } else { "" };
        match self.format {
            ErofsFormat::V1 => write!(
                f,
                "{KEY_DIGEST}={q}v1-{}-{LG_BLOCK_SIZE}:{}",
                self.id.algorithm().name(),
                self.id.to_hex()
            ),
            ErofsFormat::V2 => write!(f, "{KEY_SHORT}={q}{}", self.id.to_hex()),
        }
    }
}

/// Why a composefs kernel argument is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KargError {
    /// The command line has neither `composefs.digest=` (of this algorithm) nor `composefs=`.
    #[error(
        "the kernel command line has no composefs argument for a {algorithm} repository \
         (expected composefs.digest=v1-{algorithm}-12:<hex> or composefs=<hex>)"
    )]
    Missing {
        /// The repository's algorithm.
        algorithm: HashAlgorithm,
    },
    /// A `composefs.digest=` value is not `v<N>-<hash>-<lg>:<hex>`.
    #[error("invalid {KEY_DIGEST}={value:?}: {reason}")]
    BadDescriptor {
        /// The value after `=`.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The digest is not hex of the algorithm's length.
    #[error("invalid {key}={value:?}: {source}")]
    BadDigest {
        /// `composefs.digest` or `composefs`.
        key: &'static str,
        /// The value after `=`.
        value: String,
        /// Why the digest did not parse.
        source: DigestParseError,
    },
}

/// Splits a kernel command line into its arguments as the kernel does: at ASCII whitespace
/// outside double quotes (quotes are kept in the arguments; there are no escapes).
pub fn split_cmdline(cmdline: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    cmdline
        .split(move |c: char| {
            if c == '"' {
                quoted = !quoted;
            }
            !quoted && c.is_ascii_whitespace()
        })
        .filter(|arg| !arg.is_empty())
}

/// Finds the composefs argument for a repository of `algorithm` on `cmdline`, as
/// composefs-rs's initramfs does: the first `composefs.digest=` whose hash is `algorithm`
/// (others are skipped; a malformed one is an error), else the first `composefs=`.
pub fn find(cmdline: &str, algorithm: HashAlgorithm) -> Result<ComposefsKarg, KargError> {
    let digest_prefix = format!("{KEY_DIGEST}=");
    for arg in split_cmdline(cmdline) {
        let Some(value) = arg.strip_prefix(&digest_prefix) else {
            continue;
        };
        let (rest, insecure) = strip_insecure(value);
        let (format, hash, hex) =
            parse_descriptor(rest).map_err(|reason| KargError::BadDescriptor {
                value: value.to_owned(),
                reason,
            })?;
        if hash != algorithm {
            continue;
        }
        let id = parse_hex(KEY_DIGEST, value, hex, algorithm)?;
        return Ok(ComposefsKarg {
            format,
            id,
            insecure,
        });
    }
    let short_prefix = format!("{KEY_SHORT}=");
    if let Some(value) = split_cmdline(cmdline).find_map(|arg| arg.strip_prefix(&short_prefix)) {
        let (hex, insecure) = strip_insecure(value);
        let id = parse_hex(KEY_SHORT, value, hex, algorithm)?;
        return Ok(ComposefsKarg {
            format: ErofsFormat::V2,
            id,
            insecure,
        });
    }
    Err(KargError::Missing { algorithm })
}

fn strip_insecure(value: &str) -> (&str, bool) {
    match value.strip_prefix('?') {
        Some(rest) => (rest, true),
        None => (value, false),
    }
}

/// `v1-sha256-12:<hex>` → (V1, sha256, `<hex>`).
fn parse_descriptor(value: &str) -> Result<(ErofsFormat, HashAlgorithm, &str), String> {
    let (descriptor, hex) = value
        .split_once(':')
        .ok_or("expected <version>-<hash>-<lg block size>:<hex>")?;
    let mut parts = descriptor.splitn(3, '-');
    let (Some(version), Some(hash), Some(lg)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "format descriptor {descriptor:?} is not <version>-<hash>-<lg block size>"
        ));
    };
    let format = match version {
        "v1" => ErofsFormat::V1,
        "v2" => ErofsFormat::V2,
        other => return Err(format!("unsupported format version {other:?} (v1 or v2)")),
    };
    let hash: HashAlgorithm = hash.parse().map_err(|e: DigestParseError| e.to_string())?;
    if lg != LG_BLOCK_SIZE.to_string() {
        return Err(format!(
            "unsupported fs-verity block size 2^{lg} (only 2^{LG_BLOCK_SIZE})"
        ));
    }
    Ok((format, hash, hex))
}

/// Bare hex of `algorithm`'s length (no `alg:` prefix); upper case is accepted as
/// composefs-rs does.
fn parse_hex(
    key: &'static str,
    value: &str,
    hex: &str,
    algorithm: HashAlgorithm,
) -> Result<ObjectId, KargError> {
    let bad = |source| KargError::BadDigest {
        key,
        value: value.to_owned(),
        source,
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(DigestParseError::Invalid(hex.to_owned())));
    }
    ObjectId::parse_for(algorithm, &hex.to_ascii_lowercase()).map_err(bad)
}

#[cfg(test)]
mod tests;
