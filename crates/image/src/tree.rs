//! The in-memory filesystem tree: directories, leaves (regular files, symlinks, devices, fifos,
//! sockets), hardlinks and extended attributes.
//!
//! The model keeps what a composefs image can say about a file and nothing derived from it:
//!
//! - A [`Directory`] owns its entries, sorted by the bytes of their names. Directories are never
//!   shared, so a directory hardlink cannot be expressed.
//! - A leaf is held as an [`Arc<Leaf>`]; a hardlink is the same `Arc` under several names. The
//!   link count is therefore *counted* (see [`FileSystem::link_counts`]), never stored, and a
//!   directory's link count is always 2 + its subdirectories.
//! - Names, symlink targets, xattr names and values are bytes, not UTF-8.
//! - Sizes of directories and symlinks are derived from their contents.
//!
//! Validation of names happens on insertion ([`Directory::insert`]), so a tree never holds an
//! empty name, `.`/`..`, or a name with `/` or NUL.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_repository::ObjectId;

/// The file type bits of a mode (`S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// Longest file name, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest symlink target or redirect path, in bytes (`PATH_MAX` - 1).
pub const PATH_MAX: usize = 4095;
/// Deepest directory nesting accepted when parsing dumpfiles or reading images: no path of
/// `PATH_MAX` bytes can go deeper, and it keeps recursive walks within the stack.
pub const MAX_DEPTH: usize = 2048;
/// Largest inline file content composefs accepts (`LCFS_INLINE_CONTENT_MAX`).
pub const INLINE_CONTENT_MAX: usize = 5000;
/// Files up to this size are best stored inline rather than as objects: below it the
/// redirect and metacopy xattrs would take more room than the data
/// (`LCFS_RECOMMENDED_INLINE_CONTENT_MAX`).
pub const RECOMMENDED_INLINE_CONTENT_MAX: usize = 64;

/// Why a tree operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Empty, `.`, `..`, contains `/` or NUL, or longer than [`NAME_MAX`].
    #[error("invalid file name {0:?}")]
    InvalidName(OsString),
    /// The directory already has an entry of that name.
    #[error("duplicate entry {0:?}")]
    Duplicate(OsString),
}

/// A modification time: seconds since the epoch and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtime {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds (composefs stores any 32-bit value; real ones are below 10⁹).
    pub nsec: u32,
}

/// Extended attributes: name → value, both bytes, kept sorted by name.
pub type Xattrs = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// Metadata every inode has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits of `st_mode` (`0o7777`: rwx, setuid, setgid, sticky). The file type
    /// lives in the inode's kind; other bits are ignored by the writer.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Mtime,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl Stat {
    /// A stat with the given permission bits (the type bits are masked off), owned by root,
    /// at the epoch, without xattrs.
    pub fn with_mode(mode: u32) -> Self {
        Self {
            mode: mode & 0o7777,
            ..Self::default()
        }
    }
}

/// A regular file stored outside the image, in the object store (or elsewhere, for images not
/// made by cfs): the image holds its size, and the overlayfs `redirect`/`metacopy` xattrs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalFile {
    /// File size in bytes (> 0).
    pub size: u64,
    /// The fs-verity digest of the content, if known (becomes the metacopy xattr).
    pub digest: Option<ObjectId>,
    /// Where the content is, relative to the objects directory (becomes the redirect xattr).
    /// For cfs this is always `XX/<rest of hex>` of `digest`; dumpfiles from elsewhere may
    /// carry other paths, or none.
    pub path: Option<Box<[u8]>>,
}

impl ExternalFile {
    /// A file stored as the object `id` of `size` bytes: the digest and the object path agree.
    pub fn object(id: ObjectId, size: u64) -> Self {
        Self {
            size,
            digest: Some(id),
            path: Some(id.object_path().into_bytes().into_boxed_slice()),
        }
    }
}

/// The content of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegularFile {
    /// Content stored in the image itself (empty files are `Inline` of nothing).
    Inline(Box<[u8]>),
    /// Content stored elsewhere (boxed: a digest is up to 64 bytes, and a tree holds one
    /// leaf per file, most of them small or empty; docs/performance.md).
    External(Box<ExternalFile>),
}

impl RegularFile {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Self::Inline(data) => data.len() as u64,
            Self::External(ext) => ext.size,
        }
    }
}

/// What a non-directory inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafContent {
    /// A regular file.
    Regular(RegularFile),
    /// A symbolic link and its (non-empty) target.
    Symlink(Box<OsStr>),
    /// A character device and its device number (`rdev`). rdev 0 is an overlayfs whiteout.
    CharDevice(u64),
    /// A block device and its device number.
    BlockDevice(u64),
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
}

impl LeafContent {
    /// The `S_IFMT` bits of this kind of file.
    pub fn file_type(&self) -> u32 {
        match self {
            Self::Regular(_) => S_IFREG,
            Self::Symlink(_) => S_IFLNK,
            Self::CharDevice(_) => S_IFCHR,
            Self::BlockDevice(_) => S_IFBLK,
            Self::Fifo => S_IFIFO,
            Self::Socket => S_IFSOCK,
        }
    }

    /// Is this an overlayfs whiteout (a character device 0/0)?
    pub fn is_whiteout(&self) -> bool {
        matches!(self, Self::CharDevice(0))
    }
}

/// A non-directory inode. Share it (the same `Arc` under several names) for hardlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Metadata.
    pub stat: Stat,
    /// What it is.
    pub content: LeafContent,
}

impl Leaf {
    /// The full `st_mode`: type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.content.file_type() | (self.stat.mode & 0o7777)
    }

    /// `st_size` as composefs reports it: content length for files, target length for
    /// symlinks, 0 otherwise.
    pub fn size(&self) -> u64 {
        match &self.content {
            LeafContent::Regular(f) => f.size(),
            LeafContent::Symlink(t) => t.len() as u64,
            _ => 0,
        }
    }
}

/// A directory entry: a subdirectory (owned) or a leaf (possibly shared: a hardlink).
#[derive(Clone, Debug)]
pub enum Inode {
    /// A subdirectory.
    Directory(Box<Directory>),
    /// A non-directory.
    Leaf(Arc<Leaf>),
}

impl Inode {
    /// The inode's metadata.
    pub fn stat(&self) -> &Stat {
        match self {
            Self::Directory(d) => &d.stat,
            Self::Leaf(l) => &l.stat,
        }
    }
}

impl PartialEq for Inode {
    /// Structural equality (hardlink sharing is compared by [`FileSystem`]'s equality).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Directory(a), Self::Directory(b)) => a == b,
            (Self::Leaf(a), Self::Leaf(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Inode {}

/// A directory: metadata and entries sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// Metadata.
    pub stat: Stat,
    /// Boxed names (16 bytes a key, not 24: a directory of many files holds many).
    entries: BTreeMap<Box<OsStr>, Inode>,
}

/// Checks a single path component.
pub fn validate_name(name: &OsStr) -> Result<(), TreeError> {
    let b = name.as_bytes();
    if b.is_empty()
        || b == b"."
        || b == b".."
        || b.len() > NAME_MAX
        || b.iter().any(|&c| c == b'/' || c == 0)
    {
        return Err(TreeError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Directory {
    /// An empty directory.
    pub fn new(stat: Stat) -> Self {
        Self {
            stat,
            entries: BTreeMap::new(),
        }
    }

    /// Adds an entry; refuses invalid names and duplicates.
    pub fn insert(&mut self, name: impl Into<OsString>, inode: Inode) -> Result<(), TreeError> {
        let name = name.into();
        validate_name(&name)?;
        if self.entries.contains_key(name.as_os_str()) {
            return Err(TreeError::Duplicate(name));
        }
        self.entries.insert(name.into_boxed_os_str(), inode);
        Ok(())
    }

    /// Adds or replaces an entry, returning the previous one.
    pub fn replace(
        &mut self,
        name: impl Into<OsString>,
        inode: Inode,
    ) -> Result<Option<Inode>, TreeError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(self.entries.insert(name.into_boxed_os_str(), inode))
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &OsStr) -> Option<Inode> {
        self.entries.remove(name)
    }

    /// Looks an entry up.
    pub fn get(&self, name: &OsStr) -> Option<&Inode> {
        self.entries.get(name)
    }

    /// Looks an entry up, mutably.
    pub fn get_mut(&mut self, name: &OsStr) -> Option<&mut Inode> {
        self.entries.get_mut(name)
    }

    /// The entries, sorted by name bytes.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&OsStr, &Inode)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// The entries, mutably.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = (&OsStr, &mut Inode)> {
        self.entries.iter_mut().map(|(k, v)| (&**k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Has no entries?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The link count: 2 + number of subdirectories.
    pub fn nlink(&self) -> u64 {
        2 + self
            .entries
            .values()
            .filter(|i| matches!(i, Inode::Directory(_)))
            .count() as u64
    }
}

/// A whole filesystem tree.
#[derive(Clone, Debug, Default)]
pub struct FileSystem {
    /// The root directory.
    pub root: Directory,
}

/// Identity of a shared leaf (pointer value of its `Arc`), for hardlink bookkeeping.
pub type LeafId = *const Leaf;

impl FileSystem {
    /// A filesystem of just an empty root directory.
    pub fn new(root_stat: Stat) -> Self {
        Self {
            root: Directory::new(root_stat),
        }
    }

    /// How many names each leaf has (its link count), keyed by [`Arc::as_ptr`].
    pub fn link_counts(&self) -> HashMap<LeafId, u64> {
        let mut counts = HashMap::new();
        let mut stack = vec![&self.root];
        while let Some(dir) = stack.pop() {
            for (_, inode) in dir.entries() {
                match inode {
                    Inode::Directory(d) => stack.push(d),
                    Inode::Leaf(l) => *counts.entry(Arc::as_ptr(l)).or_insert(0) += 1,
                }
            }
        }
        counts
    }

    /// Visits every entry depth-first in name order, calling `f(path, inode)`; the path is the
    /// absolute path as bytes (`/a/b`). The root itself is not visited.
    pub fn walk<'a>(&'a self, mut f: impl FnMut(&[u8], &'a Inode)) {
        fn go<'a>(dir: &'a Directory, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], &'a Inode)) {
            for (name, inode) in dir.entries() {
                let len = path.len();
                path.push(b'/');
                path.extend_from_slice(name.as_bytes());
                f(path, inode);
                if let Inode::Directory(d) = inode {
                    go(d, path, f);
                }
                path.truncate(len);
            }
        }
        go(&self.root, &mut Vec::new(), &mut f);
    }

    /// For each leaf, the path of its first name in depth-first name order: composefs treats
    /// that name as the inode and the others as hardlinks to it.
    pub fn primary_paths(&self) -> HashMap<LeafId, Vec<u8>> {
        let mut primary = HashMap::new();
        self.walk(|path, inode| {
            if let Inode::Leaf(l) = inode {
                primary
                    .entry(Arc::as_ptr(l))
                    .or_insert_with(|| path.to_vec());
            }
        });
        primary
    }
}

impl PartialEq for FileSystem {
    /// Equal trees: same structure, same metadata, and the same hardlink groups.
    fn eq(&self, other: &Self) -> bool {
        if self.root != other.root {
            return false;
        }
        // Same structure; now compare sharing: the i-th leaf visited on each side must map
        // consistently.
        let mut left = Vec::new();
        let mut right = Vec::new();
        self.walk(|_, i| {
            if let Inode::Leaf(l) = i {
                left.push(Arc::as_ptr(l));
            }
        });
        other.walk(|_, i| {
            if let Inode::Leaf(l) = i {
                right.push(Arc::as_ptr(l));
            }
        });
        if left.len() != right.len() {
            return false;
        }
        let mut l2r: HashMap<LeafId, LeafId> = HashMap::new();
        let mut r2l: HashMap<LeafId, LeafId> = HashMap::new();
        for (a, b) in left.into_iter().zip(right) {
            if *l2r.entry(a).or_insert(b) != b || *r2l.entry(b).or_insert(a) != a {
                return false;
            }
        }
        true
    }
}

impl Eq for FileSystem {}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> Arc<Leaf> {
        Arc::new(Leaf {
            stat: Stat::with_mode(0o644),
            content: LeafContent::Regular(RegularFile::Inline(data.into())),
        })
    }

    #[test]
    fn names_are_validated() {
        let mut d = Directory::new(Stat::with_mode(0o755));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            let name = OsStr::from_bytes(bad);
            assert!(d.insert(name, Inode::Leaf(file(b""))).is_err(), "{bad:?}");
        }
        d.insert("ok", Inode::Leaf(file(b""))).expect("valid");
        assert_eq!(
            d.insert("ok", Inode::Leaf(file(b""))),
            Err(TreeError::Duplicate("ok".into()))
        );
        d.insert(OsStr::from_bytes(b"\xff\x01"), Inode::Leaf(file(b"")))
            .expect("non-UTF-8 is fine");
    }

    #[test]
    fn entries_sorted_by_bytes_and_links_counted() {
        let mut fs = FileSystem::new(Stat::with_mode(0o755));
        let shared = file(b"x");
        fs.root
            .insert("b", Inode::Leaf(shared.clone()))
            .expect("ok");
        fs.root
            .insert("a", Inode::Directory(Box::default()))
            .expect("ok");
        fs.root
            .insert("B", Inode::Leaf(shared.clone()))
            .expect("ok");
        let names: Vec<_> = fs.root.entries().map(|(n, _)| n.to_owned()).collect();
        assert_eq!(names, ["B", "a", "b"]);
        assert_eq!(fs.link_counts()[&Arc::as_ptr(&shared)], 2);
        assert_eq!(fs.root.nlink(), 3);
        assert_eq!(fs.primary_paths()[&Arc::as_ptr(&shared)], b"/B");
    }

    #[test]
    fn equality_compares_sharing() {
        let shared = file(b"x");
        let mut a = FileSystem::default();
        a.root.insert("x", Inode::Leaf(shared.clone())).expect("ok");
        a.root.insert("y", Inode::Leaf(shared)).expect("ok");
        let mut b = FileSystem::default();
        b.root.insert("x", Inode::Leaf(file(b"x"))).expect("ok");
        b.root.insert("y", Inode::Leaf(file(b"x"))).expect("ok");
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
