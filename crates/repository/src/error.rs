//! The repository's error type: every failure names the thing (path, object, stream) it is about.

use std::path::PathBuf;

use crate::digest::{HashAlgorithm, ObjectId};
use crate::fsverity::VerityError;

/// A repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("opening", "writing", ...).
        op: &'static str,
        /// The path it was done to, relative to the repository where that is clearer.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A short image ID that several images start with.
    #[error("{prefix} matches several images: {}", matches.join(", "))]
    AmbiguousImage {
        /// The prefix given.
        prefix: String,
        /// The full IDs it matches.
        matches: Vec<String>,
    },
    /// A stream to be forgotten is still reached from a ref.
    #[error("stream {0} is still reached from a name or another stream; remove those first")]
    StillReachable(String),
    /// There is no directory at the repository's path.
    #[error(
        "there is no repository at {0}; create one with `cfsctl --repo {0} init` \
         (`--insecure` where the filesystem has no fs-verity)"
    )]
    NoRepository(PathBuf),
    /// The directory holds a composefs-rs repository, which cfs does not use.
    #[error(
        "{0} is a composefs-rs repository (its meta.json has composefs-rs's fields but not cfs's \
         \"format\"); cfs cannot open it: use composefs-rs's cfsctl for it, or create a cfs \
         repository elsewhere with `cfsctl --repo DIR init` and pull the images there"
    )]
    ComposefsRs(PathBuf),
    /// The directory is not a cfs repository (no `meta.json`).
    #[error("{0} is not a cfs repository (no meta.json); create one with `cfsctl --repo {0} init`")]
    NotARepository(PathBuf),
    /// `init` on a directory that already holds a repository.
    #[error("{0} already holds a cfs repository")]
    AlreadyExists(PathBuf),
    /// `meta.json` is unreadable or from an unknown format version.
    #[error("{path}/meta.json: {message}")]
    BadMeta {
        /// The repository.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Verity was asked for (the default) but the filesystem cannot do it.
    #[error(
        "{0}: the filesystem does not support fs-verity; use `init --insecure` to create a \
         repository whose objects the kernel does not verify"
    )]
    VerityUnsupported(PathBuf),
    /// An fs-verity ioctl failed on an object.
    #[error("fs-verity on object {object}: {source}")]
    Verity {
        /// The object.
        object: String,
        /// The failure.
        #[source]
        source: VerityError,
    },
    /// An object's content does not match its name.
    #[error("object {expected:#} is corrupt: its content hashes to {actual:#}")]
    CorruptObject {
        /// The object's name.
        expected: Box<ObjectId>,
        /// What its content actually hashes to.
        actual: Box<ObjectId>,
    },
    /// A digest of another algorithm than the repository's.
    #[error("digest {id:#} does not use the repository's hash algorithm {algorithm}")]
    WrongAlgorithm {
        /// The digest.
        id: Box<ObjectId>,
        /// The repository's algorithm.
        algorithm: HashAlgorithm,
    },
    /// An object, stream, ref or image that does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// "object", "stream", "ref", "image".
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A name (content id or ref) that cfs cannot store.
    #[error("invalid {kind} {name:?}: {why}")]
    InvalidName {
        /// "content id", "ref name".
        kind: &'static str,
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A splitstream that cannot be decoded.
    #[error("splitstream {name}: {message}")]
    BadSplitStream {
        /// The stream (content id or object id).
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A directory of the repository's layout is a symlink, not a directory, or missing; it is
    /// never followed. `cfsctl fsck --repair` replaces it with an empty directory.
    #[error(
        "{repo}: the repository's {entry} is {what}, not a directory (never followed); \
         `cfsctl fsck --repair` replaces it"
    )]
    DamagedLayout {
        /// The repository.
        repo: PathBuf,
        /// The layout entry, relative to the repository (`tmp`, `objects/ab`, ...).
        entry: String,
        /// What is there instead ("a symlink", "a regular file", "missing").
        what: &'static str,
    },
    /// Something that must be a regular file (an object, the lock file) is not.
    #[error("{path} is {what}, not a regular file (it is not opened or read)")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is ("a FIFO", "a directory", "a symlink", ...).
        what: &'static str,
    },
    /// A link in `streams/` or `images/` (or a ref) is not a symlink.
    #[error("{path} is {what}, not a link")]
    NotALink {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// The lock file cannot be used.
    #[error("lock file {path}: {message}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The lock was not free within the timeout.
    #[error(
        "timed out after {waited_ms} ms waiting for the {mode} lock on {path}: {holders} \
         (set CFS_LOCK_TIMEOUT=SECONDS to wait longer)"
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// The lock that was wanted.
        mode: LockMode,
        /// How long it waited.
        waited_ms: u64,
        /// Who holds it (pid and command, where visible).
        holders: String,
    },
    /// gc found images but was given no way to read them.
    #[error("the repository holds images but no image reader was given to find their objects")]
    NoImageReader,
    /// The mounted images could not be listed, so gc cannot tell what is in use.
    #[error("finding the mounted images: {0}; nothing was removed")]
    MountScan(String),
    /// An image could not be read to find its objects.
    #[error("image {image:#}: {message}")]
    BadImage {
        /// The image.
        image: Box<ObjectId>,
        /// What went wrong.
        message: String,
    },
}

/// Results of repository operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches an operation and a path to I/O errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::Io {
            op,
            path: path.into(),
            source: e.into(),
        })
    }
}

/// Shared (writers, readers, mounts) or exclusive (gc, repair): how [`crate::lock`] takes the
/// repository lock. Defined here because [`Error::LockTimeout`] names it (`lock` uses `error`,
/// not the other way round); also `lock::LockMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once.
    Shared,
    /// One holder, nobody else.
    Exclusive,
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        })
    }
}
