//! Opening what a local image source names without being led elsewhere: directories inside a
//! layout are opened beneath its root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! (one `O_NOFOLLOW` component at a time where the kernel has no `openat2`), files with
//! `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` after an `lstat`, and `fstat`ed: a symlink, FIFO,
//! device, socket or directory where a file is expected is reported, never followed, opened
//! for reading or blocked on.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::LocalError;

/// Set once `openat2` returned `ENOSYS` (a kernel before 5.6).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// What a file type is, for messages.
pub(crate) fn describe(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

fn io_err(path: &Path, e: impl Into<std::io::Error>) -> LocalError {
    LocalError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

/// Opens the directory the user named (symlinks on the way are the user's own choice).
pub(crate) fn open_root_dir(path: &Path) -> Result<OwnedFd, LocalError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        Errno::NOTDIR => LocalError::NotADirectory {
            path: path.to_owned(),
        },
        e => io_err(path, e),
    })
}

/// Opens the regular file the user named (an archive), following the user's symlinks but
/// refusing anything that is not a regular file without blocking on it.
pub(crate) fn open_user_file(path: &Path) -> Result<File, LocalError> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let st = rustix::fs::stat(path).map_err(|e| io_err(path, e))?;
    check_regular(path, FileType::from_raw_mode(st.st_mode))?;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| io_err(path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path, e))?;
    check_regular(path, FileType::from_raw_mode(st.st_mode))?;
    Ok(File::from(fd))
}

fn check_regular(path: &Path, t: FileType) -> Result<(), LocalError> {
    if t == FileType::RegularFile {
        Ok(())
    } else {
        Err(LocalError::NotRegular {
            path: path.to_owned(),
            what: describe(t),
        })
    }
}

/// A directory to read files from, with the path it stands for (for messages).
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the directory the user named.
    pub(crate) fn open(path: &Path) -> Result<Self, LocalError> {
        Ok(Self {
            fd: open_root_dir(path)?,
            path: path.to_owned(),
        })
    }

    /// The path of `rel` inside this directory, for messages.
    pub(crate) fn display(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens the regular file `rel` (`/`-separated, no `.`/`..`/empty component) beneath the
    /// root; `Ok(None)` when it (or a directory on the way) does not exist.
    pub(crate) fn open_file(&self, rel: &str) -> Result<Option<(File, u64)>, LocalError> {
        let path = self.display(rel);
        let (dir, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => match open_dir_beneath(self.fd.as_fd(), parent) {
                Ok(fd) => (Some(fd), name),
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::XDEV) => {
                    return Err(LocalError::NotRegular {
                        path: self.display(parent),
                        what: "reached through a symlink (not followed)",
                    });
                }
                Err(Errno::NOTDIR) => {
                    return Err(LocalError::NotADirectory {
                        path: self.display(parent),
                    });
                }
                Err(e) => return Err(io_err(&self.display(parent), e)),
            },
            None => (None, rel),
        };
        let dirfd = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
        open_regular_at(dirfd, name, &path)
    }
}

/// Opens `name` in `dirfd` as a regular file (see the module doc); `Ok(None)` if absent.
fn open_regular_at(
    dirfd: BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<Option<(File, u64)>, LocalError> {
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => check_regular(path, FileType::from_raw_mode(st.st_mode))?,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    }
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dirfd, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // Replaced by a symlink since the lstat.
        Err(Errno::LOOP) => {
            return Err(LocalError::NotRegular {
                path: path.to_owned(),
                what: describe(FileType::Symlink),
            });
        }
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path, e))?;
    check_regular(path, FileType::from_raw_mode(st.st_mode))?;
    let len = u64::try_from(st.st_size).map_err(|_| io_err(path, Errno::INVAL))?;
    Ok(Some((File::from(fd), len)))
}

/// Opens the directory `rel` beneath `dirfd` following no symlink: `ELOOP`/`EXDEV` for a
/// symlink on the way, `ENOTDIR` for a non-directory.
pub(crate) fn open_dir_beneath(dirfd: BorrowedFd<'_>, rel: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Errno::INVAL);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dirfd, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(Errno::AGAIN) => {}
            other => return other,
        }
    }
    let mut fd: Option<OwnedFd> = None;
    for part in rel.split('/') {
        let base = fd.as_ref().map_or(dirfd, |f| f.as_fd());
        fd = Some(rustix::fs::openat(base, part, flags, Mode::empty())?);
    }
    fd.ok_or(Errno::INVAL)
}

/// Reads all of `file`, whose `fstat` said `len` bytes, refusing more than `max`; a file that
/// changed length while being read is an error.
pub(crate) fn read_whole(
    mut file: impl Read,
    len: u64,
    max: u64,
    path: &Path,
) -> Result<Vec<u8>, LocalError> {
    if len > max {
        return Err(LocalError::TooLarge {
            path: path.to_owned(),
            size: len,
            max,
        });
    }
    let cap = usize::try_from(len).map_err(|_| LocalError::TooLarge {
        path: path.to_owned(),
        size: len,
        max,
    })?;
    let mut buf = Vec::with_capacity(cap);
    // One byte more than expected shows a file that grew.
    (&mut file)
        .take(len.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_err(path, e))?;
    if buf.len() != cap {
        return Err(LocalError::Changed {
            path: path.to_owned(),
            expected: len,
            read: buf.len() as u64,
        });
    }
    Ok(buf)
}
