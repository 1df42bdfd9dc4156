//! Garbage collection: removes every object, stream link and image link that no ref reaches
//! and no mount uses.
//!
//! Roots are the refs (`streams/refs/**` and `images/refs/**`) and the images mounted right
//! now. From a stream, gc follows its object, every object its header lists and every stream
//! it names; from an image, the image object and the objects the image's EROFS redirects to.
//! Both image questions go to an [`ImageObjects`] reader, since this crate knows nothing of
//! EROFS or mounts. gc holds the repository's lock exclusively, so no writer is between
//! writing objects and naming them, and no mount between opening an image and attaching it,
//! while it runs.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use serde::Serialize;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::repository::Repository;
use crate::splitstream::SplitStreamHeader;

/// Finds the objects an image needs (implemented by the image crate over its EROFS reader).
pub trait ImageObjects {
    /// The objects the image (whose bytes are in `image`) references.
    fn referenced_objects(&self, image: &mut File) -> std::result::Result<Vec<ObjectId>, String>;

    /// The images of `algorithm` in use by mounts right now: gc keeps them as if a ref named
    /// them. An error stops gc (it cannot tell what is safe to remove).
    fn mounted_images(
        &self,
        algorithm: crate::HashAlgorithm,
    ) -> std::result::Result<Vec<ObjectId>, String> {
        let _ = algorithm;
        Ok(Vec::new())
    }
}

/// What gc removed (or, in a dry run, would remove).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Objects removed.
    pub objects: Vec<ObjectId>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Stream links (content ids) removed.
    pub streams: Vec<String>,
    /// Image links removed.
    pub images: Vec<ObjectId>,
    /// Images kept only because they are mounted (no ref names them).
    pub mounted: Vec<ObjectId>,
    /// Objects kept.
    pub kept_objects: usize,
    /// Their total size in bytes.
    pub kept_bytes: u64,
    /// Temporary links a killed process left (`streams/…/.tmp-link-…`), removed.
    pub temp_links: Vec<String>,
}

/// The set of live objects and names, computed from the refs.
#[derive(Default)]
pub(crate) struct Reachable {
    pub objects: HashSet<ObjectId>,
    pub streams: HashSet<String>,
    pub images: HashSet<ObjectId>,
    /// Images reached only through a mount.
    pub mounted: Vec<ObjectId>,
}

impl Repository {
    /// Reads just the header of a stream object (no decompression).
    pub fn stream_header(&self, id: &ObjectId) -> Result<SplitStreamHeader> {
        let mut f = self.open_object(id)?;
        let len = f.metadata().ctx("checking", self.object_path(id))?.len();
        let mut r = std::io::BufReader::new(&mut f);
        SplitStreamHeader::read(&mut r, self.algorithm(), &id.to_string(), Some(len))
    }

    fn mark_stream(&self, cid: &str, id: ObjectId, live: &mut Reachable) -> Result<()> {
        let mut todo = vec![(cid.to_owned(), id)];
        while let Some((cid, id)) = todo.pop() {
            live.streams.insert(cid);
            if !live.objects.insert(id) {
                continue;
            }
            let header = self.stream_header(&id)?;
            live.objects.extend(header.objects.iter().copied());
            for s in header.streams {
                todo.push((s.content_id, s.object));
            }
        }
        Ok(())
    }

    /// Marks an image and the objects it needs; returns whether it was newly marked.
    fn mark_image(
        &self,
        id: ObjectId,
        images: Option<&dyn ImageObjects>,
        live: &mut Reachable,
    ) -> Result<bool> {
        if !self.has_object(&id)? || !live.images.insert(id) {
            return Ok(false);
        }
        let reader = images.ok_or(Error::NoImageReader)?;
        let mut f = self.open_object(&id)?;
        let objs = reader
            .referenced_objects(&mut f)
            .map_err(|message| Error::BadImage {
                image: Box::new(id),
                message,
            })?;
        live.objects.insert(id);
        live.objects.extend(objs);
        Ok(true)
    }

    pub(crate) fn reachable(&self, images: Option<&dyn ImageObjects>) -> Result<Reachable> {
        let mut live = Reachable::default();
        for r in self.list_stream_refs()? {
            if let Some(id) = self.stream_object(&r.target)? {
                self.mark_stream(&r.target, id, &mut live)?;
            }
        }
        for r in self.list_image_refs()? {
            if let Ok(id) = ObjectId::parse_for(self.algorithm(), &r.target) {
                self.mark_image(id, images, &mut live)?;
            }
        }
        if let Some(reader) = images {
            let mounted = reader
                .mounted_images(self.algorithm())
                .map_err(Error::MountScan)?;
            // Anyone may name anything in a mount's source (an unprivileged user can mount an
            // overlay in a user namespace): only registered images count. One of those that
            // cannot be read stops gc, as for a ref's image: its mount may need any object.
            let registered: HashSet<ObjectId> = self.list_images()?.into_iter().collect();
            for id in mounted {
                if registered.contains(&id) && self.mark_image(id, images, &mut live)? {
                    live.mounted.push(id);
                }
            }
        }
        Ok(live)
    }

    /// Every object in `objects/` as (id, size): regular files named by a digest of the
    /// repository's algorithm, in `objects/XX` directories, listed through descriptors. Anything
    /// else (a symlinked or non-directory `XX`, a FIFO, device, directory or symlink at an
    /// object's path, a stray name) is skipped here and reported by fsck.
    pub(crate) fn all_objects(&self) -> Result<Vec<(ObjectId, u64)>> {
        let mut out = Vec::new();
        for d in self.list_dir(&self.objects)? {
            if d.kind != FileType::Directory || !d.utf8 || d.name.len() != 2 {
                continue;
            }
            let path = || self.path().join("objects").join(&d.name);
            let fd = match crate::layout::open_dir_beneath(self.objects.fd.as_fd(), &d.name) {
                Ok(fd) => fd,
                // Replaced by something else since the listing: fsck's business.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(e).ctx("opening", path()),
            };
            for e in crate::layout::list(fd.as_fd()).ctx("reading", path())? {
                if e.kind != FileType::RegularFile || !e.utf8 {
                    continue;
                }
                if let Ok(id) = ObjectId::from_object_path(&d.name, &e.name)
                    && id.algorithm() == self.algorithm()
                {
                    let size = rustix::fs::statat(&fd, e.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| u64::try_from(st.st_size).unwrap_or(0))
                        .unwrap_or(0);
                    out.push((id, size));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes everything unreachable from a ref; with `dry_run`, only reports it. Holds the
    /// repository exclusively while it runs (waits for other writers to finish).
    pub fn gc(&self, images: Option<&dyn ImageObjects>, dry_run: bool) -> Result<GcReport> {
        self.lock_exclusive()?;
        let result = self.gc_locked(images, dry_run);
        self.lock_shared()?;
        result
    }

    /// Removes the stream link `streams/<content_id>` of a stream nothing reaches any more (no
    /// ref, no other reachable stream, no mounted image), under the exclusive lock as gc, and
    /// durably; the next gc frees its object and what only it reached. For `oci rm` of an
    /// image whose names are gone. `false` if there was no such link.
    pub fn forget_stream(
        &self,
        images: Option<&dyn ImageObjects>,
        content_id: &str,
    ) -> Result<bool> {
        self.lock_exclusive()?;
        let result = (|| {
            if self.reachable(images)?.streams.contains(content_id) {
                return Err(Error::StillReachable(content_id.to_owned()));
            }
            let removed = self.remove_stream_link(content_id)?;
            if removed {
                self.sync_link_dirs()?;
            }
            Ok(removed)
        })();
        self.lock_shared()?;
        result
    }

    fn gc_locked(&self, images: Option<&dyn ImageObjects>, dry_run: bool) -> Result<GcReport> {
        let live = self.reachable(images)?;
        let mut report = GcReport {
            mounted: live.mounted.clone(),
            ..GcReport::default()
        };
        // Names first, so that no name ever points at a removed object. Only links are
        // listed: a stray (a file or directory among the links) is left to fsck.
        for (cid, _) in self.list_streams()? {
            if !live.streams.contains(&cid) {
                if !dry_run {
                    self.remove_stream_link(&cid)?;
                }
                report.streams.push(cid);
            }
        }
        for id in self.list_images()? {
            if !live.images.contains(&id) {
                if !dry_run {
                    self.remove_image_link(&id.to_hex())?;
                }
                report.images.push(id);
            }
        }
        if !dry_run {
            report.temp_links = self.remove_stale_links()?;
            // The names' removal is durable before any object they named goes.
            self.sync_link_dirs()?;
        }
        for (id, size) in self.all_objects()? {
            if live.objects.contains(&id) {
                report.kept_objects += 1;
                report.kept_bytes += size;
                continue;
            }
            if !dry_run {
                self.remove_object(&id)?;
            }
            report.objects.push(id);
            report.bytes += size;
        }
        if !dry_run && !report.objects.is_empty() {
            // What gc reports as removed stays removed after a power cut.
            self.sync()?;
        }
        Ok(report)
    }
}
