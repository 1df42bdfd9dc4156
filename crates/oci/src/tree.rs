//! Merging an image's tar layers into one filesystem tree (a `cfs_image::FileSystem`), from
//! which the composefs image is written.
//!
//! [`image_tree`] reads the stored config stream, then every layer stream in `rootfs.diff_ids`
//! order through the shared tar reader ([`crate::tar::entries`]), and applies each layer with
//! [`merge_layer`]. No file data is read or copied: regular files larger than 64 bytes become
//! the objects the splitstream already names.
//!
//! The rules (docs/image.md, "Images from OCI layers", has the reasoning):
//!
//! - Paths are normalised: leading `/`, `./` and empty components are dropped; a `..`
//!   component is refused. Paths are resolved through directories only, never through
//!   symlinks, so nothing can escape the root.
//! - A layer applies in two passes. First its whiteouts act on the layers below: `.wh.NAME`
//!   removes `NAME`, `.wh..wh..opq` empties its directory; other `.wh..wh.*` names (AUFS
//!   metadata) are ignored. Then its other entries apply in archive order; a later entry for
//!   the same path replaces the earlier one (a directory over a directory only changes the
//!   metadata and keeps the contents; anything else replaces what was there, subtree included).
//! - Hardlinks share the leaf of their target, which must already exist (earlier in the same
//!   layer, or below) and must not be a directory.
//! - A parent directory that no entry names (or that is a non-directory below) is created as
//!   containers-storage does: mode 0755, owned by root, no xattrs, and mtime 0 (where
//!   containers-storage leaves the time of extraction, which is not reproducible).
//! - The root directory is mode 0555, owned by root, mtime 0, no xattrs (containers-storage's
//!   layer root); root entries (`./`) in layers are ignored, as containers-storage and Docker
//!   ignore them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_image::tree::{Directory, FileSystem, Inode, Leaf, Stat, TreeError, validate_name};
use cfs_repository::Repository;

mod entry;

pub use entry::MergeError;
use entry::{Whiteout, classify, components, leaf_content, lossy, merge_err, stat_of};

use crate::layer::layer_content_id;
use crate::manifest::{ManifestError, parse_config, sha256_hex};
use crate::store::{self, StoreError};
use crate::tar::{EntryKind, TarEntry, TarError, entries};

/// Permission bits of the root directory (containers-storage's layer root).
pub const ROOT_MODE: u32 = 0o555;
/// Permission bits of parent directories that no layer entry names.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Why an image's tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageTreeError {
    /// The image could not be found or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
    /// The name is an artifact, not a container image.
    #[error("{0} is an artifact, not a container image: it has no filesystem")]
    NotAnImage(String),
    /// The stored config does not parse.
    #[error("{name}: {source}")]
    Config {
        /// The image.
        name: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A layer stream could not be read.
    #[error("layer {index} ({diff_id}): {source}")]
    Tar {
        /// Layer index, from 0.
        index: usize,
        /// Its diff_id.
        diff_id: String,
        /// Why.
        #[source]
        source: TarError,
    },
    /// A layer entry cannot be applied.
    #[error("layer {index} ({diff_id}): {source}")]
    Merge {
        /// Layer index, from 0.
        index: usize,
        /// Its diff_id.
        diff_id: String,
        /// Why.
        #[source]
        source: MergeError,
    },
}

/// The stat of the root directory before any layer: mode 0555, root, mtime 0, no xattrs.
pub fn root_stat() -> Stat {
    Stat::with_mode(ROOT_MODE)
}

/// The stat of a parent directory no entry names: mode 0755, root, mtime 0, no xattrs.
pub fn implicit_dir_stat() -> Stat {
    Stat::with_mode(IMPLICIT_DIR_MODE)
}

/// An empty tree: just the root directory with [`root_stat`].
pub fn empty_tree() -> FileSystem {
    FileSystem::new(root_stat())
}

/// Builds the merged tree of a stored image: `name` is a name (stream ref), an image ID
/// (`sha256:<config digest>`), a manifest digest or a unique ID prefix, as for
/// `cfsctl oci inspect`.
pub fn image_tree(repo: &Repository, name: &str) -> Result<FileSystem, ImageTreeError> {
    let cid = store::resolve(repo, name)?;
    if !cid.starts_with("oci-config-") {
        return Err(ImageTreeError::NotAnImage(name.to_owned()));
    }
    config_tree(repo, &cid)
}

/// Builds the merged tree of the image whose config stream is `config_cid`
/// (`oci-config-sha256:<hex>`). Layers are found through the config stream's named refs
/// (diff_id → layer stream object), falling back to the layer's content id.
pub fn config_tree(repo: &Repository, config_cid: &str) -> Result<FileSystem, ImageTreeError> {
    let reader = repo.open_stream(config_cid)?;
    let header = reader.header().clone();
    let config = reader.read_to_vec(repo)?;
    let bad = |source| ImageTreeError::Config {
        name: config_cid.to_owned(),
        source,
    };
    let summary = parse_config(&config).map_err(bad)?;
    let mut fs = empty_tree();
    for (index, diff_id) in summary.rootfs.diff_ids.iter().enumerate() {
        let stream_object = match header.stream_ref(diff_id) {
            Some(r) => r.object,
            None => {
                repo.resolve_stream(&layer_content_id(sha256_hex(diff_id).map_err(bad)?))?
                    .1
            }
        };
        let stream = repo.open_stream_object(&stream_object)?;
        let tar_err = |source| ImageTreeError::Tar {
            index,
            diff_id: diff_id.clone(),
            source,
        };
        let merge_err = |source| ImageTreeError::Merge {
            index,
            diff_id: diff_id.clone(),
            source,
        };
        // Two passes over the stream (whiteouts first, then the rest), so that only one entry
        // is in memory at a time, not the whole layer's: a layer of 300,000 files would
        // otherwise hold ~100 MiB of entries (docs/performance.md, "Many files").
        for entry in entries(repo, stream).map_err(tar_err)? {
            apply_whiteout(&mut fs, &entry.map_err(tar_err)?).map_err(merge_err)?;
        }
        let stream = repo.open_stream_object(&stream_object)?;
        for entry in entries(repo, stream).map_err(tar_err)? {
            apply_other(repo, &mut fs, &entry.map_err(tar_err)?).map_err(merge_err)?;
        }
    }
    Ok(fs)
}

/// The directory at `comps`, following directories only.
fn find_dir<'a>(root: &'a Directory, comps: &[&[u8]]) -> Option<&'a Directory> {
    let mut dir = root;
    for c in comps {
        match dir.get(OsStr::from_bytes(c))? {
            Inode::Directory(d) => dir = d,
            Inode::Leaf(_) => return None,
        }
    }
    Some(dir)
}

/// The directory at `comps`, mutably, following directories only.
fn find_dir_mut<'a>(root: &'a mut Directory, comps: &[&[u8]]) -> Option<&'a mut Directory> {
    let mut dir = root;
    for c in comps {
        match dir.get_mut(OsStr::from_bytes(c))? {
            Inode::Directory(d) => dir = d,
            Inode::Leaf(_) => return None,
        }
    }
    Some(dir)
}

/// The directory at `comps`, creating missing ones (and replacing non-directories) with
/// [`implicit_dir_stat`].
fn ensure_dir<'a>(
    root: &'a mut Directory,
    comps: &[&[u8]],
) -> Result<&'a mut Directory, TreeError> {
    let mut dir = root;
    for c in comps {
        let name = OsStr::from_bytes(c);
        if !matches!(dir.get(name), Some(Inode::Directory(_))) {
            dir.replace(
                name,
                Inode::Directory(Box::new(Directory::new(implicit_dir_stat()))),
            )?;
        }
        dir = match dir.get_mut(name) {
            Some(Inode::Directory(d)) => d,
            // Just inserted as a directory.
            _ => return Err(TreeError::InvalidName(name.to_owned())),
        };
    }
    Ok(dir)
}

/// Applies one layer (its entries in archive order) to `fs`; see the module documentation for
/// the rules. `repo` is only read from, for the rare small file stored as an object.
pub fn merge_layer(
    repo: &Repository,
    fs: &mut FileSystem,
    layer: &[TarEntry],
) -> Result<(), MergeError> {
    // Pass 1: whiteouts hide what the layers below have.
    for entry in layer {
        apply_whiteout(fs, entry)?;
    }
    // Pass 2: everything else, in order.
    for entry in layer {
        apply_other(repo, fs, entry)?;
    }
    Ok(())
}

/// Pass 1 of [`merge_layer`] for one entry: applies it if it is a whiteout.
fn apply_whiteout(fs: &mut FileSystem, entry: &TarEntry) -> Result<(), MergeError> {
    match classify(entry)? {
        Whiteout::No | Whiteout::Ignore => {}
        Whiteout::Remove { dir, name } => {
            if let Some(d) = find_dir_mut(&mut fs.root, &dir) {
                d.remove(OsStr::from_bytes(name));
            }
        }
        Whiteout::Opaque { dir } => {
            if let Some(d) = find_dir_mut(&mut fs.root, &dir) {
                let names: Vec<_> = d.entries().map(|(n, _)| n.to_owned()).collect();
                for n in names {
                    d.remove(&n);
                }
            }
        }
    }
    Ok(())
}

/// Pass 2 of [`merge_layer`] for one entry: applies it unless it is a whiteout.
fn apply_other(repo: &Repository, fs: &mut FileSystem, entry: &TarEntry) -> Result<(), MergeError> {
    match classify(entry)? {
        Whiteout::No => apply_entry(repo, fs, entry),
        _ => Ok(()),
    }
}

fn apply_entry(repo: &Repository, fs: &mut FileSystem, entry: &TarEntry) -> Result<(), MergeError> {
    let mut comps = components(&entry.path).map_err(|p| merge_err(entry, p))?;
    let Some(last) = comps.pop() else {
        // The root itself: its metadata is not taken from layers.
        return match entry.kind {
            EntryKind::Directory => Ok(()),
            _ => Err(merge_err(entry, "a non-directory entry for the root")),
        };
    };
    let name = OsStr::from_bytes(last);
    validate_name(name).map_err(|e| merge_err(entry, e.to_string()))?;
    let inode = match entry.kind {
        EntryKind::Directory => {
            let stat = stat_of(entry)?;
            let parent =
                ensure_dir(&mut fs.root, &comps).map_err(|e| merge_err(entry, e.to_string()))?;
            if let Some(Inode::Directory(d)) = parent.get_mut(name) {
                d.stat = stat;
                return Ok(());
            }
            Inode::Directory(Box::new(Directory::new(stat)))
        }
        EntryKind::Hardlink => {
            let target = entry
                .link_target
                .as_deref()
                .ok_or_else(|| merge_err(entry, "a hard link without a target"))?;
            let mut tcomps = components(target)
                .map_err(|p| merge_err(entry, format!("hard link target: {p}")))?;
            let missing = || {
                merge_err(
                    entry,
                    format!("hard link to {:?}, which does not exist", lossy(target)),
                )
            };
            let tname = tcomps
                .pop()
                .ok_or_else(|| merge_err(entry, "hard link to the root directory"))?;
            let dir = find_dir(&fs.root, &tcomps).ok_or_else(missing)?;
            match dir.get(OsStr::from_bytes(tname)) {
                Some(Inode::Leaf(l)) => Inode::Leaf(Arc::clone(l)),
                Some(Inode::Directory(_)) => {
                    return Err(merge_err(
                        entry,
                        format!("hard link to {:?}, which is a directory", lossy(target)),
                    ));
                }
                None => return Err(missing()),
            }
        }
        _ => {
            let Some(content) = leaf_content(repo, entry)? else {
                return Ok(());
            };
            Inode::Leaf(Arc::new(Leaf {
                stat: stat_of(entry)?,
                content,
            }))
        }
    };
    let parent = ensure_dir(&mut fs.root, &comps).map_err(|e| merge_err(entry, e.to_string()))?;
    parent
        .replace(name, inode)
        .map_err(|e| merge_err(entry, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
