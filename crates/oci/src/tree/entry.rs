//! Tar entries as tree pieces: a layer entry's path components, its stat and xattrs (checked
//! against the limits every tree meets), its leaf content (inline data, an object, a symlink
//! target, a device number), and whether its name is a whiteout (`.wh.NAME`, the opaque
//! marker, AUFS metadata). The merge itself (`super`) decides what the pieces do to the tree.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use cfs_image::tree::{
    ExternalFile, LeafContent, MAX_DEPTH, Mtime, RegularFile, Stat, Xattrs, validate_name,
};
use cfs_repository::Repository;
use cfs_repository::splitstream::INLINE_MAX;

use crate::tar::{Content, EntryKind, TarEntry};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Why a layer entry could not be applied to the tree.
#[derive(Debug, thiserror::Error)]
#[error("entry {path:?} (header at byte {offset}): {problem}")]
pub struct MergeError {
    /// The entry's path as stored (lossy UTF-8).
    pub path: String,
    /// Offset of the entry's header in the layer.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn merge_err(entry: &TarEntry, problem: impl Into<String>) -> MergeError {
    MergeError {
        path: lossy(&entry.path),
        offset: entry.offset,
        problem: problem.into(),
    }
}

/// The normalised components of a tar path: no empty, `.` components; `..` refused; more than
/// [`MAX_DEPTH`] components refused (the tree's walks, writer and drop recurse per level).
pub(super) fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the path has a '..' component (refused)".to_owned()),
            _ => out.push(c),
        }
        if out.len() > MAX_DEPTH {
            return Err(format!(
                "the path is nested deeper than {MAX_DEPTH} directories (refused)"
            ));
        }
    }
    Ok(out)
}

pub(super) fn stat_of(entry: &TarEntry) -> Result<Stat, MergeError> {
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| merge_err(entry, format!("{what} {v} does not fit 32 bits")))
    };
    // The limits every tree meets (name, value, per-inode budget); refused, never truncated.
    cfs_image::xattr::check_pairs(
        &lossy(&entry.path),
        entry.xattrs.iter().map(|(k, v)| (&k[..], &v[..])),
    )
    .map_err(|e| merge_err(entry, format!("xattr {}: {}", e.name, e.limit)))?;
    let mut xattrs = Xattrs::new();
    for (k, v) in &entry.xattrs {
        xattrs.insert(k.clone().into_boxed_slice(), v.clone().into_boxed_slice());
    }
    Ok(Stat {
        mode: entry.mode & 0o7777,
        uid: id(entry.uid, "uid")?,
        gid: id(entry.gid, "gid")?,
        mtime: Mtime {
            sec: entry.mtime,
            nsec: entry.mtime_nsec,
        },
        xattrs,
    })
}

/// Linux's `makedev`.
pub(super) fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

fn regular_content(repo: &Repository, entry: &TarEntry) -> Result<RegularFile, MergeError> {
    if entry.sparse.is_some() {
        return Err(merge_err(
            entry,
            "GNU sparse files are not supported in images (their stored data is not the file's \
             content)",
        ));
    }
    match &entry.content {
        Content::Inline(data) if data.len() <= INLINE_MAX => {
            Ok(RegularFile::Inline(data.clone().into_boxed_slice()))
        }
        Content::Inline(data) => Err(merge_err(
            entry,
            format!(
                "{} bytes of file data stored inline (not a layer stream written by the tar \
                 splitter)",
                data.len()
            ),
        )),
        Content::External { object, size } if *size as usize > INLINE_MAX => Ok(
            RegularFile::External(Box::new(ExternalFile::object(*object, *size))),
        ),
        // Not what the splitter writes, but small files belong inline in the image.
        Content::External { object, .. } => {
            let data = repo
                .read_object(object)
                .map_err(|e| merge_err(entry, format!("reading object {object}: {e}")))?;
            Ok(RegularFile::Inline(data.into_boxed_slice()))
        }
    }
}

/// What pass 1 does with an entry whose name is a whiteout.
pub(super) enum Whiteout<'a> {
    /// Not a whiteout.
    No,
    /// `.wh.NAME` in the directory `dir`.
    Remove { dir: Vec<&'a [u8]>, name: &'a [u8] },
    /// `.wh..wh..opq` in `dir`.
    Opaque { dir: Vec<&'a [u8]> },
    /// AUFS metadata (`.wh..wh.*`), ignored.
    Ignore,
}

pub(super) fn classify(entry: &TarEntry) -> Result<Whiteout<'_>, MergeError> {
    let mut comps = components(&entry.path).map_err(|p| merge_err(entry, p))?;
    if comps[..comps.len().saturating_sub(1)]
        .iter()
        .any(|c| c.starts_with(AUFS_META_PREFIX))
    {
        return Ok(Whiteout::Ignore);
    }
    let Some(last) = comps.pop() else {
        return Ok(Whiteout::No);
    };
    if last == OPAQUE_MARKER {
        return Ok(Whiteout::Opaque { dir: comps });
    }
    if last.starts_with(AUFS_META_PREFIX) {
        return Ok(Whiteout::Ignore);
    }
    if let Some(name) = last.strip_prefix(WHITEOUT_PREFIX) {
        validate_name(OsStr::from_bytes(name))
            .map_err(|e| merge_err(entry, format!("invalid whiteout: {e}")))?;
        return Ok(Whiteout::Remove { dir: comps, name });
    }
    if let Some(c) = comps.iter().find(|c| c.starts_with(WHITEOUT_PREFIX)) {
        return Err(merge_err(
            entry,
            format!("a whiteout name ({:?}) used as a directory", lossy(c)),
        ));
    }
    comps.push(last);
    Ok(Whiteout::No)
}

fn unreachable_kind(entry: &TarEntry) -> Result<LeafContent, MergeError> {
    Err(merge_err(entry, "internal error: entry kind handled twice"))
}

/// What a non-directory, non-hardlink entry is, as a leaf's content; `None` for an entry that
/// names no file (a GNU volume label).
pub(super) fn leaf_content(
    repo: &Repository,
    entry: &TarEntry,
) -> Result<Option<LeafContent>, MergeError> {
    let kind = entry.kind;
    let content = match kind {
        EntryKind::Regular => LeafContent::Regular(regular_content(repo, entry)?),
        EntryKind::Symlink => {
            let t = entry
                .link_target
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| merge_err(entry, "a symlink without a target"))?;
            LeafContent::Symlink(OsStr::from_bytes(t).into())
        }
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (major, minor) = entry
                .device
                .ok_or_else(|| merge_err(entry, "a device without a device number"))?;
            let rdev = makedev(major, minor);
            if kind == EntryKind::CharDevice {
                LeafContent::CharDevice(rdev)
            } else {
                LeafContent::BlockDevice(rdev)
            }
        }
        EntryKind::Fifo => LeafContent::Fifo,
        // A GNU volume label names the archive, not a file (GNU tar skips it too).
        EntryKind::Other(b'V') => return Ok(None),
        EntryKind::Other(t) => {
            return Err(merge_err(
                entry,
                format!("unsupported entry type {:?}", char::from(t)),
            ));
        }
        EntryKind::Directory | EntryKind::Hardlink => unreachable_kind(entry)?,
    };
    Ok(Some(content))
}
