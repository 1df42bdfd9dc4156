//! [`Repository`]: opening and creating a store, writing and reading objects, and the links that
//! name streams, images and refs. Layout (see docs/repository.md):
//!
//! ```text
//! REPO/meta.json               format version, hash algorithm, verity mode
//! REPO/objects/XX/<rest>       objects, named by fs-verity digest, read-only
//! REPO/streams/<content-id>    -> ../objects/XX/<rest>   (splitstreams)
//! REPO/streams/refs/<name>     -> ../<content-id>        (nested names get more ../)
//! REPO/images/<image-id>       -> ../objects/XX/<rest>   (EROFS images)
//! REPO/images/refs/<name>      -> ../<image-id>
//! REPO/tmp/                    staging where O_TMPFILE is unavailable; emptied on open
//! REPO/lock                    the lock file (mode 0600), see [`crate::lock`]
//! ```
//!
//! Every process that writes holds a shared `flock` on `REPO/lock` for as long as the
//! [`Repository`] lives; gc takes it exclusively, so it never runs while objects are written
//! but not yet named. Everything below the root is reached through descriptors opened without
//! following symlinks ([`crate::layout`]): a damaged layout is refused, never followed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::digest::{HashAlgorithm, ObjectId};
use crate::error::{Error, IoContext, Result};
use crate::fsverity::{self, FsVerityHasher, VerityError};
use crate::layout::{self, LAYOUT_DIRS, OpenFileError};
use crate::lock::{LockMode, RepoLock};
use crate::meta::read_meta;
pub use crate::meta::{ErofsFormats, FORMAT_VERSION, Features, InitVerity, Meta, VerityMode};
pub use import::Imported;
pub use object_writer::ObjectWriter;

mod import;
mod object_writer;

/// Directories under one of the repository's [`Dir`]s (`""` is the `Dir` itself) whose entries
/// changed: each is fsynced once by [`Repository::sync_dirs`] (in `durable.rs`).
pub(crate) type DirtyDirs = BTreeSet<String>;

/// What temporary link names are made of: `.tmp-link-<pid>-<n>-<nanos>`.
pub(crate) const TEMP_LINK: &str = "link";

/// The directory part of `rel` (`""` for a name directly in the `Dir`).
pub(crate) fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

/// A directory relative to the repository root, with the path kept for messages.
pub(crate) struct Dir {
    pub(crate) fd: OwnedFd,
    pub(crate) rel: &'static str,
}

/// An open repository. Holds a shared lock (exclusive during gc) until dropped.
pub struct Repository {
    pub(crate) path: PathBuf,
    pub(crate) root: OwnedFd,
    pub(crate) lock: RepoLock,
    pub(crate) objects: Dir,
    pub(crate) streams: Dir,
    pub(crate) images: Dir,
    pub(crate) tmp: Dir,
    pub(crate) meta: Meta,
    /// Whether `O_TMPFILE` works in `objects/` (probed once at open).
    tmpfile_ok: bool,
    counter: AtomicU64,
}

/// What is at an object's path.
pub(crate) enum Found {
    /// A regular file (opened when asked for).
    Present(Option<OwnedFd>),
    /// Nothing.
    Missing,
    /// Something that is not a regular file, or an `objects/XX` that is not a directory.
    Damaged {
        /// Relative to the repository.
        rel: String,
        /// What it is.
        what: &'static str,
    },
}

/// Opens the layout directory `rel` beneath the root; a symlink or non-directory there is
/// [`Error::DamagedLayout`], and a missing one is created (an older or half-created
/// repository) where the parent allows.
fn open_dir(root: BorrowedFd<'_>, rel: &'static str, base: &Path) -> Result<Dir> {
    let damaged = |what| Error::DamagedLayout {
        repo: base.to_owned(),
        entry: rel.to_owned(),
        what,
    };
    let what_is = |e: Errno| -> Result<Error> {
        let (parent, name) = layout::open_parent(root, rel).ctx("opening", base.join(rel))?;
        Ok(match layout::entry_type(parent.as_fd(), name) {
            Ok(Some(t)) => damaged(layout::describe(t)),
            _ => Error::Io {
                op: "opening",
                path: base.join(rel),
                source: e.into(),
            },
        })
    };
    match layout::open_dir_beneath(root, rel) {
        Ok(fd) => return Ok(Dir { fd, rel }),
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => return Err(what_is(e)?),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e).ctx("opening", base.join(rel)),
    }
    // Created at init (made durable by its final `syncfs`) or for an older repository.
    match mkdir_p(root, rel, &mut DirtyDirs::new()) {
        Ok(fd) => Ok(Dir { fd, rel }),
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => Err(what_is(e)?),
        Err(Errno::NOENT) => Err(damaged("missing")),
        Err(e) => Err(e).ctx("creating", base.join(rel)),
    }
}

/// Creates the directory `rel` below `dirfd` and any missing parents, one component at a time
/// without following a symlink (`mkdirat` never follows its last component; each parent is
/// opened `O_NOFOLLOW`), and returns it opened. Every directory it creates goes into `dirty`
/// with its parent (both must be fsynced for the new directory to survive a crash).
fn mkdir_p(dirfd: BorrowedFd<'_>, rel: &str, dirty: &mut DirtyDirs) -> rustix::io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    let mut walked = 0;
    for part in rel.split('/') {
        let at = cur.as_ref().map_or(dirfd, |fd| fd.as_fd());
        let here = rel.get(..walked + part.len()).ok_or(Errno::INVAL)?;
        walked += part.len() + 1;
        match rustix::fs::mkdirat(at, part, Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                dirty.insert(here.to_owned());
                dirty.insert(parent_of(here).to_owned());
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        cur = Some(layout::open_dir_beneath(at, part)?);
    }
    cur.ok_or(Errno::INVAL)
}

impl Repository {
    /// Creates a repository in `path` (created if missing; must not already hold one).
    pub fn init(path: &Path, hash: HashAlgorithm, verity: InitVerity) -> Result<Self> {
        std::fs::create_dir_all(path).ctx("creating", path)?;
        let root = open_root(path)?;
        if layout::entry_type(root.as_fd(), "meta.json")
            .ctx("checking", path.join("meta.json"))?
            .is_some()
        {
            return Err(Error::AlreadyExists(path.to_owned()));
        }
        let lock = RepoLock::open(root.as_fd(), path)?;
        lock.lock(LockMode::Exclusive)?;
        let mut tmp = None;
        for d in LAYOUT_DIRS {
            let dir = open_dir(root.as_fd(), d, path)?;
            if d == "tmp" {
                tmp = Some(dir);
            }
        }
        let tmp = tmp.ok_or_else(|| Error::DamagedLayout {
            repo: path.to_owned(),
            entry: "tmp".into(),
            what: "missing",
        })?;
        let mode = match verity {
            InitVerity::Insecure => VerityMode::Insecure,
            InitVerity::Require => {
                if !probe_verity(&tmp, path, hash)? {
                    return Err(Error::VerityUnsupported(path.to_owned()));
                }
                VerityMode::Enforced
            }
        };
        let meta = Meta::new(hash, mode);
        let mut json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::BadMeta {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        // Written last and atomically: a directory with meta.json is a complete repository.
        let name = format!(".meta.json.new-{}", std::process::id());
        let tmp_path = path.join("tmp").join(&name);
        let fd = rustix::fs::openat(
            &tmp.fd,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .ctx("creating", &tmp_path)?;
        let mut f = File::from(fd);
        f.write_all(&json).ctx("writing", &tmp_path)?;
        f.sync_all().ctx("syncing", &tmp_path)?;
        if mode == VerityMode::Enforced {
            // composefs-rs takes a repository whose meta.json has fs-verity for a secure one
            // (and mounts its images with verity=require); meta.json is never rewritten.
            let ro = reopen_readonly(&f).ctx("reopening", &tmp_path)?;
            drop(f);
            fsverity::enable_verity(&ro, hash).map_err(|source| Error::Verity {
                object: tmp_path.display().to_string(),
                source,
            })?;
        } else {
            drop(f);
        }
        rustix::fs::renameat(&tmp.fd, name.as_str(), &root, "meta.json")
            .ctx("renaming to", path.join("meta.json"))?;
        // `init` reports success only once the directories and meta.json's name are durable.
        rustix::fs::syncfs(&root).ctx("syncing", path)?;
        drop(lock);
        Self::open(path)
    }

    /// Opens an existing repository and takes a shared lock on it. A damaged layout (a layout
    /// directory that is a symlink or not a directory) is refused with
    /// [`Error::DamagedLayout`]; [`Repository::repair_layout`] fixes it.
    pub fn open(path: &Path) -> Result<Self> {
        let root = open_root(path)?;
        let meta = read_meta(root.as_fd(), path)?;
        let lock = RepoLock::open(root.as_fd(), path)?;
        // Layout dirs missing from an older repository are created under the lock.
        lock.lock(LockMode::Shared)?;
        let repo = Self {
            objects: open_dir(root.as_fd(), "objects", path)?,
            streams: open_dir(root.as_fd(), "streams", path)?,
            images: open_dir(root.as_fd(), "images", path)?,
            tmp: open_dir(root.as_fd(), "tmp", path)?,
            path: path.to_owned(),
            root,
            lock,
            meta,
            tmpfile_ok: true,
            counter: AtomicU64::new(0),
        };
        for d in ["streams/refs", "images/refs"] {
            open_dir(repo.root.as_fd(), d, path)?;
        }
        let mut repo = repo;
        repo.tmpfile_ok = repo.probe_tmpfile();
        // Clean leftovers in tmp/ if nobody else has the repository open; then hold it shared.
        // (A failed non-blocking conversion drops the shared lock: take it again either way.)
        let alone = repo.lock.try_lock(LockMode::Exclusive)?;
        let cleaned = if alone { repo.clean_tmp() } else { Ok(()) };
        repo.lock.lock(LockMode::Shared)?;
        cleaned?;
        Ok(repo)
    }

    /// Takes the exclusive lock (waits, for at most the lock timeout, for every other process
    /// using the repository).
    pub(crate) fn lock_exclusive(&self) -> Result<()> {
        self.lock.lock(LockMode::Exclusive)
    }

    /// Returns to the shared lock.
    pub(crate) fn lock_shared(&self) -> Result<()> {
        self.lock.lock(LockMode::Shared)
    }

    /// The descriptor of `objects/` (for overlayfs's data-only lower layer): opened without
    /// following a symlink, so it is the repository's own.
    pub fn objects_dir(&self) -> BorrowedFd<'_> {
        self.objects.fd.as_fd()
    }

    fn probe_tmpfile(&self) -> bool {
        rustix::fs::openat(
            &self.objects.fd,
            ".",
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o444),
        )
        .is_ok()
    }

    fn clean_tmp(&self) -> Result<()> {
        layout::clear_tmp(self.tmp.fd.as_fd(), &|| self.temp_name("rm"))
            .ctx("emptying", self.path.join("tmp"))
    }

    /// Moves `name` of `dirfd` into `tmp/` and removes it there (a directory with everything
    /// in it), never following a symlink: how a damaged entry is taken out of the layout.
    pub(crate) fn move_aside(&self, dirfd: BorrowedFd<'_>, name: &str, rel: &str) -> Result<()> {
        let raw = std::ffi::CString::new(name).map_err(|_| Error::Io {
            op: "moving aside",
            path: self.path.join(rel),
            source: Errno::INVAL.into(),
        })?;
        self.move_aside_raw(dirfd, &raw, &self.path.join(rel))
    }

    /// [`Repository::move_aside`] for a name given as raw bytes (`path` is for messages).
    pub(crate) fn move_aside_raw(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        path: &Path,
    ) -> Result<()> {
        let fresh = self.temp_name("aside");
        match rustix::fs::renameat(dirfd, name, &self.tmp.fd, fresh.as_str()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e).ctx("moving aside", path),
        }
        layout::remove_tree_in_tmp(self.tmp.fd.as_fd(), &fresh, &|| self.temp_name("rm"))
            .ctx("removing", self.path.join("tmp").join(&fresh))
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The hash algorithm of object names.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.meta.hash
    }

    /// Whether verity is enforced.
    pub fn verity(&self) -> VerityMode {
        self.meta.verity
    }

    pub(crate) fn check_alg(&self, id: &ObjectId) -> Result<()> {
        if id.algorithm() != self.meta.hash {
            return Err(Error::WrongAlgorithm {
                id: Box::new(*id),
                algorithm: self.meta.hash,
            });
        }
        Ok(())
    }

    /// The absolute path of an object (for messages and for tools such as overlayfs).
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.path.join("objects").join(id.object_path())
    }

    // ----- objects -----

    /// Whether an object exists. In an enforced repository, an existing object's verity digest
    /// is measured (a cheap ioctl) and a mismatch is an error.
    pub fn has_object(&self, id: &ObjectId) -> Result<bool> {
        self.check_alg(id)?;
        let open = self.meta.verity == VerityMode::Enforced;
        match self.find_object(id, open)? {
            Found::Present(fd) => {
                if let Some(fd) = fd {
                    self.verify_measured(id, &fd)?;
                }
                Ok(true)
            }
            // Something that is not a regular file is no object: the writer replaces it.
            Found::Missing | Found::Damaged { .. } => Ok(false),
        }
    }

    /// What is at `objects/XX/<rest>` for `id`, without following a symlink, blocking on a
    /// FIFO or opening a device; with `open`, a regular file is opened read-only.
    pub(crate) fn find_object(&self, id: &ObjectId, open: bool) -> Result<Found> {
        let hex = id.to_hex();
        let (xx, rest) = hex.split_at(2);
        let dir = match layout::open_dir_beneath(self.objects.fd.as_fd(), xx) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Found::Missing),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                let what = match layout::entry_type(self.objects.fd.as_fd(), xx) {
                    Ok(Some(t)) => layout::describe(t),
                    Ok(None) => return Ok(Found::Missing),
                    Err(_) => return Err(e).ctx("opening", self.path.join("objects").join(xx)),
                };
                return Ok(Found::Damaged {
                    rel: format!("objects/{xx}"),
                    what,
                });
            }
            Err(e) => return Err(e).ctx("opening", self.path.join("objects").join(xx)),
        };
        let damaged = |what| Found::Damaged {
            rel: format!("objects/{xx}/{rest}"),
            what,
        };
        if open {
            match layout::open_regular(dir.as_fd(), rest) {
                Ok(fd) => Ok(Found::Present(Some(fd))),
                Err(OpenFileError::Errno(Errno::NOENT)) => Ok(Found::Missing),
                Err(OpenFileError::NotRegular(what)) => Ok(damaged(what)),
                Err(OpenFileError::Errno(e)) => Err(e).ctx("opening", self.object_path(id)),
            }
        } else {
            match layout::entry_type(dir.as_fd(), rest).ctx("checking", self.object_path(id))? {
                None => Ok(Found::Missing),
                Some(FileType::RegularFile) => Ok(Found::Present(None)),
                Some(t) => Ok(damaged(layout::describe(t))),
            }
        }
    }

    /// Opens an object's regular file (no verity check); a missing object is
    /// [`Error::NotFound`], anything but a regular file [`Error::NotRegular`].
    pub(crate) fn open_object_fd(&self, id: &ObjectId) -> Result<OwnedFd> {
        match self.find_object(id, true)? {
            Found::Present(Some(fd)) => Ok(fd),
            Found::Present(None) | Found::Missing => Err(Error::NotFound {
                kind: "object",
                name: id.to_string(),
            }),
            Found::Damaged { rel, what } => Err(Error::NotRegular {
                path: self.path.join(rel),
                what,
            }),
        }
    }

    /// Removes the object `id`'s file (through its `objects/XX` descriptor); `false` if absent.
    pub(crate) fn remove_object(&self, id: &ObjectId) -> Result<bool> {
        let hex = id.to_hex();
        let (xx, rest) = hex.split_at(2);
        let dir = match layout::open_dir_beneath(self.objects.fd.as_fd(), xx) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e).ctx("opening", self.path.join("objects").join(xx)),
        };
        crate::fault::point();
        match rustix::fs::unlinkat(&dir, rest, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e).ctx("removing", self.object_path(id)),
        }
    }

    fn verify_measured(&self, id: &ObjectId, fd: impl AsFd) -> Result<()> {
        let measured =
            fsverity::measure_verity(fd, self.meta.hash).map_err(|source| Error::Verity {
                object: id.to_string(),
                source,
            })?;
        if measured != *id {
            return Err(Error::CorruptObject {
                expected: Box::new(*id),
                actual: Box::new(measured),
            });
        }
        Ok(())
    }

    /// Opens an object for reading; in an enforced repository its verity digest is checked.
    pub fn open_object(&self, id: &ObjectId) -> Result<File> {
        self.check_alg(id)?;
        let fd = self.open_object_fd(id)?;
        if self.meta.verity == VerityMode::Enforced {
            self.verify_measured(id, &fd)?;
        }
        Ok(File::from(fd))
    }

    /// Reads a whole object into memory.
    pub fn read_object(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_object(id)?
            .read_to_end(&mut v)
            .ctx("reading", self.object_path(id))?;
        Ok(v)
    }

    /// Stores bytes as an object (or finds them already stored) and returns its id.
    pub fn ensure_object(&self, data: &[u8]) -> Result<ObjectId> {
        let id = FsVerityHasher::digest(self.meta.hash, data);
        if self.has_object(&id)? {
            return Ok(id);
        }
        let mut w = self.object_writer()?;
        w.file()
            .and_then(|f| f.write_all(data))
            .ctx("writing", self.object_path(&id))?;
        w.commit(id)?;
        Ok(id)
    }

    pub(crate) fn temp_name(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!(".tmp-{what}-{}-{n}-{nanos}", std::process::id())
    }

    /// Links a finished staging file into `objects/` under `id`, enabling verity first if
    /// enforced. An object that appeared meanwhile (another writer) is kept and ours dropped.
    fn link_object(&self, file: File, staged: Option<String>, id: &ObjectId) -> Result<()> {
        let hex = id.to_hex();
        let (dir, rest) = hex.split_at(2);
        let xx = self.object_dir(dir)?;
        let file = if self.meta.verity == VerityMode::Enforced {
            // Verity needs a read-only descriptor and no writable one left open.
            let ro = reopen_readonly(&file).ctx("reopening", self.object_path(id))?;
            drop(file);
            fsverity::enable_verity(&ro, self.meta.hash).map_err(|source| Error::Verity {
                object: id.to_string(),
                source,
            })?;
            self.verify_measured(id, &ro)?;
            ro
        } else {
            file
        };
        let link = || match &staged {
            None => link_tmpfile(&file, &xx, rest),
            Some(name) => {
                rustix::fs::linkat(&self.tmp.fd, name.as_str(), &xx, rest, AtFlags::empty())
            }
        };
        crate::fault::point();
        let mut res = link();
        // EEXIST is done only if what is there is a regular file (another writer won the
        // race); a FIFO, directory, symlink or device there is moved aside and replaced.
        for _ in 0..2 {
            if res != Err(Errno::EXIST) {
                break;
            }
            match layout::entry_type(xx.as_fd(), rest).ctx("checking", self.object_path(id))? {
                Some(FileType::RegularFile) => {
                    res = Ok(());
                    break;
                }
                None => {}
                Some(_) => self.move_aside(xx.as_fd(), rest, &format!("objects/{dir}/{rest}"))?,
            }
            res = link();
        }
        if let Some(name) = &staged {
            let _ = rustix::fs::unlinkat(&self.tmp.fd, name.as_str(), AtFlags::empty());
        }
        match res {
            Ok(()) => {
                start_writeback(&file);
                Ok(())
            }
            Err(e) => Err(e).ctx("linking", self.object_path(id)),
        }
    }

    /// Opens (creating it if missing) the object directory `objects/XX`; one that is a symlink
    /// or not a directory is moved aside (never followed) and replaced.
    fn object_dir(&self, xx: &str) -> Result<OwnedFd> {
        let path = || self.path.join("objects").join(xx);
        // `objects/XX` and the objects' entries in it are made durable by the `syncfs` that
        // precedes naming anything that needs them, not by an fsync here.
        let mut dirty = DirtyDirs::new();
        match mkdir_p(self.objects.fd.as_fd(), xx, &mut dirty) {
            Ok(fd) => Ok(fd),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                self.move_aside(self.objects.fd.as_fd(), xx, &format!("objects/{xx}"))?;
                mkdir_p(self.objects.fd.as_fd(), xx, &mut dirty).ctx("creating", path())
            }
            Err(e) => Err(e).ctx("creating", path()),
        }
    }

    /// An unnamed temporary file in `tmp/` (for spilling large intermediate data).
    pub(crate) fn anonymous_tmpfile(&self) -> Result<File> {
        match rustix::fs::openat(
            &self.tmp.fd,
            ".",
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(File::from(fd)),
            Err(_) => {
                let name = self.temp_name("spill");
                let fd = rustix::fs::openat(
                    &self.tmp.fd,
                    &name,
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .ctx("creating", self.path.join("tmp").join(&name))?;
                let _ = rustix::fs::unlinkat(&self.tmp.fd, name.as_str(), AtFlags::empty());
                Ok(File::from(fd))
            }
        }
    }

    /// Flushes everything written so far to stable storage (one `syncfs` for the whole
    /// filesystem: cheaper than an fsync per object).
    pub fn sync(&self) -> Result<()> {
        rustix::fs::syncfs(&self.root).ctx("syncing", &self.path)
    }

    // ----- link helpers -----

    /// Creates or atomically replaces the link `dir/rel` and returns once it is durable.
    pub(crate) fn replace_symlink(&self, dir: &Dir, rel: &str, target: &str) -> Result<()> {
        let mut dirty = DirtyDirs::new();
        self.link_at(dir, rel, target, &mut dirty)?;
        self.sync_dirs(dir, &dirty)
    }

    /// Creates or atomically replaces the link `dir/rel` (a temporary link renamed over it);
    /// the directories whose entries changed go into `dirty` for [`Repository::sync_dirs`].
    pub(crate) fn link_at(
        &self,
        dir: &Dir,
        rel: &str,
        target: &str,
        dirty: &mut DirtyDirs,
    ) -> Result<()> {
        let full = self.path.join(dir.rel).join(rel);
        let (parent, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (
                layout::Parent::Owned(
                    mkdir_p(dir.fd.as_fd(), parent, dirty)
                        .ctx("creating", self.path.join(dir.rel).join(parent))?,
                ),
                name,
            ),
            None => (layout::Parent::Borrowed(dir.fd.as_fd()), rel),
        };
        dirty.insert(parent_of(rel).to_owned());
        let tmp_name = self.temp_name(TEMP_LINK);
        crate::fault::point();
        rustix::fs::symlinkat(target, &parent, tmp_name.as_str()).ctx("creating link", &full)?;
        crate::fault::point();
        let mut res = rustix::fs::renameat(&parent, tmp_name.as_str(), &parent, name);
        // A directory where a stream or image link belongs is a stray: move it aside. (Not in
        // refs/, where a directory holds other refs.)
        if matches!(res, Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST)) && !rel.contains('/') {
            self.move_aside(parent.as_fd(), name, &format!("{}/{rel}", dir.rel))?;
            res = rustix::fs::renameat(&parent, tmp_name.as_str(), &parent, name);
        }
        if let Err(e) = res {
            let _ = rustix::fs::unlinkat(&parent, tmp_name.as_str(), AtFlags::empty());
            return Err(e).ctx("renaming link to", &full);
        }
        Ok(())
    }

    /// Removes the stream link `streams/<content id>`; `false` if it did not exist. Not synced:
    /// the caller (gc, repair) fsyncs `streams/` once with [`Repository::sync_link_dirs`].
    pub(crate) fn remove_stream_link(&self, content_id: &str) -> Result<bool> {
        self.unlink_link(&self.streams, content_id, false)
    }

    /// Removes the image link `images/<hex>`; `false` if it did not exist. Not synced, as
    /// [`Repository::remove_stream_link`].
    pub(crate) fn remove_image_link(&self, hex: &str) -> Result<bool> {
        self.unlink_link(&self.images, hex, false)
    }

    /// Removes the link `dir/rel` and returns once the removal is durable.
    pub(crate) fn remove_link(&self, dir: &Dir, rel: &str) -> Result<bool> {
        self.unlink_link(dir, rel, true)
    }

    /// Removes the link `dir/rel` (its parent opened without following a symlink), fsyncing
    /// the parent afterwards if `sync`.
    fn unlink_link(&self, dir: &Dir, rel: &str, sync: bool) -> Result<bool> {
        let full = || self.path.join(dir.rel).join(rel);
        let (parent, name) = match layout::open_parent(dir.fd.as_fd(), rel) {
            Ok(p) => p,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(false),
            Err(e) => return Err(e).ctx("opening", full()),
        };
        crate::fault::point();
        match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
            Ok(()) => {
                if sync {
                    rustix::fs::fsync(&parent).ctx("syncing", full())?;
                }
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR) => Err(Error::NotALink {
                path: full(),
                what: "a directory",
            }),
            Err(e) => Err(e).ctx("removing", full()),
        }
    }

    pub(crate) fn streams_dir(&self) -> &Dir {
        &self.streams
    }

    pub(crate) fn images_dir(&self) -> &Dir {
        &self.images
    }
}

/// Smallest object whose writeback [`start_writeback`] starts early.
const EARLY_WRITEBACK_MIN: u64 = 1 << 20;

/// Starts writing a new object's data back to the disk without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the `syncfs` that must precede naming
/// a stream finds most of the data already written instead of writing a whole pull's worth
/// at once. Only a hint: durability still comes from that `syncfs`, and failure is ignored.
///
/// Only for objects of at least [`EARLY_WRITEBACK_MIN`] bytes: started one small file at a
/// time, writeback costs a block-layer submission per file in the writing thread, while
/// `syncfs` (or the kernel's flusher) writes many small files in one pass.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    if !file
        .metadata()
        .is_ok_and(|m| m.len() >= EARLY_WRITEBACK_MIN)
    {
        return;
    }
    // SAFETY: sync_file_range(2) only reads its integer arguments; the descriptor is open for
    // the duration of the call because `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Reopens a file read-only through `/proc/self/fd` (needed to enable verity on a file we wrote).
fn reopen_readonly(file: &File) -> rustix::io::Result<File> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map(File::from)
}

/// Gives an `O_TMPFILE` file a name: `linkat(fd, "", AT_EMPTY_PATH)` needs CAP_DAC_READ_SEARCH,
/// so fall back to linking its `/proc/self/fd` entry.
fn link_tmpfile(file: &File, dir: impl AsFd, rel: &str) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    match rustix::fs::linkat(file, "", &dir, rel, AtFlags::EMPTY_PATH) {
        Err(Errno::NOENT) | Err(Errno::PERM) | Err(Errno::INVAL) => {
            let path = format!("/proc/self/fd/{}", file.as_raw_fd());
            rustix::fs::linkat(CWD, path, &dir, rel, AtFlags::SYMLINK_FOLLOW)
        }
        other => other,
    }
}

/// Opens the repository's root directory from the user's path.
pub(crate) fn open_root(path: &Path) -> Result<OwnedFd> {
    match rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::NOENT) => Err(Error::NoRepository(path.to_owned())),
        other => other.ctx("opening repository", path),
    }
}

/// Whether files in `tmp` can have fs-verity enabled.
fn probe_verity(tmp: &Dir, repo: &Path, hash: HashAlgorithm) -> Result<bool> {
    let name = format!(".verity-probe-{}", std::process::id());
    let path = repo.join(tmp.rel).join(&name);
    let fd = rustix::fs::openat(
        &tmp.fd,
        name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .ctx("creating", &path)?;
    let mut f = File::from(fd);
    f.write_all(b"cfs verity probe").ctx("writing", &path)?;
    drop(f);
    let ro = layout::open_regular(tmp.fd.as_fd(), &name).map_err(|e| match e {
        OpenFileError::Errno(e) => Error::Io {
            op: "opening",
            path: path.clone(),
            source: e.into(),
        },
        OpenFileError::NotRegular(what) => Error::NotRegular {
            path: path.clone(),
            what,
        },
    });
    let result = ro.and_then(|ro| match fsverity::enable_verity(&ro, hash) {
        Ok(()) => Ok(true),
        Err(VerityError::NotSupported) => Ok(false),
        Err(e) => Err(Error::Verity {
            object: path.display().to_string(),
            source: e,
        }),
    });
    let _ = rustix::fs::unlinkat(&tmp.fd, name.as_str(), AtFlags::empty());
    result
}
