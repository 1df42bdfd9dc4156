//! Durability of names: the directories whose entries a command created, replaced or removed
//! are fsynced before the command reports success, after the data they name is durable (the
//! `syncfs` that precedes naming). Also the cleanup of the temporary links a killed process can
//! leave between creating a link and renaming it into place. Rules: docs/repository.md.
//! Every directory is reached through the repository's descriptors ([`crate::layout`]).
//! The dirty-directory set itself ([`DirtyDirs`]) is the repository core's, which fills it as
//! it creates names, so that module needs nothing from this one.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};

use crate::error::{IoContext, Result};
use crate::layout;
use crate::repository::{Dir, DirtyDirs, Repository, TEMP_LINK};

impl Repository {
    /// Fsyncs every directory in `dirty` (relative to `dir`), so that the entries created,
    /// replaced or removed in them survive a power cut.
    pub(crate) fn sync_dirs(&self, dir: &Dir, dirty: &DirtyDirs) -> Result<()> {
        for rel in dirty {
            let full = self.path().join(dir.rel).join(rel);
            if rel.is_empty() {
                rustix::fs::fsync(&dir.fd).ctx("syncing", &full)?;
                continue;
            }
            let fd = layout::open_dir_beneath(dir.fd.as_fd(), rel).ctx("opening", &full)?;
            rustix::fs::fsync(&fd).ctx("syncing", &full)?;
        }
        Ok(())
    }

    /// Fsyncs `streams/` and `images/` (where gc and repair remove links), so that those
    /// removals are durable before the objects the links named are removed.
    pub(crate) fn sync_link_dirs(&self) -> Result<()> {
        let top = DirtyDirs::from([String::new()]);
        self.sync_dirs(self.streams_dir(), &top)?;
        self.sync_dirs(self.images_dir(), &top)
    }

    /// Removes the temporary links (`.tmp-link-…`) a process killed between creating a link and
    /// renaming it into place left anywhere under `streams/` and `images/`, and returns their
    /// paths relative to the repository. Only under the exclusive lock (gc): then no writer is
    /// between the two steps. Directories are walked through descriptors, never followed.
    pub(crate) fn remove_stale_links(&self) -> Result<Vec<String>> {
        let prefix = format!(".tmp-{TEMP_LINK}-");
        let mut removed = Vec::new();
        for top in [self.streams_dir(), self.images_dir()] {
            let mut dirty = DirtyDirs::new();
            let base = self.path().join(top.rel);
            layout::walk(top.fd.as_fd(), &base, |fd, rel, entries| {
                let mut subdirs = Vec::new();
                for entry in entries {
                    if !entry.utf8 {
                        continue;
                    }
                    if entry.kind == FileType::Directory {
                        subdirs.push(entry.name);
                    } else if entry.kind == FileType::Symlink && entry.name.starts_with(&prefix) {
                        crate::fault::point();
                        layout::unlink_if_present(fd, &entry.name, AtFlags::empty())
                            .ctx("removing", base.join(rel).join(&entry.name))?;
                        dirty.insert(rel.to_owned());
                        removed.push(if rel.is_empty() {
                            format!("{}/{}", top.rel, entry.name)
                        } else {
                            format!("{}/{rel}/{}", top.rel, entry.name)
                        });
                    }
                }
                Ok(subdirs)
            })?;
            self.sync_dirs(top, &dirty)?;
        }
        removed.sort();
        Ok(removed)
    }
}
