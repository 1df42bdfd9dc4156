//! Local image sources read without skopeo: `oci:DIR[:REF]` (an OCI image layout),
//! `oci-archive:FILE[:REF]` (a tar of one, plain or gzip/zstd-compressed) and `dir:DIR`
//! (skopeo's directory transport), with containers/image 5.23's rules (what skopeo 1.9.3 uses)
//! for which manifest a reference selects and where blobs are.
//!
//! This module only *finds and opens* what a source holds; it checks no blob digest (the
//! pull's pipeline hashes everything it reads and compares with the manifest), except the
//! top-level manifest of a layout, whose digest only the layout's index knows. It never hands
//! out anything but the named file: blob names are checked 64-hex sha256 digests, nothing in a
//! layout is reached through a symlink or `..` (`fsutil`), FIFOs, devices and directories are
//! refused without being opened for reading, and an archive's members are looked up by their
//! normalised name in an index built once (`archive`): no member name is ever used as a path.
//! An uncompressed archive's blobs are read in place at their offset; a compressed archive is
//! decompressed once into an anonymous temporary file, which is then read the same way.

mod archive;
mod dir;
pub(crate) mod fsutil;
pub(crate) mod index;
mod layout;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use index::Selected;

use crate::reference::is_sha256_hex;

/// Largest top-level manifest, instance manifest list or `index.json` read (32 MiB; real ones
/// are a few KiB, and containers/image bounds registry manifests at 4 MiB).
pub const MAX_MANIFEST: u64 = 32 << 20;

/// How large a compressed `oci-archive:` may decompress to by default (256 GiB: four layers at
/// the pull's default `--max-layer-size`); see [`LocalSource::open_with`].
pub const DEFAULT_MAX_DECOMPRESSED_ARCHIVE: u64 = 256 << 30;

/// Which local transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// `oci:DIR[:REF]`.
    Layout,
    /// `oci-archive:FILE[:REF]`.
    Archive,
    /// `dir:DIR`.
    Dir,
}

/// Why a local source cannot be read. Every variant names the path, archive member or digest
/// that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The reference cannot be right.
    #[error("local image reference {details:?}: {why}")]
    BadReference {
        /// What followed the transport.
        details: String,
        /// What is wrong.
        why: String,
    },
    /// A system call on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A directory was expected.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A regular file was expected; what is there instead (a FIFO, a symlink, ...).
    #[error("{}: is {what}, not a regular file; refused", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A file the source needs is not there.
    #[error("{}: no such file in the image source", path.display())]
    Missing {
        /// The path (for an archive: the archive, then the member).
        path: PathBuf,
    },
    /// `oci-layout`, `index.json`, `version` or the archive's layout is not what it must be.
    #[error("{}: {why}", path.display())]
    BadLayout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No REF was given and the index does not hold exactly one entry.
    #[error(
        "{}: no reference given and the index has {count} entries (not one); choose one of: {}",
        path.display(), refs.join(", ")
    )]
    NotOneImage {
        /// The index.
        path: PathBuf,
        /// How many entries it has.
        count: usize,
        /// Their ref names.
        refs: Vec<String>,
    },
    /// No OCI manifest or index entry is named REF.
    #[error(
        "{}: no image named {reference:?}{}; the index has: {}",
        path.display(),
        if passed_over.is_empty() { String::new() } else {
            format!(" (entries with that name but unsupported media types {passed_over:?})")
        },
        refs.join(", ")
    )]
    RefNotFound {
        /// The index.
        path: PathBuf,
        /// The REF asked for.
        reference: String,
        /// The ref names there are.
        refs: Vec<String>,
        /// Media types of entries named REF that were passed over.
        passed_over: Vec<String>,
    },
    /// A digest that is not `sha256:<64 lowercase hex>` where a blob must be named.
    #[error("{}: digest {digest:?} is not supported (only sha256:<64 lowercase hex digits>)", path.display())]
    UnsupportedDigest {
        /// Where it was found.
        path: PathBuf,
        /// The digest.
        digest: String,
    },
    /// A blob was asked for by a name that is not 64 lowercase hex digits.
    #[error("blob name {name:?} is not a sha256 digest (64 lowercase hex digits)")]
    BadBlobName {
        /// The name.
        name: String,
    },
    /// A blob's stored length is not the length its descriptor gives.
    #[error("{}: {actual} bytes stored, but the descriptor says {expected}", path.display())]
    SizeMismatch {
        /// The blob.
        path: PathBuf,
        /// The descriptor's size.
        expected: u64,
        /// What is stored.
        actual: u64,
    },
    /// A blob read whole is larger than the caller accepts.
    #[error("{}: {size} bytes, more than the {max} bytes accepted", path.display())]
    TooLarge {
        /// The blob.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// A compressed archive decompresses to more than the bound it was opened with.
    #[error("{}: decompresses to more than {max} bytes, the bound for a compressed archive; refused", path.display())]
    ArchiveTooLarge {
        /// The archive.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// A file changed length while it was read.
    #[error("{}: {read} bytes read where {expected} were stored (changed while read)", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its length when opened.
        expected: u64,
        /// What could be read.
        read: u64,
    },
    /// The top-level manifest's bytes do not hash to the digest the index gives for it.
    #[error("{}: the manifest the index names as sha256:{expected} hashes to sha256:{actual}", path.display())]
    ManifestMismatch {
        /// The manifest's blob.
        path: PathBuf,
        /// The index's digest (hex).
        expected: String,
        /// Its real sha256 (hex).
        actual: String,
    },
    /// The archive's tar structure is broken.
    #[error("{}: {source}", path.display())]
    Tar {
        /// The archive.
        path: PathBuf,
        /// What the tar parser found.
        #[source]
        source: crate::tar::TarError,
    },
    /// A member of the archive that the layout needs is refused.
    #[error("{}: member {member:?}: {why}", path.display())]
    Member {
        /// The archive.
        path: PathBuf,
        /// The member's name as stored.
        member: String,
        /// Why it is refused.
        why: String,
    },
    /// The archive is compressed with something cfs does not decompress.
    #[error("{}: {what}-compressed archives are not supported (only plain, gzip and zstd)", path.display())]
    Compression {
        /// The archive.
        path: PathBuf,
        /// The compression found.
        what: &'static str,
    },
    /// Decompressing the archive into its temporary file failed.
    #[error("{}: decompressing into a temporary file in {}: {source}", path.display(), tmp.display())]
    Decompress {
        /// The archive.
        path: PathBuf,
        /// Where the temporary file is.
        tmp: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A local image source, opened (see the module doc). `Send + Sync`: blobs may be opened and
/// read from several threads at once.
pub struct LocalSource {
    inner: Inner,
}

impl std::fmt::Debug for LocalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSource")
            .field("kind", &self.kind())
            .field("selected", &self.selected())
            .finish_non_exhaustive()
    }
}

enum Inner {
    Layout(layout::Layout),
    Archive(archive::Archive),
    Dir(dir::DirSource),
}

impl LocalSource {
    /// Opens the source `details` names: everything after `oci:` / `oci-archive:` / `dir:`
    /// ([`crate::reference::ImageRef::details`]). For `oci:` and `oci-archive:` this reads
    /// `oci-layout` and `index.json` and selects the entry (an archive is indexed, and
    /// decompressed first if it must be); for `dir:`, it checks `version`.
    pub fn open(kind: LocalKind, details: &str) -> Result<Self, LocalError> {
        Self::open_with(kind, details, DEFAULT_MAX_DECOMPRESSED_ARCHIVE)
    }

    /// [`LocalSource::open`], with the largest size a compressed `oci-archive:` may decompress
    /// to (into its temporary file) before it is refused with [`LocalError::ArchiveTooLarge`].
    pub fn open_with(
        kind: LocalKind,
        details: &str,
        max_decompressed: u64,
    ) -> Result<Self, LocalError> {
        let inner = match kind {
            LocalKind::Layout => Inner::Layout(layout::Layout::open(details)?),
            LocalKind::Archive => {
                Inner::Archive(archive::Archive::open(details, max_decompressed)?)
            }
            LocalKind::Dir => Inner::Dir(dir::DirSource::open(details)?),
        };
        Ok(Self { inner })
    }

    /// The transport.
    pub fn kind(&self) -> LocalKind {
        match &self.inner {
            Inner::Layout(_) => LocalKind::Layout,
            Inner::Archive(_) => LocalKind::Archive,
            Inner::Dir(_) => LocalKind::Dir,
        }
    }

    /// The index entry the reference selected (`oci:`, `oci-archive:`); `None` for `dir:`,
    /// whose `manifest.json` no digest names.
    pub fn selected(&self) -> Option<&Selected> {
        match &self.inner {
            Inner::Layout(l) => Some(l.selected()),
            Inner::Archive(a) => Some(a.selected()),
            Inner::Dir(_) => None,
        }
    }

    /// The bytes of the top-level manifest the reference selects, exactly as stored (it may be
    /// an image index / manifest list), at most [`MAX_MANIFEST`]. For `oci:`/`oci-archive:`
    /// their size and sha256 are checked against the index entry.
    pub fn top_manifest(&self) -> Result<Vec<u8>, LocalError> {
        let sel = match &self.inner {
            Inner::Dir(d) => return d.top_manifest(),
            Inner::Layout(l) => l.selected(),
            Inner::Archive(a) => a.selected(),
        };
        if sel.size > MAX_MANIFEST {
            return Err(LocalError::TooLarge {
                path: self.blob_location(&sel.hex),
                size: sel.size,
                max: MAX_MANIFEST,
            });
        }
        let bytes = self.read_blob(&sel.hex, MAX_MANIFEST)?;
        let actual_len = bytes.len() as u64;
        if actual_len != sel.size {
            return Err(LocalError::SizeMismatch {
                path: self.blob_location(&sel.hex),
                expected: sel.size,
                actual: actual_len,
            });
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sel.hex {
            return Err(LocalError::ManifestMismatch {
                path: self.blob_location(&sel.hex),
                expected: sel.hex.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Any blob by sha256 hex, whole, at most `max` bytes: configs, and manifests chosen from
    /// an index (for `dir:`, a blob that is not there as `<hex>` is looked for as
    /// `<hex>.manifest.json`, where skopeo keeps the instances of a list).
    pub fn read_blob(&self, hex: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        check_hex(hex)?;
        match &self.inner {
            Inner::Layout(l) => l.read_blob(hex, max),
            Inner::Archive(a) => a.read_blob(hex, max),
            Inner::Dir(d) => d.read_blob(hex, max),
        }
    }

    /// A manifest named by a list or index, whole, at most `max` bytes: the blob for `oci:`
    /// and `oci-archive:`, `<hex>.manifest.json` for `dir:`.
    pub fn read_manifest(&self, hex: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        check_hex(hex)?;
        match &self.inner {
            Inner::Dir(d) => d.read_instance_manifest(hex, max),
            _ => self.read_blob(hex, max),
        }
    }

    /// A blob opened for streaming; its stored length must equal `size` (else
    /// [`LocalError::SizeMismatch`] naming both). The reader yields exactly `size` bytes.
    pub fn open_blob(&self, hex: &str, size: u64) -> Result<LocalBlob, LocalError> {
        check_hex(hex)?;
        let inner = match &self.inner {
            Inner::Layout(l) => l.open_blob(hex, size)?,
            Inner::Archive(a) => a.open_blob(hex, size)?,
            Inner::Dir(d) => d.open_blob(hex, size)?,
        };
        Ok(LocalBlob { inner })
    }

    /// Where the blob `hex` is, for messages.
    pub fn blob_location(&self, hex: &str) -> PathBuf {
        match &self.inner {
            Inner::Layout(l) => l.blob_location(hex),
            Inner::Archive(a) => a.blob_location(hex),
            Inner::Dir(d) => d.blob_location(hex),
        }
    }
}

fn check_hex(hex: &str) -> Result<(), LocalError> {
    if is_sha256_hex(hex) {
        Ok(())
    } else {
        Err(LocalError::BadBlobName {
            name: hex.to_owned(),
        })
    }
}

/// A blob being read: exactly the size it was opened with, from its own file or in place
/// from the archive at its offset. A file that ends early is an `UnexpectedEof` error naming
/// it; bytes past the size are never read.
pub struct LocalBlob {
    inner: BlobInner,
}

pub(crate) enum BlobInner {
    /// A file of its own, read sequentially.
    File {
        file: File,
        remaining: u64,
        path: PathBuf,
    },
    /// A range of a shared archive file, read with `pread`.
    Range {
        file: Arc<File>,
        offset: u64,
        remaining: u64,
        path: PathBuf,
    },
}

impl std::fmt::Debug for LocalBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, remaining) = match &self.inner {
            BlobInner::File {
                path, remaining, ..
            }
            | BlobInner::Range {
                path, remaining, ..
            } => (path, remaining),
        };
        f.debug_struct("LocalBlob")
            .field("path", path)
            .field("remaining", remaining)
            .finish_non_exhaustive()
    }
}

impl LocalBlob {
    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        match &self.inner {
            BlobInner::File { remaining, .. } | BlobInner::Range { remaining, .. } => *remaining,
        }
    }
}

fn cut_short(path: &std::path::Path, remaining: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "{}: ends {remaining} bytes before its recorded size (changed or truncated)",
            path.display()
        ),
    )
}

impl Read for LocalBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            BlobInner::File {
                file,
                remaining,
                path,
            } => {
                if *remaining == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let want = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(cut_short(path, *remaining));
                }
                *remaining -= n as u64;
                Ok(n)
            }
            BlobInner::Range {
                file,
                offset,
                remaining,
                path,
            } => {
                if *remaining == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let want = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let n = file.read_at(&mut buf[..want], *offset)?;
                if n == 0 {
                    return Err(cut_short(path, *remaining));
                }
                *offset += n as u64;
                *remaining -= n as u64;
                Ok(n)
            }
        }
    }
}
