//! composefs EROFS images: a writer byte-compatible with C `mkcomposefs`, and a bounded reader.
//!
//! - [`write`] lays a [`FileSystem`] out as libcomposefs does (format version 0 or 1, see
//!   [`FormatOptions`]); the same tree always gives the same bytes.
//! - [`read`] turns an image back into a tree (undoing the overlayfs rewrite), and
//!   [`referenced_objects`] lists the objects an image's files redirect to. Both check every
//!   offset and never panic or loop on corrupt input.
//!
//! The layout is described in `docs/image.md`.

mod encode;
pub mod format;
mod node;
mod place;
mod reader;
mod verify;
mod writer;

pub use encode::directory_size;
pub use reader::{ReadError, read, referenced_objects};

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
    /// An xattr breaks a limit of [`crate::xattr`] (name, value, or the per-inode budget,
    /// counting the xattrs composefs adds).
    #[error(transparent)]
    Xattr(#[from] crate::xattr::XattrError),
    /// A value does not fit its on-disk field; never truncated.
    #[error("{path}: {field} {value} does not fit its field in the EROFS image")]
    DoesNotFit {
        /// The file.
        path: String,
        /// The on-disk field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The written image does not parse back to what the writer meant (a bug; no image is
    /// returned).
    #[error("{path}: the written image does not read back as written: {problem}")]
    Verify {
        /// The file.
        path: String,
        /// What differs.
        problem: String,
    },
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cfs_repository::{FsVerityHasher, HashAlgorithm, ObjectId};

    use super::*;
    use crate::tree::*;

    fn leaf(mode: u32, content: LeafContent) -> Inode {
        Inode::Leaf(Arc::new(Leaf {
            stat: Stat::with_mode(mode),
            content,
        }))
    }

    fn sample() -> (FileSystem, Vec<ObjectId>) {
        let mut root_stat = Stat::with_mode(0o755);
        root_stat.xattrs.insert(
            b"security.selinux"[..].into(),
            b"system_u:object_r:root_t"[..].into(),
        );
        let mut fs = FileSystem::new(root_stat);
        let a = FsVerityHasher::digest(HashAlgorithm::Sha256, &[1u8; 10000]);
        let b = FsVerityHasher::digest(HashAlgorithm::Sha512, &[2u8; 70000]);
        let mut ext_stat = Stat::with_mode(0o644);
        ext_stat
            .xattrs
            .insert(b"trusted.overlay.redirect"[..].into(), b"/mine"[..].into());
        ext_stat
            .xattrs
            .insert(b"user.k"[..].into(), b"v=1 2"[..].into());
        ext_stat.mtime = Mtime { sec: 5, nsec: 7 };
        let shared = Arc::new(Leaf {
            stat: ext_stat,
            content: LeafContent::Regular(RegularFile::External(Box::new(ExternalFile::object(
                a, 10000,
            )))),
        });
        fs.root
            .insert("big", Inode::Leaf(shared.clone()))
            .expect("ok");
        let mut sub = Directory::new(Stat::with_mode(0o700));
        sub.insert("link-to-big", Inode::Leaf(shared)).expect("ok");
        sub.insert("whiteout", leaf(0o644, LeafContent::CharDevice(0)))
            .expect("ok");
        sub.insert(
            "sha512",
            leaf(
                0o600,
                LeafContent::Regular(RegularFile::External(Box::new(ExternalFile::object(
                    b, 70000,
                )))),
            ),
        )
        .expect("ok");
        sub.insert("deep", Inode::Directory(Box::default()))
            .expect("ok");
        fs.root
            .insert("sub", Inode::Directory(Box::new(sub)))
            .expect("ok");
        fs.root
            .insert(
                "small",
                leaf(
                    0o644,
                    LeafContent::Regular(RegularFile::Inline(b"hello\n"[..].into())),
                ),
            )
            .expect("ok");
        fs.root
            .insert(
                "empty",
                leaf(
                    0o644,
                    LeafContent::Regular(RegularFile::Inline(Box::new([]))),
                ),
            )
            .expect("ok");
        fs.root
            .insert(
                "sym",
                leaf(
                    0o777,
                    LeafContent::Symlink(std::ffi::OsStr::new("small").into()),
                ),
            )
            .expect("ok");
        fs.root
            .insert("fifo", leaf(0o600, LeafContent::Fifo))
            .expect("ok");
        fs.root
            .insert("sock", leaf(0o600, LeafContent::Socket))
            .expect("ok");
        fs.root
            .insert("null", leaf(0o666, LeafContent::CharDevice(0x0103)))
            .expect("ok");
        fs.root
            .insert("sda", leaf(0o660, LeafContent::BlockDevice(0x0800)))
            .expect("ok");
        fs.root
            .insert(
                "00",
                leaf(
                    0o644,
                    LeafContent::Regular(RegularFile::Inline(b"x"[..].into())),
                ),
            )
            .expect("ok");
        let mut ids = vec![a, b];
        ids.sort();
        (fs, ids)
    }

    #[test]
    fn write_read_round_trip_and_objects() {
        let (fs, ids) = sample();
        for opts in [
            FormatOptions::exactly(0),
            FormatOptions::exactly(1),
            FormatOptions::default(),
        ] {
            let image = write(&fs, opts).expect("write");
            assert_eq!(
                image,
                write(&fs, opts).expect("write again"),
                "deterministic"
            );
            let back = read(&image).expect("read");
            // Debug, not a dumpfile: `dumpfile` depends on `erofs`, never the reverse.
            assert!(fs == back, "{fs:#?}\n---\n{back:#?}");
            assert_eq!(referenced_objects(&image).expect("objects"), ids);
        }
    }

    #[test]
    fn a_redirect_that_is_no_object_is_named_with_its_path() {
        let mut fs = FileSystem::new(Stat::with_mode(0o755));
        let mut d = Directory::new(Stat::with_mode(0o755));
        let foreign = ExternalFile {
            size: 10,
            digest: None,
            path: Some(b"elsewhere/file".to_vec().into_boxed_slice()),
        };
        let leaf = Leaf {
            stat: Stat::with_mode(0o644),
            content: LeafContent::Regular(RegularFile::External(Box::new(foreign))),
        };
        d.insert("f", Inode::Leaf(Arc::new(leaf))).expect("insert");
        fs.root
            .insert("d", Inode::Directory(Box::new(d)))
            .expect("insert");
        let image = write(&fs, FormatOptions::default()).expect("write");
        match referenced_objects(&image) {
            Err(ReadError::NotAnObject { path, redirect }) => {
                assert_eq!(
                    (path.as_str(), redirect.as_str()),
                    ("/d/f", "elsewhere/file")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_is_raised_for_whiteouts_only_when_allowed() {
        let (fs, _) = sample();
        let version = |img: &[u8]| u32::from_le_bytes([img[12], img[13], img[14], img[15]]);
        assert_eq!(
            version(&write(&fs, FormatOptions::default()).expect("w")),
            1
        );
        assert_eq!(
            version(&write(&fs, FormatOptions::exactly(0)).expect("w")),
            0
        );
        let plain = FileSystem::new(Stat::with_mode(0o755));
        assert_eq!(
            version(&write(&plain, FormatOptions::default()).expect("w")),
            0
        );
        assert!(write(&plain, FormatOptions::exactly(2)).is_err());
    }

    #[test]
    fn corrupt_images_are_errors_not_panics() {
        let (fs, _) = sample();
        let image = write(&fs, FormatOptions::default()).expect("write");
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in (0..image.len()).step_by(97) {
            let _ = read(&image[..len]);
        }
        for _ in 0..4000 {
            let mut bad = image.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bad.len();
                bad[at] = next() as u8;
            }
            let _ = read(&bad);
            let _ = referenced_objects(&bad);
        }
        assert!(read(b"not an image").is_err());
    }
}
