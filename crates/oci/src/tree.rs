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

use cfs_image::tree::{
    Directory, ExternalFile, FileSystem, Inode, Leaf, LeafContent, MAX_DEPTH, Mtime, RegularFile,
    Stat, TreeError, Xattrs, validate_name,
};
use cfs_repository::Repository;
use cfs_repository::splitstream::INLINE_MAX;

use crate::layer::layer_content_id;
use crate::manifest::{ManifestError, parse_config, sha256_hex};
use crate::store::{self, StoreError};
use crate::tar::{Content, EntryKind, TarEntry, TarError, entries};

/// Permission bits of the root directory (containers-storage's layer root).
pub const ROOT_MODE: u32 = 0o555;
/// Permission bits of parent directories that no layer entry names.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

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

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn merge_err(entry: &TarEntry, problem: impl Into<String>) -> MergeError {
    MergeError {
        path: lossy(&entry.path),
        offset: entry.offset,
        problem: problem.into(),
    }
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

/// The normalised components of a tar path: no empty, `.` components; `..` refused; more than
/// [`MAX_DEPTH`] components refused (the tree's walks, writer and drop recurse per level).
fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
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

fn stat_of(entry: &TarEntry) -> Result<Stat, MergeError> {
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
fn makedev(major: u32, minor: u32) -> u64 {
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
        Content::External { object, size } if *size as usize > INLINE_MAX => {
            Ok(RegularFile::External(ExternalFile::object(*object, *size)))
        }
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
enum Whiteout<'a> {
    /// Not a whiteout.
    No,
    /// `.wh.NAME` in the directory `dir`.
    Remove { dir: Vec<&'a [u8]>, name: &'a [u8] },
    /// `.wh..wh..opq` in `dir`.
    Opaque { dir: Vec<&'a [u8]> },
    /// AUFS metadata (`.wh..wh.*`), ignored.
    Ignore,
}

fn classify(entry: &TarEntry) -> Result<Whiteout<'_>, MergeError> {
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
        kind => {
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
                EntryKind::Other(b'V') => return Ok(()),
                EntryKind::Other(t) => {
                    return Err(merge_err(
                        entry,
                        format!("unsupported entry type {:?}", char::from(t)),
                    ));
                }
                EntryKind::Directory | EntryKind::Hardlink => unreachable_kind(entry)?,
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

fn unreachable_kind(entry: &TarEntry) -> Result<LeafContent, MergeError> {
    Err(merge_err(entry, "internal error: entry kind handled twice"))
}

#[cfg(test)]
mod tests {
    use cfs_repository::{HashAlgorithm, InitVerity};
    use tar::{EntryType, Header};

    use super::*;

    /// One tar entry of a synthetic layer.
    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8]),
        /// A file with mode, uid, mtime and PAX xattrs.
        FileWith(&'a str, &'a [u8], u32, u64, u64, &'a [(&'a str, &'a [u8])]),
        Link(&'a str, &'a str),
        Sym(&'a str, &'a str),
        Char(&'a str, u32, u32),
        Fifo(&'a str),
    }

    /// Appends a header whose name and link name are written raw (no sanitising, so tests can
    /// make `..` and absolute paths).
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: EntryType,
        data: &[u8],
        link: &str,
        mode: u32,
        (uid, mtime): (u64, u64),
    ) {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        raw(
            b,
            "PaxHeaders/x",
            EntryType::XHeader,
            &data,
            "",
            0o644,
            (0, 0),
        );
    }

    fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match *e {
                E::Dir(p, mode) => raw(&mut b, p, EntryType::Directory, b"", "", mode, (0, 100)),
                E::File(p, d) => raw(&mut b, p, EntryType::Regular, d, "", 0o644, (0, 100)),
                E::FileWith(p, d, mode, uid, mtime, xattrs) => {
                    let recs: Vec<(String, &[u8])> = xattrs
                        .iter()
                        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                        .collect();
                    let recs: Vec<(&str, &[u8])> =
                        recs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    if !recs.is_empty() {
                        pax(&mut b, &recs);
                    }
                    raw(&mut b, p, EntryType::Regular, d, "", mode, (uid, mtime));
                }
                E::Link(p, t) => raw(&mut b, p, EntryType::Link, b"", t, 0o644, (0, 100)),
                E::Sym(p, t) => raw(&mut b, p, EntryType::Symlink, b"", t, 0o777, (0, 100)),
                E::Char(p, major, minor) => {
                    let mut h = Header::new_gnu();
                    h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_entry_type(EntryType::Char);
                    h.set_mode(0o600);
                    h.set_device_major(major).expect("major");
                    h.set_device_minor(minor).expect("minor");
                    h.set_size(0);
                    h.set_cksum();
                    b.append(&h, &b""[..]).expect("append");
                }
                E::Fifo(p) => raw(&mut b, p, EntryType::Fifo, b"", "", 0o644, (0, 100)),
            }
        }
        b.into_inner().expect("tar")
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        repo: Repository,
    }

    fn repo() -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(
            &tmp.path().join("repo"),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init");
        Fixture { _tmp: tmp, repo }
    }

    fn merge(fx: &Fixture, layers: &[Vec<u8>]) -> Result<FileSystem, MergeError> {
        let mut fs = empty_tree();
        for l in layers {
            let imported = crate::import_layer(&fx.repo, &l[..]).expect("import");
            let stream = fx.repo.open_stream(&imported.content_id).expect("open");
            let entries: Vec<TarEntry> = entries(&fx.repo, stream)
                .expect("entries")
                .collect::<Result<_, _>>()
                .expect("read");
            merge_layer(&fx.repo, &mut fs, &entries)?;
        }
        Ok(fs)
    }

    fn dump(fs: &FileSystem) -> String {
        String::from_utf8(cfs_image::dumpfile::to_vec(fs)).expect("utf-8")
    }

    /// The paths of the tree, depth first.
    fn paths(fs: &FileSystem) -> Vec<String> {
        let mut out = Vec::new();
        fs.walk(|p, _| out.push(lossy(p)));
        out
    }

    fn get<'a>(fs: &'a FileSystem, path: &str) -> Option<&'a Inode> {
        let comps = components(path.as_bytes()).expect("path");
        let (last, dirs) = comps.split_last()?;
        find_dir(&fs.root, dirs)?.get(OsStr::from_bytes(last))
    }

    fn leaf(fs: &FileSystem, path: &str) -> Arc<Leaf> {
        match get(fs, path) {
            Some(Inode::Leaf(l)) => Arc::clone(l),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn dir<'a>(fs: &'a FileSystem, path: &str) -> &'a Directory {
        match get(fs, path) {
            Some(Inode::Directory(d)) => d,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn whiteouts_remove_lower_files_and_directories() {
        let fx = repo();
        let fs = merge(
            &fx,
            &[
                layer(&[
                    E::Dir("etc/", 0o755),
                    E::File("etc/motd", b"hi"),
                    E::File("etc/keep", b"k"),
                    E::Dir("var/", 0o755),
                    E::Dir("var/log/", 0o755),
                    E::Dir("var/log/apt/", 0o755),
                    E::File("var/log/apt/history", b"h"),
                ]),
                layer(&[
                    E::Dir("etc/", 0o700),
                    E::File("etc/.wh.motd", b""),
                    E::File("var/log/.wh.apt", b""),
                    E::File("etc/.wh.never-existed", b""),
                    E::File("nowhere/.wh.x", b""),
                ]),
            ],
        )
        .expect("merge");
        assert_eq!(paths(&fs), ["/etc", "/etc/keep", "/var", "/var/log"]);
        assert_eq!(
            dir(&fs, "etc").stat.mode,
            0o700,
            "the later layer's metadata"
        );
        // `nowhere` was only named by a whiteout: not created.
        assert!(get(&fs, "nowhere").is_none());
    }

    #[test]
    fn whiteouts_only_hide_lower_layers() {
        // The same layer re-creates what it whites out, in either order.
        let fx = repo();
        let fs = merge(
            &fx,
            &[
                layer(&[E::File("a", b"old"), E::File("b", b"old")]),
                layer(&[
                    E::File("a", b"new"),
                    E::File(".wh.a", b""),
                    E::File(".wh.b", b""),
                    E::File("b", b"new"),
                ]),
            ],
        )
        .expect("merge");
        for p in ["a", "b"] {
            assert_eq!(
                leaf(&fs, p).content,
                LeafContent::Regular(RegularFile::Inline(b"new"[..].into()))
            );
        }
    }

    #[test]
    fn opaque_directories_clear_lower_contents_only() {
        let fx = repo();
        let fs = merge(
            &fx,
            &[
                layer(&[
                    E::Dir("d/", 0o755),
                    E::File("d/lower", b"x"),
                    E::Dir("d/sub/", 0o755),
                    E::File("d/sub/deep", b"x"),
                    E::Dir("empty/", 0o755),
                    E::File("empty/gone", b"x"),
                ]),
                layer(&[
                    E::Dir("d/", 0o750),
                    // Sorts before the marker: must survive it.
                    E::File("d/-early", b"e"),
                    E::File("d/.wh..wh..opq", b""),
                    E::File("d/new", b"n"),
                    E::File("empty/.wh..wh..opq", b""),
                ]),
            ],
        )
        .expect("merge");
        assert_eq!(
            paths(&fs),
            ["/d", "/d/-early", "/d/new", "/empty"],
            "{}",
            dump(&fs)
        );
        assert_eq!(dir(&fs, "d").stat.mode, 0o750);
    }

    #[test]
    fn hardlinks_within_and_across_layers() {
        let fx = repo();
        let big = vec![7u8; 100];
        let fs = merge(
            &fx,
            &[
                layer(&[
                    E::Dir("bin/", 0o755),
                    E::File("bin/tool", &big),
                    E::Link("bin/tool2", "bin/tool"),
                ]),
                layer(&[
                    E::Dir("lib/", 0o755),
                    E::Link("lib/tool.link", "./bin/tool"),
                    E::Link("/lib/abs", "/bin/tool2"),
                ]),
            ],
        )
        .expect("merge");
        let t = leaf(&fs, "bin/tool");
        for p in ["bin/tool2", "lib/tool.link", "lib/abs"] {
            assert!(Arc::ptr_eq(&t, &leaf(&fs, p)), "{p}");
        }
        assert_eq!(fs.link_counts()[&Arc::as_ptr(&t)], 4);
        assert!(matches!(
            t.content,
            LeafContent::Regular(RegularFile::External(ExternalFile { size: 100, .. }))
        ));
        // Replacing one name leaves the others linked to the old file.
        let fs = merge(
            &fx,
            &[
                layer(&[E::File("a", b"1"), E::Link("b", "a")]),
                layer(&[E::File("a", b"2")]),
            ],
        )
        .expect("merge");
        assert_eq!(
            leaf(&fs, "b").content,
            LeafContent::Regular(RegularFile::Inline(b"1"[..].into()))
        );
        assert_eq!(fs.link_counts()[&Arc::as_ptr(&leaf(&fs, "b"))], 1);
    }

    #[test]
    fn bad_hardlinks_are_clear_errors() {
        let fx = repo();
        let e = merge(&fx, &[layer(&[E::Link("a", "missing")])]).expect_err("missing");
        assert!(e.problem.contains("does not exist"), "{e}");
        let e =
            merge(&fx, &[layer(&[E::Dir("d/", 0o755), E::Link("a", "d")])]).expect_err("directory");
        assert!(e.problem.contains("is a directory"), "{e}");
        // A link to a later entry of the same layer.
        let e = merge(&fx, &[layer(&[E::Link("a", "b"), E::File("b", b"")])]).expect_err("later");
        assert!(e.problem.contains("does not exist"), "{e}");
        // A link to a file whited out by the same layer.
        let e = merge(
            &fx,
            &[
                layer(&[E::File("a", b"")]),
                layer(&[E::File(".wh.a", b""), E::Link("b", "a")]),
            ],
        )
        .expect_err("whited out");
        assert!(e.problem.contains("does not exist"), "{e}");
        let e = merge(&fx, &[layer(&[E::Link("a", "./")])]).expect_err("root");
        assert!(e.problem.contains("root"), "{e}");
        let e =
            merge(&fx, &[layer(&[E::File("x", b""), E::Link("a", "../x")])]).expect_err("dotdot");
        assert!(e.problem.contains(".."), "{e}");
    }

    #[test]
    fn type_changes_between_layers() {
        let fx = repo();
        let fs = merge(
            &fx,
            &[
                layer(&[
                    E::Dir("d2f/", 0o755),
                    E::File("d2f/child", b"c"),
                    E::File("f2d", b"f"),
                    E::Sym("s2d", "elsewhere"),
                    E::File("f2s", b"f"),
                ]),
                layer(&[
                    E::File("d2f", b"now a file"),
                    E::Dir("f2d/", 0o711),
                    E::File("f2d/inside", b"i"),
                    E::File("s2d/under", b"u"),
                    E::Sym("f2s", "target"),
                ]),
            ],
        )
        .expect("merge");
        assert_eq!(
            leaf(&fs, "d2f").content,
            LeafContent::Regular(RegularFile::Inline(b"now a file"[..].into()))
        );
        assert_eq!(dir(&fs, "f2d").stat.mode, 0o711);
        // A symlink below a new file's path is replaced by an implicit directory (overlay
        // semantics: paths never resolve through symlinks).
        assert_eq!(dir(&fs, "s2d").stat, implicit_dir_stat());
        assert!(matches!(leaf(&fs, "f2s").content, LeafContent::Symlink(_)));
        assert_eq!(
            paths(&fs),
            ["/d2f", "/f2d", "/f2d/inside", "/f2s", "/s2d", "/s2d/under"]
        );
    }

    #[test]
    fn implicit_parents_root_and_path_normalisation() {
        let fx = repo();
        let fs = merge(
            &fx,
            &[layer(&[
                E::Dir("./", 0o777),
                E::File("./a/b/c", b"x"),
                E::File("/abs/file", b"y"),
                E::File("x//y/./z", b"z"),
                E::Dir("a/", 0o700),
            ])],
        )
        .expect("merge");
        assert_eq!(fs.root.stat, root_stat(), "root entries are ignored");
        assert_eq!(root_stat().mode, 0o555);
        assert_eq!(
            dir(&fs, "a").stat.mode,
            0o700,
            "named later: its own metadata"
        );
        for d in ["a/b", "abs", "x", "x/y"] {
            let s = &dir(&fs, d).stat;
            assert_eq!(
                (s.mode, s.uid, s.gid, s.mtime, s.xattrs.len()),
                (0o755, 0, 0, Mtime::default(), 0),
                "{d}"
            );
        }
        assert!(matches!(get(&fs, "x/y/z"), Some(Inode::Leaf(_))));
        for bad in ["../escape", "a/../../b", "a/.."] {
            let e = merge(&fx, &[layer(&[E::File(bad, b"")])]).expect_err(bad);
            assert!(e.problem.contains(".."), "{e}");
        }
        let e = merge(&fx, &[layer(&[E::Sym(".", "x")])]).expect_err("root symlink");
        assert!(e.problem.contains("root"), "{e}");
    }

    #[test]
    fn duplicates_in_one_layer_later_wins() {
        let fx = repo();
        let fs = merge(
            &fx,
            &[layer(&[
                E::File("f", b"first"),
                E::File("f", b"second"),
                E::Dir("d/", 0o755),
                E::File("d/child", b""),
                E::Dir("d/", 0o700),
                E::File("g", b""),
                E::Dir("g/", 0o755),
            ])],
        )
        .expect("merge");
        assert_eq!(
            leaf(&fs, "f").content,
            LeafContent::Regular(RegularFile::Inline(b"second"[..].into()))
        );
        assert_eq!(dir(&fs, "d").stat.mode, 0o700);
        assert!(
            get(&fs, "d/child").is_some(),
            "a directory entry keeps the contents"
        );
        assert!(matches!(get(&fs, "g"), Some(Inode::Directory(_))));
    }

    #[test]
    fn metadata_xattrs_devices_and_sizes() {
        let fx = repo();
        let big = vec![1u8; 65];
        let fs = merge(
            &fx,
            &[layer(&[
                E::FileWith(
                    "f",
                    b"data",
                    0o4755,
                    1000,
                    1_747_699_200,
                    &[
                        ("user.empty", b""),
                        ("user.bin", b"\x00\xff"),
                        ("security.capability", b"\x01\x00\x00\x02"),
                    ],
                ),
                E::File("small64", &[2u8; 64]),
                E::File("big65", &big),
                E::Char("null", 1, 3),
                E::Char("whiteout", 0, 0),
                E::Fifo("fifo"),
                E::Sym("link", "/usr/bin/x"),
                E::File("AUFS/.wh..wh.plnk", b""),
                E::File(".wh..wh.plnk/123", b"hardlink source"),
                E::File(".wh..wh.aufs", b""),
            ])],
        )
        .expect("merge");
        let f = leaf(&fs, "f");
        assert_eq!((f.stat.mode, f.stat.uid, f.stat.gid), (0o4755, 1000, 1000));
        assert_eq!(f.stat.mtime.sec, 1_747_699_200);
        let xattrs: Vec<(&[u8], &[u8])> = f
            .stat
            .xattrs
            .iter()
            .map(|(k, v)| (&k[..], &v[..]))
            .collect();
        assert_eq!(
            xattrs,
            [
                (&b"security.capability"[..], &b"\x01\x00\x00\x02"[..]),
                (b"user.bin", b"\x00\xff"),
                (b"user.empty", b""),
            ]
        );
        assert!(matches!(
            leaf(&fs, "small64").content,
            LeafContent::Regular(RegularFile::Inline(_))
        ));
        assert_eq!(
            leaf(&fs, "big65").content,
            LeafContent::Regular(RegularFile::External(ExternalFile::object(
                cfs_repository::FsVerityHasher::digest(HashAlgorithm::Sha256, &big),
                65
            )))
        );
        assert_eq!(leaf(&fs, "null").content, LeafContent::CharDevice(0x103));
        assert_eq!(leaf(&fs, "whiteout").content, LeafContent::CharDevice(0));
        assert_eq!(leaf(&fs, "fifo").content, LeafContent::Fifo);
        assert_eq!(
            leaf(&fs, "link").content,
            LeafContent::Symlink(OsStr::new("/usr/bin/x").into())
        );
        assert_eq!(
            paths(&fs),
            [
                "/big65",
                "/f",
                "/fifo",
                "/link",
                "/null",
                "/small64",
                "/whiteout"
            ]
        );
        assert_eq!(makedev(259, 0x12345), 0x1231_0345);
    }

    #[test]
    fn whiteout_names_used_as_directories_are_refused() {
        let fx = repo();
        let e = merge(&fx, &[layer(&[E::File(".wh.x/y", b"")])]).expect_err("refused");
        assert!(e.problem.contains("whiteout"), "{e}");
        let e = merge(&fx, &[layer(&[E::File("d/.wh.", b"")])]).expect_err("empty name");
        assert!(e.problem.contains("whiteout"), "{e}");
    }
}
