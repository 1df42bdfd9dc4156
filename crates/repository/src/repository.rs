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
//! ```
//!
//! Every process that writes holds a shared `flock` on the repository directory for as long as
//! the [`Repository`] lives; gc takes it exclusively, so it never runs while objects are written
//! but not yet named.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::digest::{HashAlgorithm, ObjectId};
use crate::durable::{DirtyDirs, TEMP_LINK, parent_of};
use crate::error::{Error, IoContext, Result};
use crate::fsverity::{self, FsVerityHasher, VerityError};
use crate::names::{check_content_id, check_ref_name};
use crate::splitstream::{SplitStreamReader, SplitStreamWriter};

/// The on-disk format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "cfs-repository";

/// Whether the kernel verifies objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerityMode {
    /// fs-verity is enabled on every object and checked when an object is reused or opened.
    Enforced,
    /// The filesystem cannot do verity (or the user asked not to): names are trusted, and only
    /// fsck re-hashes content.
    Insecure,
}

impl std::fmt::Display for VerityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforced => "enforced",
            Self::Insecure => "insecure",
        })
    }
}

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Always `cfs-repository`.
    pub format: String,
    /// The on-disk format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// The hash algorithm of every object name and image ID.
    pub hash: HashAlgorithm,
    /// Whether verity is enforced.
    pub verity: VerityMode,
}

/// How `init` chooses the verity mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitVerity {
    /// Enforce verity; fail if the filesystem cannot do it.
    Require,
    /// Create an insecure repository (verity not used even if available).
    Insecure,
}

/// A directory relative to the repository root, with the path kept for messages.
pub(crate) struct Dir {
    pub(crate) fd: OwnedFd,
    pub(crate) rel: &'static str,
}

/// An open repository. Holds a shared lock (exclusive during gc) until dropped.
pub struct Repository {
    path: PathBuf,
    root: OwnedFd,
    objects: Dir,
    streams: Dir,
    images: Dir,
    tmp: Dir,
    meta: Meta,
    /// Whether `O_TMPFILE` works in `objects/` (probed once at open).
    tmpfile_ok: bool,
    counter: AtomicU64,
}

/// Where a reference points, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefEntry {
    /// The ref's name.
    pub name: String,
    /// The content id (stream refs) or image id hex (image refs) it points to.
    pub target: String,
}

fn open_dir(root: impl AsFd, rel: &'static str, base: &Path) -> Result<Dir> {
    let fd = rustix::fs::openat(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("opening", base.join(rel))?;
    Ok(Dir { fd, rel })
}

/// Creates `rel` and its missing parents under `dirfd`; every directory it creates goes into
/// `dirty` with its parent (both must be fsynced for the new directory to survive a crash).
fn mkdir_p(dirfd: BorrowedFd<'_>, rel: &str, dirty: &mut DirtyDirs) -> rustix::io::Result<()> {
    fn created(rel: &str, dirty: &mut DirtyDirs) {
        dirty.insert(rel.to_owned());
        dirty.insert(parent_of(rel).to_owned());
    }
    match rustix::fs::mkdirat(dirfd, rel, Mode::from_raw_mode(0o755)) {
        Ok(()) => {
            created(rel, dirty);
            Ok(())
        }
        Err(Errno::EXIST) => Ok(()),
        Err(Errno::NOENT) => {
            if let Some((parent, _)) = rel.rsplit_once('/') {
                mkdir_p(dirfd, parent, dirty)?;
                match rustix::fs::mkdirat(dirfd, rel, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        created(rel, dirty);
                        Ok(())
                    }
                    Err(Errno::EXIST) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                Err(Errno::NOENT)
            }
        }
        Err(e) => Err(e),
    }
}

impl Repository {
    /// Creates a repository in `path` (created if missing; must not already hold one).
    pub fn init(path: &Path, hash: HashAlgorithm, verity: InitVerity) -> Result<Self> {
        std::fs::create_dir_all(path).ctx("creating", path)?;
        let meta_path = path.join("meta.json");
        if meta_path.exists() {
            return Err(Error::AlreadyExists(path.to_owned()));
        }
        for d in ["objects", "streams/refs", "images/refs", "tmp"] {
            std::fs::create_dir_all(path.join(d)).ctx("creating", path.join(d))?;
        }
        let mode = match verity {
            InitVerity::Insecure => VerityMode::Insecure,
            InitVerity::Require => {
                if !probe_verity(&path.join("tmp"), hash)? {
                    return Err(Error::VerityUnsupported(path.to_owned()));
                }
                VerityMode::Enforced
            }
        };
        let meta = Meta {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            hash,
            verity: mode,
        };
        let mut json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::BadMeta {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        // Written last and atomically: a directory with meta.json is a complete repository.
        let tmp = path.join("tmp/meta.json.new");
        std::fs::write(&tmp, &json).ctx("writing", &tmp)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .ctx("syncing", &tmp)?;
        std::fs::rename(&tmp, &meta_path).ctx("renaming to", &meta_path)?;
        // `init` reports success only once the directories and meta.json's name are durable.
        rustix::fs::syncfs(File::open(path).ctx("opening", path)?).ctx("syncing", path)?;
        Self::open(path)
    }

    /// Opens an existing repository and takes a shared lock on it.
    pub fn open(path: &Path) -> Result<Self> {
        let root = rustix::fs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("opening repository", path)?;
        let meta_bytes = match rustix::fs::openat(
            &root,
            "meta.json",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let mut v = Vec::new();
                File::from(fd)
                    .read_to_end(&mut v)
                    .ctx("reading", path.join("meta.json"))?;
                v
            }
            Err(Errno::NOENT) => return Err(Error::NotARepository(path.to_owned())),
            Err(e) => return Err(e).ctx("opening", path.join("meta.json")),
        };
        let meta: Meta = serde_json::from_slice(&meta_bytes).map_err(|e| Error::BadMeta {
            path: path.to_owned(),
            message: format!("not valid repository metadata: {e}"),
        })?;
        if meta.format != FORMAT_NAME || meta.version != FORMAT_VERSION {
            return Err(Error::BadMeta {
                path: path.to_owned(),
                message: format!(
                    "format {:?} version {} is not understood by this cfsctl (it reads {FORMAT_NAME} version {FORMAT_VERSION})",
                    meta.format, meta.version
                ),
            });
        }
        let repo = Self {
            objects: open_dir(&root, "objects", path)?,
            streams: open_dir(&root, "streams", path)?,
            images: open_dir(&root, "images", path)?,
            tmp: open_dir(&root, "tmp", path)?,
            path: path.to_owned(),
            root,
            meta,
            tmpfile_ok: true,
            counter: AtomicU64::new(0),
        };
        let mut repo = repo;
        repo.tmpfile_ok = repo.probe_tmpfile();
        // Clean leftovers in tmp/ if nobody else has the repository open; then hold it shared.
        if rustix::fs::flock(&repo.root, FlockOperation::NonBlockingLockExclusive).is_ok() {
            repo.clean_tmp()?;
        }
        rustix::fs::flock(&repo.root, FlockOperation::LockShared).ctx("locking", path)?;
        Ok(repo)
    }

    /// Takes the exclusive lock (waits for every other process using the repository).
    pub(crate) fn lock_exclusive(&self) -> Result<()> {
        rustix::fs::flock(&self.root, FlockOperation::LockExclusive).ctx("locking", &self.path)
    }

    /// Returns to the shared lock.
    pub(crate) fn lock_shared(&self) -> Result<()> {
        rustix::fs::flock(&self.root, FlockOperation::LockShared).ctx("locking", &self.path)
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
        let tmp = self.path.join("tmp");
        for entry in std::fs::read_dir(&tmp).ctx("reading", &tmp)? {
            let entry = entry.ctx("reading", &tmp)?;
            let p = entry.path();
            let r = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.ctx("removing", &p)?;
        }
        Ok(())
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

    fn check_alg(&self, id: &ObjectId) -> Result<()> {
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
        let rel = id.object_path();
        match self.meta.verity {
            VerityMode::Insecure => {
                match rustix::fs::statat(&self.objects.fd, &rel, AtFlags::empty()) {
                    Ok(_) => Ok(true),
                    Err(Errno::NOENT) => Ok(false),
                    Err(e) => Err(e).ctx("checking", self.object_path(id)),
                }
            }
            VerityMode::Enforced => match self.open_object_fd(id) {
                Ok(fd) => {
                    self.verify_measured(id, &fd)?;
                    Ok(true)
                }
                Err(Errno::NOENT) => Ok(false),
                Err(e) => Err(e).ctx("opening", self.object_path(id)),
            },
        }
    }

    fn open_object_fd(&self, id: &ObjectId) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat(
            &self.objects.fd,
            id.object_path(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
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
        let fd = match self.open_object_fd(id) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(Error::NotFound {
                    kind: "object",
                    name: id.to_string(),
                });
            }
            Err(e) => return Err(e).ctx("opening", self.object_path(id)),
        };
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

    /// A writer that hashes what it is given and stores it as an object on
    /// [`ObjectWriter::finish`]; for contents too large to hold in memory.
    pub fn object_writer(&self) -> Result<ObjectWriter<'_>> {
        let (file, staged) = if self.tmpfile_ok {
            let fd = rustix::fs::openat(
                &self.objects.fd,
                ".",
                OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o444),
            )
            .ctx("creating a temporary file in", self.path.join("objects"))?;
            (File::from(fd), None)
        } else {
            let name = self.temp_name("obj");
            let fd = rustix::fs::openat(
                &self.tmp.fd,
                &name,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o444),
            )
            .ctx("creating", self.path.join("tmp").join(&name))?;
            (File::from(fd), Some(name))
        };
        Ok(ObjectWriter {
            repo: self,
            file: Some(file),
            staged,
            hasher: FsVerityHasher::new(self.meta.hash),
        })
    }

    fn temp_name(&self, what: &str) -> String {
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
        let rel = id.object_path();
        let (dir, _) = rel.split_at(2);
        // `objects/XX` and the object's entry in it are made durable by the `syncfs` that
        // precedes naming anything that needs the object, not by an fsync here.
        mkdir_p(self.objects.fd.as_fd(), dir, &mut DirtyDirs::new())
            .ctx("creating", self.path.join("objects").join(dir))?;
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
        crate::fault::point();
        let res = match &staged {
            None => link_tmpfile(&file, &self.objects.fd, &rel),
            Some(name) => rustix::fs::linkat(
                &self.tmp.fd,
                name.as_str(),
                &self.objects.fd,
                &rel,
                AtFlags::empty(),
            ),
        };
        if let Some(name) = &staged {
            let _ = rustix::fs::unlinkat(&self.tmp.fd, name.as_str(), AtFlags::empty());
        }
        match res {
            Ok(()) => {
                start_writeback(&file);
                Ok(())
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e).ctx("linking", self.object_path(id)),
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

    // ----- streams -----

    /// Starts writing a splitstream of the given content type (e.g. `application/x-tar`).
    pub fn create_stream(&self, content_type: &str) -> Result<SplitStreamWriter<'_>> {
        SplitStreamWriter::new(self, content_type)
    }

    /// Names already-written stream objects by their content ids, after making all data
    /// durable: the stream becomes visible only once everything it references is on disk, and
    /// this returns only once the names are durable too (one fsync of `streams/` for all).
    pub fn register_streams(&self, streams: &[(&str, ObjectId)]) -> Result<()> {
        for (cid, id) in streams {
            check_content_id(cid)?;
            self.check_alg(id)?;
        }
        self.sync()?;
        let mut dirty = DirtyDirs::new();
        for (cid, id) in streams {
            let target = format!("../objects/{}", id.object_path());
            self.link_at(&self.streams, cid, &target, &mut dirty)?;
        }
        self.sync_dirs(&self.streams, &dirty)
    }

    /// [`Repository::register_streams`] for one stream.
    pub fn register_stream(&self, content_id: &str, id: &ObjectId) -> Result<()> {
        self.register_streams(&[(content_id, *id)])
    }

    /// The stream object a content id names, if it exists and its object is present.
    pub fn stream_object(&self, content_id: &str) -> Result<Option<ObjectId>> {
        check_content_id(content_id)?;
        let Some(target) = self.read_link(&self.streams, content_id)? else {
            return Ok(None);
        };
        let id = self.object_from_link(&target, "streams", content_id)?;
        Ok(self.has_object(&id)?.then_some(id))
    }

    /// Resolves a content id or a stream ref name to `(content id, stream object)`.
    pub fn resolve_stream(&self, name: &str) -> Result<(String, ObjectId)> {
        if check_content_id(name).is_ok()
            && let Some(id) = self.stream_object(name)?
        {
            return Ok((name.to_owned(), id));
        }
        if check_ref_name(name).is_ok()
            && let Some(cid) = self.stream_ref(name)?
            && let Some(id) = self.stream_object(&cid)?
        {
            return Ok((cid, id));
        }
        Err(Error::NotFound {
            kind: "stream",
            name: name.to_owned(),
        })
    }

    /// Opens a splitstream by content id or ref name.
    pub fn open_stream(&self, name: &str) -> Result<SplitStreamReader<File>> {
        let (cid, id) = self.resolve_stream(name)?;
        let file = self.open_object(&id)?;
        SplitStreamReader::new(file, self.meta.hash, &cid)
    }

    /// Opens a splitstream by its object id.
    pub fn open_stream_object(&self, id: &ObjectId) -> Result<SplitStreamReader<File>> {
        let file = self.open_object(id)?;
        SplitStreamReader::new(file, self.meta.hash, &id.to_string())
    }

    /// Lists the content ids in `streams/` with their objects (links that don't parse are
    /// reported by fsck, not here).
    pub fn list_streams(&self) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        for name in self.dir_names(&self.streams, "")? {
            if name == "refs" || name.starts_with('.') {
                continue;
            }
            if let Some(target) = self.read_link(&self.streams, &name)?
                && let Ok(id) = self.object_from_link(&target, "streams", &name)
            {
                out.push((name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    // ----- refs -----

    /// Points stream ref `name` at `content_id` (atomically replacing an existing ref).
    pub fn set_stream_ref(&self, name: &str, content_id: &str) -> Result<()> {
        check_ref_name(name)?;
        check_content_id(content_id)?;
        let rel = format!("refs/{name}");
        let up = "../".repeat(rel.matches('/').count());
        self.replace_symlink(&self.streams, &rel, &format!("{up}{content_id}"))
    }

    /// The content id a stream ref points to.
    pub fn stream_ref(&self, name: &str) -> Result<Option<String>> {
        check_ref_name(name)?;
        let Some(target) = self.read_link(&self.streams, &format!("refs/{name}"))? else {
            return Ok(None);
        };
        Ok(Some(link_basename(&target).to_owned()))
    }

    /// Removes a stream ref; `false` if it did not exist.
    pub fn remove_stream_ref(&self, name: &str) -> Result<bool> {
        check_ref_name(name)?;
        self.remove_link(&self.streams, &format!("refs/{name}"))
    }

    /// Every stream ref, sorted by name.
    pub fn list_stream_refs(&self) -> Result<Vec<RefEntry>> {
        self.list_refs(&self.streams)
    }

    // ----- images -----

    /// Names an existing object as an image (`images/<id>`). The caller stores the EROFS bytes
    /// with [`Repository::ensure_object`] first; this syncs before publishing.
    pub fn register_image(&self, id: &ObjectId) -> Result<()> {
        if !self.has_object(id)? {
            return Err(Error::NotFound {
                kind: "object",
                name: id.to_string(),
            });
        }
        self.sync()?;
        let target = format!("../objects/{}", id.object_path());
        self.replace_symlink(&self.images, &id.to_hex(), &target)
    }

    /// Points image ref `name` at a registered image.
    pub fn set_image_ref(&self, name: &str, id: &ObjectId) -> Result<()> {
        check_ref_name(name)?;
        self.check_alg(id)?;
        let rel = format!("refs/{name}");
        let up = "../".repeat(rel.matches('/').count());
        self.replace_symlink(&self.images, &rel, &format!("{up}{}", id.to_hex()))
    }

    /// Removes an image ref; `false` if it did not exist.
    pub fn remove_image_ref(&self, name: &str) -> Result<bool> {
        check_ref_name(name)?;
        self.remove_link(&self.images, &format!("refs/{name}"))
    }

    /// Every image ref, sorted by name.
    pub fn list_image_refs(&self) -> Result<Vec<RefEntry>> {
        self.list_refs(&self.images)
    }

    /// Every registered image id.
    pub fn list_images(&self) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for name in self.dir_names(&self.images, "")? {
            if let Ok(id) = ObjectId::parse_for(self.meta.hash, &name) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Resolves an image id (hex, optionally `sha256:`-prefixed) or image ref name.
    pub fn resolve_image(&self, name: &str) -> Result<ObjectId> {
        let id = if let Ok(id) = ObjectId::parse_for(self.meta.hash, name) {
            id
        } else if check_ref_name(name).is_ok()
            && let Some(target) = self.read_link(&self.images, &format!("refs/{name}"))?
        {
            ObjectId::parse_for(self.meta.hash, link_basename(&target)).map_err(|_| {
                Error::NotFound {
                    kind: "image",
                    name: name.to_owned(),
                }
            })?
        } else {
            return Err(Error::NotFound {
                kind: "image",
                name: name.to_owned(),
            });
        };
        match self.read_link(&self.images, &id.to_hex())? {
            Some(_) => Ok(id),
            None => Err(Error::NotFound {
                kind: "image",
                name: name.to_owned(),
            }),
        }
    }

    // ----- link helpers -----

    pub(crate) fn read_link(&self, dir: &Dir, rel: &str) -> Result<Option<String>> {
        match rustix::fs::readlinkat(&dir.fd, rel, Vec::new()) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::INVAL) => Err(Error::BadSplitStream {
                name: rel.to_owned(),
                message: format!("{}/{rel} is not a symlink", dir.rel),
            }),
            Err(e) => Err(e).ctx("reading link", self.path.join(dir.rel).join(rel)),
        }
    }

    /// Parses a link target `../objects/XX/<rest>` (any number of `../`) into an object id.
    pub(crate) fn object_from_link(&self, target: &str, dir: &str, name: &str) -> Result<ObjectId> {
        let rest = target.trim_start_matches("../");
        let parsed = rest
            .strip_prefix("objects/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(a, b)| ObjectId::from_object_path(a, b).ok());
        match parsed {
            Some(id) if id.algorithm() == self.meta.hash => Ok(id),
            _ => Err(Error::BadSplitStream {
                name: name.to_owned(),
                message: format!("{dir}/{name} points to {target:?}, not to an object"),
            }),
        }
    }

    /// Creates or atomically replaces the link `dir/rel` and returns once it is durable.
    fn replace_symlink(&self, dir: &Dir, rel: &str, target: &str) -> Result<()> {
        let mut dirty = DirtyDirs::new();
        self.link_at(dir, rel, target, &mut dirty)?;
        self.sync_dirs(dir, &dirty)
    }

    /// Creates or atomically replaces the link `dir/rel` (a temporary link renamed over it);
    /// the directories whose entries changed go into `dirty` for [`Repository::sync_dirs`].
    fn link_at(&self, dir: &Dir, rel: &str, target: &str, dirty: &mut DirtyDirs) -> Result<()> {
        let full = self.path.join(dir.rel).join(rel);
        if let Some((parent, _)) = rel.rsplit_once('/') {
            mkdir_p(dir.fd.as_fd(), parent, dirty)
                .ctx("creating", self.path.join(dir.rel).join(parent))?;
        }
        let tmp_rel = match rel.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{}", self.temp_name(TEMP_LINK)),
            None => self.temp_name(TEMP_LINK),
        };
        dirty.insert(parent_of(rel).to_owned());
        crate::fault::point();
        rustix::fs::symlinkat(target, &dir.fd, &tmp_rel).ctx("creating link", &full)?;
        crate::fault::point();
        if let Err(e) = rustix::fs::renameat(&dir.fd, &tmp_rel, &dir.fd, rel) {
            let _ = rustix::fs::unlinkat(&dir.fd, &tmp_rel, AtFlags::empty());
            return Err(e).ctx("renaming link to", &full);
        }
        Ok(())
    }

    /// Removes the stream link `streams/<content id>`; `false` if it did not exist.
    pub(crate) fn remove_stream_link(&self, content_id: &str) -> Result<bool> {
        self.remove_link(&self.streams, content_id)
    }

    /// Removes the image link `images/<hex>`; `false` if it did not exist.
    pub(crate) fn remove_image_link(&self, hex: &str) -> Result<bool> {
        self.remove_link(&self.images, hex)
    }

    /// Removes the link `dir/rel` and returns once the removal is durable.
    fn remove_link(&self, dir: &Dir, rel: &str) -> Result<bool> {
        crate::fault::point();
        match rustix::fs::unlinkat(&dir.fd, rel, AtFlags::empty()) {
            Ok(()) => {
                self.sync_dirs(dir, &DirtyDirs::from([parent_of(rel).to_owned()]))?;
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e).ctx("removing", self.path.join(dir.rel).join(rel)),
        }
    }

    /// Names in `dir/rel` (not recursive), skipping `.` and `..`.
    fn dir_names(&self, dir: &Dir, rel: &str) -> Result<Vec<String>> {
        let path = self.path.join(dir.rel).join(rel);
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).ctx("reading", &path),
        };
        for entry in rd {
            let entry = entry.ctx("reading", &path)?;
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    /// All refs under `dir/refs`, recursively, as (name, target basename).
    fn list_refs(&self, dir: &Dir) -> Result<Vec<RefEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let rel = if prefix.is_empty() {
                "refs".to_owned()
            } else {
                format!("refs/{prefix}")
            };
            for name in self.dir_names(dir, &rel)? {
                if name.starts_with('.') {
                    continue;
                }
                let child = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let child_rel = format!("refs/{child}");
                match self.read_link(dir, &child_rel) {
                    Ok(Some(target)) => out.push(RefEntry {
                        name: child,
                        target: link_basename(&target).to_owned(),
                    }),
                    Ok(None) => {}
                    // Not a symlink: a directory of nested refs.
                    Err(Error::BadSplitStream { .. }) => stack.push(child),
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn streams_dir(&self) -> &Dir {
        &self.streams
    }

    pub(crate) fn images_dir(&self) -> &Dir {
        &self.images
    }
}

fn link_basename(target: &str) -> &str {
    target.rsplit('/').next().unwrap_or(target)
}

/// Starts writing a new object's data back to the disk without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the `syncfs` that must precede naming
/// a stream finds most of the data already written instead of writing a whole pull's worth
/// at once. Only a hint: durability still comes from that `syncfs`, and failure is ignored.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
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

/// Whether files in `dir` can have fs-verity enabled.
fn probe_verity(dir: &Path, hash: HashAlgorithm) -> Result<bool> {
    let path = dir.join(format!(".verity-probe-{}", std::process::id()));
    let mut f = File::create(&path).ctx("creating", &path)?;
    f.write_all(b"cfs verity probe").ctx("writing", &path)?;
    drop(f);
    let ro = File::open(&path).ctx("opening", &path);
    let result = ro.and_then(|ro| match fsverity::enable_verity(&ro, hash) {
        Ok(()) => Ok(true),
        Err(VerityError::NotSupported) => Ok(false),
        Err(e) => Err(Error::Verity {
            object: path.display().to_string(),
            source: e,
        }),
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// Writes an object whose id is known only at the end. Created by
/// [`Repository::object_writer`]; dropped without [`ObjectWriter::finish`] it leaves nothing.
pub struct ObjectWriter<'r> {
    repo: &'r Repository,
    /// `None` only after the file was handed to `link_object`.
    file: Option<File>,
    staged: Option<String>,
    hasher: FsVerityHasher,
}

impl ObjectWriter<'_> {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.hasher.size()
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("object writer already finished"))
    }

    /// Stores the object and returns its id (an identical object already stored is reused).
    pub fn finish(mut self) -> Result<ObjectId> {
        let hasher = std::mem::replace(&mut self.hasher, FsVerityHasher::new(self.repo.meta.hash));
        let id = hasher.finalize();
        if self.repo.has_object(&id)? {
            return Ok(id);
        }
        self.commit(id)?;
        Ok(id)
    }

    /// Links the staged file as `id` (the caller computed `id` from the bytes it wrote).
    fn commit(mut self, id: ObjectId) -> Result<()> {
        let file = self.file.take();
        let staged = self.staged.take();
        match file {
            Some(file) => self.repo.link_object(file, staged, &id),
            None => Ok(()),
        }
    }
}

impl Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file()?.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file()?.write_all(buf)?;
        self.hasher.update(buf);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.staged.take() {
            let _ = rustix::fs::unlinkat(&self.repo.tmp.fd, name.as_str(), AtFlags::empty());
        }
    }
}
