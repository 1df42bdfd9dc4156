//! A directory tree, file by file, as far as a composefs image can tell: for tests that compare
//! a mounted image with the tree it was made from (or with another tool's unpacking of the same
//! image).
//!
//! Take a [`snapshot`] of each tree, adjust one map for differences the test knows of (the
//! entries' fields are public), then [`assert_same`].

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every file of a tree, by its path relative to the root (the root itself is "").
pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// What a file is, as far as a composefs image can tell. A directory's `rdev`, `nlink` and `size`
/// are 0: they are the filesystem's, not the image's.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// File type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub rdev: u64,
    pub nlink: u64,
    pub size: u64,
    /// SHA-256 of a regular file's content (to keep memory flat on large trees), a symlink's
    /// target; empty for anything else.
    pub data: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The other names of the same inode (hardlinks); empty for directories.
    pub links: BTreeSet<PathBuf>,
}

/// Every file under `root`, root included.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    // The names of each inode that is not a directory, by (device, inode number).
    let mut inodes: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let m = std::fs::symlink_metadata(&path).expect("lstat");
        let ft = m.file_type();
        let data = if ft.is_file() {
            sha256_file(&path)
        } else if ft.is_symlink() {
            std::fs::read_link(&path)
                .expect("readlink")
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        if ft.is_dir() {
            for e in std::fs::read_dir(&path).expect("readdir") {
                stack.push(rel.join(e.expect("entry").file_name()));
            }
        } else {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .insert(rel.clone());
        }
        let unless_dir = |v: u64| if ft.is_dir() { 0 } else { v };
        let entry = Entry {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), m.mtime_nsec()),
            rdev: unless_dir(m.rdev()),
            nlink: unless_dir(m.nlink()),
            size: unless_dir(m.size()),
            data,
            xattrs: xattrs(&path),
            links: BTreeSet::new(),
        };
        out.insert(rel, entry);
    }
    for names in inodes.values() {
        for name in names {
            let e = out.get_mut(name).expect("snapshotted");
            e.links = names.iter().filter(|n| *n != name).cloned().collect();
        }
    }
    out
}

/// Asserts that two snapshots hold the same paths, with equal entries.
pub fn assert_same(a: &Snapshot, b: &Snapshot) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same paths"
    );
    for (path, ea) in a {
        assert_eq!(ea, &b[path], "{}", path.display());
    }
}

fn sha256_file(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    h.finalize().to_vec()
}

/// A file's xattrs (not following a symlink), name → value.
fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names).expect("listxattr");
    names.truncate(n);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        let n = rustix::fs::lgetxattr(path, name, &mut value).expect("getxattr");
        value.truncate(n);
        out.insert(name.to_vec(), value);
    }
    out
}
