//! cfs-image: filesystem trees and the composefs formats that describe them.
//!
//! - [`tree`]: the in-memory tree ([`FileSystem`], [`Directory`], [`Leaf`], hardlinks as shared
//!   leaves, xattrs as bytes).
//! - [`dumpfile`]: the composefs-dump(5) text format, parsed and printed.
//! - [`erofs`]: the composefs EROFS image, written byte-identical to C `mkcomposefs`, and read
//!   back.
//!
//! See `docs/image.md`.

pub mod dumpfile;
pub mod erofs;
pub mod tree;

pub use erofs::FormatOptions;
pub use tree::{
    Directory, ExternalFile, FileSystem, Inode, Leaf, LeafContent, Mtime, RegularFile, Stat,
};
