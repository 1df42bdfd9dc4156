//! composefs EROFS images: a writer byte-compatible with C `mkcomposefs`, and a bounded reader.
//!
//! - [`write`] lays a [`FileSystem`] out as libcomposefs does (format version 0 or 1, see
//!   [`FormatOptions`]); the same tree always gives the same bytes.
//! - [`read`] turns an image back into a tree (undoing the overlayfs rewrite), and
//!   [`referenced_objects`] lists the objects an image's files redirect to. Both check every
//!   offset and never panic or loop on corrupt input.
//!
//! The layout is described in `docs/image.md`.

pub mod format;
mod reader;
mod writer;

pub use reader::{ReadError, read, referenced_objects};
pub use writer::directory_size;

use crate::tree::FileSystem;

/// Which composefs format versions the writer may produce.
///
/// Version 0 is the original format; version 1 (composefs 1.0.3) additionally marks
/// directories that hold escaped whiteouts with `opaque=x` xattrs. Like mkcomposefs, the
/// writer starts at `min_version` and moves up to 1 only if the tree has whiteouts and
/// `max_version` allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatOptions {
    /// The lowest version to write.
    pub min_version: u32,
    /// The highest version to write (raised to `min_version` if lower).
    pub max_version: u32,
}

impl Default for FormatOptions {
    /// mkcomposefs's defaults: min 0, max 1.
    fn default() -> Self {
        Self {
            min_version: 0,
            max_version: 1,
        }
    }
}

impl FormatOptions {
    /// Exactly version `v` (`--min-version=v --max-version=v`).
    pub fn exactly(v: u32) -> Self {
        Self {
            min_version: v,
            max_version: v,
        }
    }
}

/// Why an image could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Only versions 0 and 1 exist.
    #[error("unsupported composefs format version {0} (supported: 0 and 1)")]
    UnsupportedVersion(u32),
    /// An external file needs more than 1024 chunks (about 9 PB).
    #[error("{0}: file of {1} bytes is too large for a composefs image")]
    FileTooLarge(String, u64),
    /// Inline content above 5000 bytes.
    #[error("{0}: inline content of {1} bytes exceeds the maximum of 5000")]
    InlineTooLarge(String, usize),
    /// The xattrs of one inode (with the ones composefs adds) exceed the budget.
    #[error("{0}: extended attributes too large")]
    XattrsTooLarge(String),
    /// Empty symlink target, or longer than 4095 bytes.
    #[error("{0}: invalid symlink target")]
    BadSymlink(String),
    /// The image would exceed 2^32 blocks.
    #[error("image too large")]
    TooLarge,
    /// A bug: an internal consistency check failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Writes `fs` as a composefs EROFS image.
pub fn write(fs: &FileSystem, options: FormatOptions) -> Result<Vec<u8>, WriteError> {
    writer::write(fs, options)
}
