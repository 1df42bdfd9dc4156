//! cfs-image: filesystem trees and the composefs formats that describe them.
//!
//! - [`tree`]: the in-memory tree ([`FileSystem`], [`Directory`], [`Leaf`], hardlinks as shared
//!   leaves, xattrs as bytes).
//! - [`dumpfile`]: the composefs-dump(5) text format, parsed and printed.
//! - [`erofs`]: the composefs EROFS image, written byte-identical to C `mkcomposefs`, and read
//!   back.
//! - [`xattr`]: the xattr limits every tree meets (name, value, per-inode budget), shared by
//!   the tar, scan and dumpfile inputs and the EROFS writer.
//! - [`transform`]: the canonical-tree rules for container images (root from `/usr`, `/run`
//!   emptied, xattr allowlist; the boot rules), matching composefs-rs's IDs.
//! - [`scan`]: reading a directory from disk into a tree, storing or hashing file contents.
//! - [`repo`]: images in a repository: creating them, finding their objects for gc and fsck,
//!   checking an image's own digest.
//! - [`loopdev`]: read-only loop devices, for kernels or filesystems where EROFS cannot mount a
//!   file directly.
//! - [`mount`]: mounting an image (EROFS + overlayfs through the new mount API).
//! - [`mounts`]: finding the images mounted right now (for gc), in every mount namespace.
//!
//! See `docs/image.md`.

pub mod dumpfile;
pub mod erofs;
pub mod loopdev;
pub mod mount;
pub mod mounts;
pub mod repo;
pub mod scan;
pub mod transform;
pub mod tree;
pub mod xattr;

pub use erofs::FormatOptions;
pub use tree::{
    Directory, ExternalFile, FileSystem, Inode, Leaf, LeafContent, Mtime, RegularFile, Stat,
};
