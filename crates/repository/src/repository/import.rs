//! [`Repository::import_object`]: an object taken from another repository (`cfsctl oci copy`).
//! Hardlinked when both repositories are on one filesystem with the same verity mode, else
//! reflinked (`FICLONE`) or copied into a staging file; in every case the object's fs-verity
//! digest is measured (enforced) or recomputed (insecure) before it gets its name here.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use rustix::fs::FileType;
use rustix::io::Errno;

use super::{Found, Repository, link_tmpfile};
use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::fsverity::FsVerityHasher;
use crate::layout;
use crate::meta::VerityMode;

/// How [`Repository::import_object`] got an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// It was already here.
    Present,
    /// Hardlinked to the other repository's file (same filesystem, same verity mode).
    Hardlinked,
    /// Reflinked (`FICLONE`): a new inode sharing the other file's blocks.
    Reflinked,
    /// Copied byte by byte.
    Copied,
}

/// Reads through to `inner` and hashes what it reads.
struct Hashing<R> {
    inner: R,
    hasher: FsVerityHasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Repository {
    /// Makes the object `id` of `source` an object of this repository, verified: hardlinked
    /// when both share a filesystem and verity mode (enforced: the source's kernel-measured
    /// digest; insecure: the digest recomputed from the linked inode), else reflinked or
    /// copied and then checked (the destination enables verity and measures it, or the bytes
    /// are hashed as they are read). A mismatch is [`Error::CorruptObject`] and nothing is
    /// named. Both repositories must use the same hash algorithm.
    pub fn import_object(&self, source: &Repository, id: &ObjectId) -> Result<Imported> {
        self.check_alg(id)?;
        source.check_alg(id)?;
        if self.has_object(id)? {
            return Ok(Imported::Present);
        }
        // Opened without following a symlink; measured where the source enforces verity.
        let src = source.open_object(id)?;
        let src_path = source.object_path(id);
        let same_fs = {
            let a = rustix::fs::fstat(&src).ctx("checking", &src_path)?;
            let b =
                rustix::fs::fstat(&self.objects.fd).ctx("checking", self.path.join("objects"))?;
            a.st_dev == b.st_dev
        };
        if same_fs && source.meta.verity == self.meta.verity {
            if self.meta.verity != VerityMode::Enforced {
                let mut f = &src;
                f.seek(SeekFrom::Start(0)).ctx("reading", &src_path)?;
                let actual =
                    FsVerityHasher::digest_reader(self.meta.hash, f).ctx("reading", &src_path)?;
                check(id, actual)?;
            }
            match self.link_inode(&src, id) {
                Ok(()) => return Ok(Imported::Hardlinked),
                // Not allowed here (e.g. protected hardlinks, a filesystem without links):
                // fall back to a copy.
                Err(Error::Io { source, .. })
                    if matches!(
                        source.raw_os_error().map(Errno::from_raw_os_error),
                        Some(Errno::PERM | Errno::XDEV | Errno::MLINK | Errno::OPNOTSUPP)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let mut w = self.object_writer()?;
        let dst_path = self.object_path(id);
        let how = {
            let file = w.file().ctx("writing", &dst_path)?;
            match rustix::fs::ioctl_ficlone(&*file, &src) {
                Ok(()) => {
                    if self.meta.verity != VerityMode::Enforced {
                        // Enforced: `commit` enables verity and measures it against `id`.
                        file.seek(SeekFrom::Start(0)).ctx("reading", &dst_path)?;
                        let actual = FsVerityHasher::digest_reader(self.meta.hash, &*file)
                            .ctx("reading", &dst_path)?;
                        check(id, actual)?;
                    }
                    Imported::Reflinked
                }
                Err(_) => {
                    let mut f = &src;
                    f.seek(SeekFrom::Start(0)).ctx("reading", &src_path)?;
                    let mut reader = Hashing {
                        inner: f,
                        hasher: FsVerityHasher::new(self.meta.hash),
                    };
                    std::io::copy(&mut reader, file).ctx("copying", &src_path)?;
                    check(id, reader.hasher.finalize())?;
                    Imported::Copied
                }
            }
        };
        w.commit(*id)?;
        Ok(how)
    }

    /// Links the (verified) inode `file` as the object `id`. Something that is not a regular
    /// file at the name is moved aside; a regular file there is another writer's copy.
    fn link_inode(&self, file: &File, id: &ObjectId) -> Result<()> {
        let hex = id.to_hex();
        let (dir, rest) = hex.split_at(2);
        let xx = self.object_dir(dir)?;
        for _ in 0..2 {
            crate::fault::point();
            match link_tmpfile(file, &xx, rest) {
                Ok(()) => return Ok(()),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e).ctx("linking", self.object_path(id)),
            }
            match self.find_object(id, false)? {
                Found::Present(_) => return Ok(()),
                Found::Missing => {}
                Found::Damaged { .. } => {
                    match layout::entry_type(xx.as_fd(), rest)
                        .ctx("checking", self.object_path(id))?
                    {
                        Some(FileType::RegularFile) | None => {}
                        Some(_) => {
                            self.move_aside(xx.as_fd(), rest, &format!("objects/{dir}/{rest}"))?
                        }
                    }
                }
            }
        }
        Err(Errno::EXIST).ctx("linking", self.object_path(id))
    }
}

fn check(expected: &ObjectId, actual: ObjectId) -> Result<()> {
    if actual != *expected {
        return Err(Error::CorruptObject {
            expected: Box::new(*expected),
            actual: Box::new(actual),
        });
    }
    Ok(())
}
