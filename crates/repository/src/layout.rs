//! The one way to reach anything inside a repository: every layout directory is opened from
//! the repository's root descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! (`O_NOFOLLOW` on each component where the kernel has no `openat2`), and every other
//! operation (stat, open, unlink, rename, link, symlink, readlink) is made relative to a
//! descriptor opened that way with one final path component. A symlink or a non-directory
//! where the layout needs a directory is reported, never followed, so nothing outside the
//! repository is read, written or removed through it. Objects are opened `O_NOFOLLOW |
//! O_NONBLOCK` and checked with `fstat`, so a FIFO or a device never blocks or feeds a reader.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The directories a repository consists of, in the order they are created.
pub(crate) const LAYOUT_DIRS: [&str; 6] = [
    "objects",
    "streams",
    "streams/refs",
    "images",
    "images/refs",
    "tmp",
];

/// Set once `openat2` has returned `ENOSYS` (a kernel before 5.6): use the fallback from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// What kind of file an entry is, for messages ("a symlink", "a FIFO", ...).
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

/// Opens the directory `rel` (one or more `/`-separated components, none `.`, `..` or empty)
/// beneath `dirfd`, following no symlink on the way: a symlink anywhere gives `ELOOP`, a
/// non-directory `ENOTDIR`.
pub(crate) fn open_dir_beneath(dirfd: BorrowedFd<'_>, rel: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Errno::INVAL);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match rustix::fs::openat2(
            dirfd,
            rel,
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // EAGAIN: a concurrent rename somewhere on the system; retry the slow way.
            Err(Errno::AGAIN) => {}
            other => return other,
        }
    }
    // One component at a time, each `O_NOFOLLOW | O_DIRECTORY`.
    let mut parts = rel.split('/');
    let first = parts.next().ok_or(Errno::INVAL)?;
    let mut fd = rustix::fs::openat(dirfd, first, flags, Mode::empty())?;
    for part in parts {
        fd = rustix::fs::openat(&fd, part, flags, Mode::empty())?;
    }
    Ok(fd)
}

/// Splits `rel` into its parent (opened beneath `dirfd`, or `dirfd` itself for a single
/// component) and its final component.
pub(crate) fn open_parent<'a>(
    dirfd: BorrowedFd<'a>,
    rel: &'a str,
) -> rustix::io::Result<(Parent<'a>, &'a str)> {
    match rel.rsplit_once('/') {
        Some((parent, name)) => Ok((Parent::Owned(open_dir_beneath(dirfd, parent)?), name)),
        None => Ok((Parent::Borrowed(dirfd), rel)),
    }
}

/// The directory holding a final component: the base directory or one opened beneath it.
pub(crate) enum Parent<'a> {
    /// The base directory itself.
    Borrowed(BorrowedFd<'a>),
    /// A subdirectory opened with [`open_dir_beneath`].
    Owned(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Borrowed(fd) => *fd,
            Parent::Owned(fd) => fd.as_fd(),
        }
    }
}

/// The type of `name` in `dirfd`, without following a symlink; `None` if it does not exist.
pub(crate) fn entry_type(
    dirfd: BorrowedFd<'_>,
    name: &str,
) -> rustix::io::Result<Option<FileType>> {
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a file could not be opened as a regular file.
#[derive(Debug)]
pub(crate) enum OpenFileError {
    /// The system call failed (`NOENT` when it does not exist).
    Errno(Errno),
    /// It exists but is not a regular file; what it is.
    NotRegular(&'static str),
}

impl From<Errno> for OpenFileError {
    fn from(e: Errno) -> Self {
        Self::Errno(e)
    }
}

/// Opens the regular file `name` in `dirfd` read-only: `O_NOFOLLOW | O_NONBLOCK`, so a symlink
/// is refused and a FIFO cannot block the open; what was opened is checked with `fstat`, and a
/// device is not even opened when a `stat` shows it first.
pub(crate) fn open_regular(dirfd: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, OpenFileError> {
    match entry_type(dirfd, name)? {
        None => return Err(OpenFileError::Errno(Errno::NOENT)),
        Some(FileType::RegularFile) => {}
        Some(t) => return Err(OpenFileError::NotRegular(describe(t))),
    }
    let fd = match rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // O_NOFOLLOW on a symlink that replaced the file since the stat.
        Err(Errno::LOOP) => return Err(OpenFileError::NotRegular("a symlink")),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(fd),
        t => Err(OpenFileError::NotRegular(describe(t))),
    }
}

/// One entry of a directory listing.
pub(crate) struct Entry {
    /// Its name (lossily decoded: names cfs writes are ASCII; others are strays anyway).
    pub name: String,
    /// Whether the name is valid UTF-8 (a stray that is not can only be reported, by its
    /// lossy name, and is skipped by everything that acts on names).
    pub utf8: bool,
    /// Its name as the directory holds it (to act on a stray whose name is not UTF-8).
    pub raw: CString,
    /// Its type, without following a symlink.
    pub kind: FileType,
}

/// Lists `dirfd` through the descriptor (no path is resolved), skipping `.` and `..`,
/// sorted by name. Types the filesystem does not report in the listing are `lstat`ed.
pub(crate) fn list(dirfd: BorrowedFd<'_>) -> rustix::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dirfd)? {
        let entry = entry?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let (name, utf8) = match std::str::from_utf8(raw) {
            Ok(s) => (s.to_owned(), true),
            Err(_) => (String::from_utf8_lossy(raw).into_owned(), false),
        };
        let kind = match entry.file_type() {
            FileType::Unknown => {
                let c = CString::new(raw).map_err(|_| Errno::INVAL)?;
                match rustix::fs::statat(dirfd, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    // Removed since the listing.
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(e),
                }
            }
            t => t,
        };
        out.push(Entry {
            name,
            utf8,
            raw: entry.file_name().to_owned(),
            kind,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the directory `name` of `tmp` and everything in it, through descriptors only:
/// subdirectories are first renamed up into `tmp` under fresh names (`fresh`) and removed in
/// turn, so no descriptor is held per level and no depth is too deep. Symlinks inside are
/// unlinked, never followed. Names are handled as raw bytes (a stray need not be UTF-8).
pub(crate) fn remove_tree_in_tmp(
    tmp: BorrowedFd<'_>,
    name: &str,
    fresh: &dyn Fn() -> String,
) -> rustix::io::Result<()> {
    let mut todo = vec![name.to_owned()];
    while let Some(dir) = todo.pop() {
        let fd = match open_dir_beneath(tmp, &dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            // Not a directory after all (replaced meanwhile): remove the entry itself.
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                unlink_if_present(tmp, &dir, AtFlags::empty())?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut entries: Vec<(CString, FileType)> = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let raw = entry.file_name();
            if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
                continue;
            }
            entries.push((raw.to_owned(), entry.file_type()));
        }
        for (raw, kind) in entries {
            let kind = match kind {
                FileType::Unknown => {
                    match rustix::fs::statat(&fd, raw.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => FileType::from_raw_mode(st.st_mode),
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(e),
                    }
                }
                k => k,
            };
            if kind == FileType::Directory {
                let new = fresh();
                rustix::fs::renameat(&fd, raw.as_c_str(), tmp, new.as_str())?;
                todo.push(new);
            } else {
                match rustix::fs::unlinkat(&fd, raw.as_c_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        drop(fd);
        unlink_if_present(tmp, &dir, AtFlags::REMOVEDIR)?;
    }
    Ok(())
}

/// `unlinkat`, where a name already gone is success.
pub(crate) fn unlink_if_present(
    dirfd: BorrowedFd<'_>,
    name: &str,
    flags: AtFlags,
) -> rustix::io::Result<()> {
    match rustix::fs::unlinkat(dirfd, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Empties `tmp` through its descriptor: non-directories are unlinked, directories renamed to
/// fresh names and removed with [`remove_tree_in_tmp`].
pub(crate) fn clear_tmp(tmp: BorrowedFd<'_>, fresh: &dyn Fn() -> String) -> rustix::io::Result<()> {
    let mut dirs = Vec::new();
    for entry in rustix::fs::Dir::read_from(tmp)? {
        let entry = entry?;
        let raw = entry.file_name();
        if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match rustix::fs::statat(tmp, raw, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            },
            k => k,
        };
        if kind == FileType::Directory {
            dirs.push(raw.to_owned());
        } else {
            match rustix::fs::unlinkat(tmp, raw, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for raw in dirs {
        let new = fresh();
        match rustix::fs::renameat(tmp, raw.as_c_str(), tmp, new.as_str()) {
            Ok(()) => remove_tree_in_tmp(tmp, &new, fresh)?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Walks the directory tree below `top` through descriptors, never following a symlink:
/// `visit(dir, rel, entries)` gets each directory (`rel` is `""` for `top`) with its listing
/// and returns the names of the subdirectories to enter. One replaced since its parent was
/// listed (gone, or no longer a directory) is skipped. `base` is `top`'s path, for messages.
pub(crate) fn walk(
    top: BorrowedFd<'_>,
    base: &std::path::Path,
    mut visit: impl FnMut(BorrowedFd<'_>, &str, Vec<Entry>) -> crate::Result<Vec<String>>,
) -> crate::Result<()> {
    use crate::error::IoContext;
    let mut todo = vec![String::new()];
    while let Some(rel) = todo.pop() {
        let path = base.join(&rel);
        let owned;
        let fd = if rel.is_empty() {
            top
        } else {
            owned = match open_dir_beneath(top, &rel) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(e).ctx("opening", &path),
            };
            owned.as_fd()
        };
        let entries = list(fd).ctx("reading", &path)?;
        for sub in visit(fd, &rel, entries)? {
            todo.push(if rel.is_empty() {
                sub
            } else {
                format!("{rel}/{sub}")
            });
        }
    }
    Ok(())
}
