//! Reading a directory from disk into a [`FileSystem`] tree.
//!
//! [`scan`] walks a directory without following symlinks and records what a composefs image can
//! say about each file: type, permission bits, owner, mtime with nanoseconds, every extended
//! attribute, symlink targets, device numbers, and hardlinks (names with the same device and
//! inode number become one shared [`Leaf`]). Regular files of at most
//! [`ScanOptions::inline_max`] bytes are stored inline in the tree; larger ones are either
//! written to a [`Repository`] as objects ([`ObjectStore::Repository`]) or only hashed
//! ([`ObjectStore::HashOnly`], enough to compute an image ID).
//!
//! The walk (metadata, xattrs, small files) is sequential; the contents of large files are read,
//! hashed and stored by a pool of threads, each streaming one file at a time, so memory does not
//! grow with file size.
//!
//! Extended attributes are recorded as the filesystem reports them; the EROFS writer applies the
//! composefs escaping (`trusted.overlay.X` → `trusted.overlay.overlay.X`). Reading `trusted.*`
//! xattrs needs `CAP_SYS_ADMIN`: without it they are silently absent, as with any tool.
//!
//! A file that changes while it is scanned (different inode when opened, or a different size
//! when read) is an error rather than a silently inconsistent tree.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cfs_repository::{FsVerityHasher, HashAlgorithm, ObjectId, Repository};
use rustix::io::Errno;

use crate::tree::{
    Directory, ExternalFile, FileSystem, Inode, Leaf, LeafContent, MAX_DEPTH, Mtime,
    RECOMMENDED_INLINE_CONTENT_MAX, RegularFile, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK,
    S_IFMT, S_IFREG, S_IFSOCK, Stat, TreeError, Xattrs,
};

/// Where the contents of large regular files go.
#[derive(Clone, Copy)]
pub enum ObjectStore<'a> {
    /// Store them as objects in this repository (its hash algorithm names them).
    Repository(&'a Repository),
    /// Only compute their fs-verity digests with this algorithm (nothing is written).
    HashOnly(HashAlgorithm),
}

impl ObjectStore<'_> {
    /// The hash algorithm that names the objects.
    pub fn algorithm(&self) -> HashAlgorithm {
        match self {
            Self::Repository(r) => r.algorithm(),
            Self::HashOnly(a) => *a,
        }
    }
}

/// Tuning of [`scan`].
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// Regular files up to this many bytes are stored inline in the image (at most 5000).
    pub inline_max: usize,
    /// Threads reading and hashing large files; 0 means one per available core.
    pub threads: usize,
}

impl Default for ScanOptions {
    /// Inline up to 64 bytes (composefs's recommendation), one thread per core.
    fn default() -> Self {
        Self {
            inline_max: RECOMMENDED_INLINE_CONTENT_MAX,
            threads: 0,
        }
    }
}

/// Why a directory could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A system call on a path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The root of the scan is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    /// A file was replaced or resized while it was being read.
    #[error("{0}: file changed while it was being scanned")]
    Changed(PathBuf),
    /// A file type composefs cannot represent.
    #[error("{path}: unsupported file type (mode {mode:o})")]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// Its `st_mode`.
        mode: u32,
    },
    /// Directories nested deeper than [`MAX_DEPTH`].
    #[error("{0}: directories nested deeper than {MAX_DEPTH} levels")]
    TooDeep(PathBuf),
    /// A name or entry the tree refuses.
    #[error("{path}: {source}")]
    Tree {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: TreeError,
    },
    /// An xattr breaks a limit of [`crate::xattr`] (name, value or per-inode budget).
    #[error(transparent)]
    Xattr(#[from] crate::xattr::XattrError),
    /// Storing an object failed.
    #[error("{path}: storing the content: {source}")]
    Repository {
        /// The file whose content was being stored.
        path: PathBuf,
        /// The repository's error.
        source: cfs_repository::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ScanError + 'a {
    move |source| ScanError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Reads the directory `root` into a tree, storing or hashing the contents of large files.
pub fn scan(
    root: &Path,
    store: ObjectStore<'_>,
    options: ScanOptions,
) -> Result<FileSystem, ScanError> {
    let meta = std::fs::symlink_metadata(root).map_err(io_err("reading", root))?;
    if meta.mode() & S_IFMT != S_IFDIR {
        return Err(ScanError::NotADirectory(root.to_owned()));
    }
    let mut walker = Walker {
        leaves: Vec::new(),
        by_inode: HashMap::new(),
        regular: Vec::new(),
    };
    let inline_max = options.inline_max.min(crate::tree::INLINE_CONTENT_MAX);
    let skeleton = walker.walk_dir(root, &meta, 0)?;
    let Walker {
        mut leaves,
        regular,
        ..
    } = walker;

    // Read the regular files, in parallel, largest first so the pool finishes together.
    let mut order: Vec<usize> = regular;
    order.sort_by_key(|&i| std::cmp::Reverse(leaves[i].size));
    let results = read_contents(&leaves, &order, store, inline_max, options.threads)?;
    for (i, content) in results {
        leaves[i].content = Some(LeafContent::Regular(content));
    }

    let arcs = leaves
        .into_iter()
        .map(|l| {
            let content = l
                .content
                .ok_or_else(|| ScanError::Changed(l.path.clone()))?;
            Ok(Arc::new(Leaf {
                stat: l.stat,
                content,
            }))
        })
        .collect::<Result<Vec<_>, ScanError>>()?;
    let root_dir = build(skeleton, &arcs, root)?;
    Ok(FileSystem { root: root_dir })
}

/// A directory whose leaves are still indices into [`Walker::leaves`].
struct PendingDir {
    stat: Stat,
    entries: Vec<(OsString, PendingEntry)>,
}

enum PendingEntry {
    Dir(PendingDir),
    Leaf(usize),
}

struct PendingLeaf {
    path: PathBuf,
    stat: Stat,
    dev: u64,
    ino: u64,
    size: u64,
    /// `None` for regular files until their content is read.
    content: Option<LeafContent>,
}

struct Walker {
    leaves: Vec<PendingLeaf>,
    /// (dev, ino) → leaf index, for files with more than one link.
    by_inode: HashMap<(u64, u64), usize>,
    /// Indices of regular files whose content must be read.
    regular: Vec<usize>,
}

fn stat_of(meta: &std::fs::Metadata, xattrs: Xattrs) -> Stat {
    Stat {
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: Mtime {
            sec: meta.mtime(),
            // Always in 0..1e9 from the kernel.
            nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
        },
        xattrs,
    }
}

impl Walker {
    fn walk_dir(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        depth: usize,
    ) -> Result<PendingDir, ScanError> {
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep(path.to_owned()));
        }
        let stat = stat_of(meta, read_xattrs(path)?);
        let mut entries = Vec::new();
        let rd = std::fs::read_dir(path).map_err(io_err("reading directory", path))?;
        for entry in rd {
            let entry = entry.map_err(io_err("reading directory", path))?;
            let name = entry.file_name();
            let child = entry.path();
            let meta =
                std::fs::symlink_metadata(&child).map_err(io_err("reading metadata of", &child))?;
            let fmt = meta.mode() & S_IFMT;
            let e = if fmt == S_IFDIR {
                PendingEntry::Dir(self.walk_dir(&child, &meta, depth + 1)?)
            } else {
                PendingEntry::Leaf(self.leaf(child, &meta)?)
            };
            entries.push((name, e));
        }
        Ok(PendingDir { stat, entries })
    }

    fn leaf(&mut self, path: PathBuf, meta: &std::fs::Metadata) -> Result<usize, ScanError> {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1
            && let Some(&i) = self.by_inode.get(&key)
        {
            return Ok(i);
        }
        let mode = meta.mode();
        let content = match mode & S_IFMT {
            S_IFREG => None,
            S_IFLNK => {
                let target = std::fs::read_link(&path).map_err(io_err("reading link", &path))?;
                Some(LeafContent::Symlink(
                    target.into_os_string().into_boxed_os_str(),
                ))
            }
            S_IFCHR => Some(LeafContent::CharDevice(meta.rdev())),
            S_IFBLK => Some(LeafContent::BlockDevice(meta.rdev())),
            S_IFIFO => Some(LeafContent::Fifo),
            S_IFSOCK => Some(LeafContent::Socket),
            _ => return Err(ScanError::UnsupportedType { path, mode }),
        };
        let stat = stat_of(meta, read_xattrs(&path)?);
        let i = self.leaves.len();
        if content.is_none() {
            self.regular.push(i);
        }
        self.leaves.push(PendingLeaf {
            path,
            stat,
            dev: key.0,
            ino: key.1,
            size: meta.len(),
            content,
        });
        if meta.nlink() > 1 {
            self.by_inode.insert(key, i);
        }
        Ok(i)
    }
}

/// Every extended attribute of `path` (not following a final symlink).
fn read_xattrs(path: &Path) -> Result<Xattrs, ScanError> {
    let mut xattrs = Xattrs::new();
    let names = loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            // Filesystems without xattr support.
            Err(Errno::OPNOTSUPP) => return Ok(xattrs),
            Err(e) => return Err(io_err("listing xattrs of", path)(e.into())),
        };
        if size == 0 {
            return Ok(xattrs);
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            // Grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(io_err("listing xattrs of", path)(e.into())),
        }
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = loop {
            let size = match rustix::fs::lgetxattr_query(path, name) {
                Ok(n) => n,
                // Removed since it was listed.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(io_err("reading xattrs of", path)(e.into())),
            };
            let mut buf = vec![0u8; size];
            match rustix::fs::lgetxattr(path, name, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(io_err("reading xattrs of", path)(e.into())),
            }
        };
        if let Some(v) = value {
            xattrs.insert(name.into(), v.into_boxed_slice());
        }
    }
    crate::xattr::check_xattrs(&path.to_string_lossy(), &xattrs)?;
    Ok(xattrs)
}

/// Reads, hashes and stores the regular files `order` (indices into `leaves`) on a pool of
/// threads; returns each file's content.
fn read_contents(
    leaves: &[PendingLeaf],
    order: &[usize],
    store: ObjectStore<'_>,
    inline_max: usize,
    threads: usize,
) -> Result<Vec<(usize, RegularFile)>, ScanError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, order.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results = Mutex::new(Vec::with_capacity(order.len()));
    let first_error: Mutex<Option<ScanError>> = Mutex::new(None);
    let work = || {
        let mut buf = vec![0u8; 1 << 20];
        let mut mine = Vec::new();
        loop {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            match read_one(&leaves[i], store, inline_max, &mut buf) {
                Ok(c) => mine.push((i, c)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                    break;
                }
            }
        }
        if let Ok(mut all) = results.lock() {
            all.extend(mine);
        }
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| ScanError::Changed(PathBuf::from("(a scanning thread panicked)")))?;
    Ok(results)
}

/// Reads one regular file: inline if small, else stored or hashed while streaming.
fn read_one(
    leaf: &PendingLeaf,
    store: ObjectStore<'_>,
    inline_max: usize,
    buf: &mut [u8],
) -> Result<RegularFile, ScanError> {
    let path = &leaf.path;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .map_err(io_err("opening", path))?;
    let meta = file
        .metadata()
        .map_err(io_err("reading metadata of", path))?;
    if meta.dev() != leaf.dev || meta.ino() != leaf.ino || meta.mode() & S_IFMT != S_IFREG {
        return Err(ScanError::Changed(path.clone()));
    }
    // Fill the buffer (or reach EOF): small files are decided without a second read.
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading", path)(e)),
        }
    }
    let eof = filled < buf.len();
    let content = if eof && filled <= inline_max {
        RegularFile::Inline(buf[..filled].into())
    } else if eof {
        let id = match store {
            ObjectStore::HashOnly(alg) => FsVerityHasher::digest(alg, &buf[..filled]),
            ObjectStore::Repository(repo) => {
                repo.ensure_object(&buf[..filled])
                    .map_err(|source| ScanError::Repository {
                        path: path.clone(),
                        source,
                    })?
            }
        };
        RegularFile::External(Box::new(ExternalFile::object(id, filled as u64)))
    } else {
        let (id, size) = match store {
            ObjectStore::HashOnly(alg) => {
                let mut h = FsVerityHasher::new(alg);
                h.update(&buf[..filled]);
                copy_rest(&mut file, &mut h, buf, path)?;
                let size = h.size();
                (h.finalize(), size)
            }
            ObjectStore::Repository(repo) => {
                let repo_err = |source| ScanError::Repository {
                    path: path.clone(),
                    source,
                };
                let mut w = repo.object_writer().map_err(repo_err)?;
                w.write_all(&buf[..filled])
                    .map_err(io_err("storing", path))?;
                copy_rest(&mut file, &mut w, buf, path)?;
                let size = w.size();
                let id: ObjectId = w.finish().map_err(repo_err)?;
                (id, size)
            }
        };
        RegularFile::External(Box::new(ExternalFile::object(id, size)))
    };
    if content.size() != leaf.size {
        return Err(ScanError::Changed(path.clone()));
    }
    Ok(content)
}

/// `O_NOFOLLOW | O_NOCTTY`: never follow a symlink swapped in after the walk.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NOCTTY).bits() as i32
}

fn copy_rest(
    file: &mut File,
    out: &mut impl Write,
    buf: &mut [u8],
    path: &Path,
) -> Result<(), ScanError> {
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.write_all(&buf[..n]).map_err(io_err("storing", path))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading", path)(e)),
        }
    }
}

/// Turns the skeleton into a tree, sharing each leaf's `Arc` between its names.
fn build(dir: PendingDir, leaves: &[Arc<Leaf>], path: &Path) -> Result<Directory, ScanError> {
    let mut out = Directory::new(dir.stat);
    for (name, entry) in dir.entries {
        let inode = match entry {
            PendingEntry::Dir(d) => {
                let child = path.join(&name);
                Inode::Directory(Box::new(build(d, leaves, &child)?))
            }
            PendingEntry::Leaf(i) => Inode::Leaf(leaves[i].clone()),
        };
        out.insert(name, inode).map_err(|source| ScanError::Tree {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn scans_kinds_hardlinks_and_sizes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        std::fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
        std::fs::write(d.join("small"), b"hello").expect("write");
        std::fs::write(d.join("exact"), [7u8; 64]).expect("write");
        std::fs::write(d.join("sub/big"), vec![3u8; 3 << 20]).expect("write");
        std::fs::write(d.join("mid"), vec![5u8; 65]).expect("write");
        std::fs::hard_link(d.join("sub/big"), d.join("big-link")).expect("link");
        symlink("sub/big", d.join("sym")).expect("symlink");
        let run = |threads| {
            scan(
                d,
                ObjectStore::HashOnly(HashAlgorithm::Sha256),
                ScanOptions {
                    threads,
                    ..ScanOptions::default()
                },
            )
            .expect("scan")
        };
        let fs = run(1);
        assert!(fs == run(2), "thread count does not change the tree");
        let get = |dir: &Directory, n: &str| match dir.get(n.as_ref()) {
            Some(Inode::Leaf(l)) => l.clone(),
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(
            get(&fs.root, "small").content,
            LeafContent::Regular(RegularFile::Inline(b"hello"[..].into()))
        );
        assert!(matches!(
            get(&fs.root, "exact").content,
            LeafContent::Regular(RegularFile::Inline(_))
        ));
        let mid = get(&fs.root, "mid");
        assert_eq!(
            mid.content,
            LeafContent::Regular(RegularFile::External(Box::new(ExternalFile::object(
                FsVerityHasher::digest(HashAlgorithm::Sha256, &[5u8; 65]),
                65
            ))))
        );
        let Some(Inode::Directory(sub)) = fs.root.get("sub".as_ref()) else {
            panic!("sub");
        };
        let big = get(sub, "big");
        assert!(Arc::ptr_eq(&big, &get(&fs.root, "big-link")));
        assert_eq!(
            big.content,
            LeafContent::Regular(RegularFile::External(Box::new(ExternalFile::object(
                FsVerityHasher::digest(HashAlgorithm::Sha256, &vec![3u8; 3 << 20]),
                3 << 20
            ))))
        );
        assert_eq!(
            get(&fs.root, "sym").content,
            LeafContent::Symlink(std::ffi::OsStr::new("sub/big").into())
        );
    }

    #[test]
    fn root_must_be_a_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        assert!(matches!(
            scan(
                &f,
                ObjectStore::HashOnly(HashAlgorithm::Sha256),
                ScanOptions::default()
            ),
            Err(ScanError::NotADirectory(_))
        ));
    }
}
