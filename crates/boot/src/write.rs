//! Writing files into the boot directory durably and atomically (docs/boot.md,
//! "Durability"). Every file is written to a temporary file in its final directory
//! (`.cfs-tmp-<pid>-<n>`), fsynced, and renamed over its name, and the directory is fsynced;
//! directories created on the way have their parents fsynced. Nothing below the boot directory
//! is followed: each path component is opened `O_NOFOLLOW | O_DIRECTORY` from the boot
//! directory's fd, and components are plain names (no `..`, no `/`), so nothing is ever
//! written outside it. A staged file that is not committed (an error, a panic) is removed;
//! temporary files left by a killed run are removed by the next run in the same directory.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::BootError;

/// The prefix of temporary files.
const TMP_PREFIX: &str = ".cfs-tmp-";

/// A path below the boot directory: plain names only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(Vec<String>);

impl RelPath {
    /// Parses `a/b/c` or `/a/b/c` (leading `/` meaning the boot directory), refusing empty,
    /// `.` and `..` components, NUL bytes and names over 255 bytes. `by` says where the path
    /// came from, for the error.
    pub fn parse(path: &str, by: &str) -> Result<Self, BootError> {
        let bad = |why| BootError::BadPath {
            path: path.to_owned(),
            by: by.to_owned(),
            why,
        };
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut comps = Vec::new();
        for c in rest.split('/') {
            if c.is_empty() || c == "." || c == ".." {
                return Err(bad("has an empty, '.' or '..' component"));
            }
            if c.contains('\0') {
                return Err(bad("contains a NUL byte"));
            }
            if c.len() > 255 {
                return Err(bad("has a component longer than 255 bytes"));
            }
            if c.starts_with(TMP_PREFIX) {
                return Err(bad("has a component named like cfs's temporary files"));
            }
            comps.push(c.to_owned());
        }
        Ok(Self(comps))
    }

    /// From components already checked by the caller's rules (re-checked here).
    pub fn from_components(comps: &[&str], by: &str) -> Result<Self, BootError> {
        Self::parse(&comps.join("/"), by)
    }

    fn split(&self) -> (&[String], &str) {
        match self.0.split_last() {
            Some((name, dirs)) => (dirs, name),
            None => (&[], ""),
        }
    }

    /// The path as text, relative to the boot directory.
    pub fn display(&self) -> String {
        self.0.join("/")
    }
}

/// An open boot directory.
#[derive(Debug)]
pub struct BootDir {
    path: PathBuf,
    fd: OwnedFd,
    /// The directories this run created (components below the boot directory), in order.
    created: RefCell<Vec<Vec<String>>>,
}

/// A file written to a temporary name in its final directory, not yet renamed into place.
/// Dropped without [`Staged::commit`], the temporary file is removed.
#[derive(Debug)]
pub struct Staged {
    dir: OwnedFd,
    dir_path: PathBuf,
    temp: String,
    name: String,
    /// The file, open for reading and writing (at the end of what was written).
    pub file: File,
    committed: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl BootDir {
    /// Opens the boot directory (the path itself may be a symlink: it is the caller's).
    pub fn open(path: &Path) -> Result<Self, BootError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BootError::io("opening the boot directory", path)(e.into()))?;
        Ok(Self {
            path: path.to_owned(),
            fd,
            created: RefCell::new(Vec::new()),
        })
    }

    /// The boot directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The absolute path of `rel`, for messages.
    pub fn join(&self, rel: &RelPath) -> PathBuf {
        self.path.join(rel.display())
    }

    /// Opens (creating, when `create`) the directories `dirs` below the boot directory, one
    /// component at a time, never following a symlink; `None` if one is missing and not
    /// created.
    fn open_dirs(
        &self,
        dirs: &[String],
        create: bool,
    ) -> Result<Option<(OwnedFd, PathBuf)>, BootError> {
        let mut fd = rustix::io::dup(&self.fd)
            .map_err(|e| BootError::io("opening", &self.path)(e.into()))?;
        let mut path = self.path.clone();
        for (i, d) in dirs.iter().enumerate() {
            path.push(d);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match rustix::fs::openat(&fd, d.as_str(), flags, Mode::empty()) {
                Ok(f) => f,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, d.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => self
                            .created
                            .borrow_mut()
                            .push(dirs.get(..=i).unwrap_or_default().to_vec()),
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(BootError::io("creating", &path)(e.into())),
                    }
                    rustix::fs::fsync(&fd)
                        .map_err(|e| BootError::io("syncing the parent of", &path)(e.into()))?;
                    rustix::fs::openat(&fd, d.as_str(), flags, Mode::empty())
                        .map_err(|e| BootError::io("opening", &path)(e.into()))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(BootError::Io {
                        what: "opening",
                        path,
                        source: std::io::Error::other(
                            "not a directory, or a symlink (nothing below the boot directory is followed)",
                        ),
                    });
                }
                Err(e) => return Err(BootError::io("opening", &path)(e.into())),
            };
            fd = next;
        }
        Ok(Some((fd, path)))
    }

    /// Writes a new file for `rel` (mode 0644) through `fill`, fsynced, under a temporary name
    /// in its final directory (created as needed).
    pub fn stage(
        &self,
        rel: &RelPath,
        fill: impl FnOnce(&mut File) -> Result<(), BootError>,
    ) -> Result<Staged, BootError> {
        let (dirs, name) = rel.split();
        let Some((dir, dir_path)) = self.open_dirs(dirs, true)? else {
            return Err(BootError::io("creating", self.join(rel))(
                std::io::ErrorKind::NotFound.into(),
            ));
        };
        remove_stale_temps(&dir);
        let temp = format!(
            "{TMP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::fs::openat(
            &dir,
            temp.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| BootError::io("creating a temporary file in", &dir_path)(e.into()))?;
        let mut staged = Staged {
            dir,
            dir_path,
            temp,
            name: name.to_owned(),
            file: File::from(fd),
            committed: false,
        };
        fill(&mut staged.file)?;
        staged
            .file
            .sync_all()
            .map_err(BootError::io("syncing", staged.dir_path.join(&staged.name)))?;
        Ok(staged)
    }

    /// Removes `rel` if it exists (a file; never following a symlink) and fsyncs its
    /// directory. Returns whether something was removed.
    pub fn remove(&self, rel: &RelPath) -> Result<bool, BootError> {
        let (dirs, name) = rel.split();
        let Some((dir, _)) = self.open_dirs(dirs, false)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => {
                rustix::fs::fsync(&dir).map_err(|e| {
                    BootError::io("syncing the directory of", self.join(rel))(e.into())
                })?;
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(BootError::io("removing", self.join(rel))(e.into())),
        }
    }
}

impl BootDir {
    /// Removes the directories this run created that are still empty (deepest first): after
    /// a failed run, the boot directory is as it was. Best effort: one that cannot be removed
    /// is left (it holds nothing).
    pub fn remove_created_dirs(&self) {
        let created = std::mem::take(&mut *self.created.borrow_mut());
        for comps in created.iter().rev() {
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            if let Ok(Some((dir, _))) = self.open_dirs(parent, false) {
                let _ = rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::REMOVEDIR);
            }
        }
    }
}

impl Staged {
    /// Renames the file into place (replacing what was there atomically) and fsyncs the
    /// directory.
    pub fn commit(mut self) -> Result<(), BootError> {
        let path = self.dir_path.join(&self.name);
        rustix::fs::renameat(&self.dir, self.temp.as_str(), &self.dir, self.name.as_str())
            .map_err(|e| BootError::io("renaming into place", &path)(e.into()))?;
        self.committed = true;
        rustix::fs::fsync(&self.dir)
            .map_err(|e| BootError::io("syncing the directory of", &path)(e.into()))
    }

    /// The final path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a temporary file left here is removed by the next run.
            let _ = rustix::fs::unlinkat(&self.dir, self.temp.as_str(), AtFlags::empty());
        }
    }
}

/// Removes `.cfs-tmp-<pid>-<n>` files of processes that no longer run (best effort: a
/// failure only leaves them for a later run). Lists the directory through its fd.
fn remove_stale_temps(dir: &OwnedFd) {
    let Ok(fd) = rustix::io::dup(dir) else {
        return;
    };
    let Ok(mut entries) = rustix::fs::Dir::new(fd) else {
        return;
    };
    let mut stale = Vec::new();
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_bytes();
        let Some(rest) = name.strip_prefix(TMP_PREFIX.as_bytes()) else {
            continue;
        };
        let pid = rest
            .split(|&b| b == b'-')
            .next()
            .and_then(|p| std::str::from_utf8(p).ok());
        let alive = pid.is_some_and(|p| Path::new("/proc").join(p).exists());
        if !alive {
            stale.push(name.to_vec());
        }
    }
    for name in stale {
        let _ = rustix::fs::unlinkat(dir.as_fd(), OsStr::from_bytes(&name), AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_are_replaced_atomically_and_never_written_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let boot = BootDir::open(tmp.path()).expect("open");
        let rel = RelPath::parse("/a/b/file", "test").expect("rel");
        let s = boot
            .stage(&rel, |f| {
                f.write_all(b"one").map_err(BootError::io("w", "x"))
            })
            .expect("stage");
        assert!(
            !tmp.path().join("a/b/file").exists(),
            "visible before commit"
        );
        s.commit().expect("commit");
        assert_eq!(
            std::fs::read(tmp.path().join("a/b/file")).expect("read"),
            b"one"
        );
        // A failed fill leaves the old file and no temporary file.
        let e = boot.stage(&rel, |f| {
            f.write_all(b"half").map_err(BootError::io("w", "x"))?;
            Err(BootError::NoKernel)
        });
        assert!(e.is_err());
        assert_eq!(
            std::fs::read(tmp.path().join("a/b/file")).expect("read"),
            b"one"
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["file"]);
        // A stale temporary file of a dead process is removed by the next stage.
        std::fs::write(tmp.path().join("a/b/.cfs-tmp-999999999-0"), b"old").expect("stale");
        boot.stage(&rel, |f| {
            f.write_all(b"two").map_err(BootError::io("w", "x"))
        })
        .expect("stage")
        .commit()
        .expect("commit");
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["file"]);

        // Symlinks below the boot directory are not followed.
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).expect("symlink");
        let rel = RelPath::parse("link/file", "test").expect("rel");
        assert!(boot.stage(&rel, |_| Ok(())).is_err());
        assert!(
            std::fs::read_dir(outside.path())
                .expect("ls")
                .next()
                .is_none()
        );
        // After a failed run, the directories it created are removed again (not others).
        let boot = BootDir::open(tmp.path()).expect("open");
        let rel = RelPath::parse("new1/new2/file", "test").expect("rel");
        assert!(boot.stage(&rel, |_| Err(BootError::NoKernel)).is_err());
        assert!(tmp.path().join("new1/new2").is_dir());
        boot.remove_created_dirs();
        assert!(!tmp.path().join("new1").exists());
        assert!(tmp.path().join("a/b/file").exists());
        for bad in [
            "../x",
            "a/../../x",
            "a//b",
            "",
            "/",
            "./a",
            "a/.cfs-tmp-1-1",
        ] {
            assert!(RelPath::parse(bad, "test").is_err(), "{bad:?}");
        }
    }
}
