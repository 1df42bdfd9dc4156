//! [`ObjectWriter`]: streams an object of unknown size into place. The bytes go to an
//! `O_TMPFILE` in `objects/` (or a named file in `tmp/` where the filesystem has none) while
//! they are hashed; [`ObjectWriter::finish`] links the file under its fs-verity digest.

use std::fs::File;
use std::io::Write;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::Repository;
use crate::digest::ObjectId;
use crate::error::{IoContext, Result};
use crate::fsverity::FsVerityHasher;

impl Repository {
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

    pub(super) fn file(&mut self) -> std::io::Result<&mut File> {
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
    pub(super) fn commit(mut self, id: ObjectId) -> Result<()> {
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
