//! `fsck --repair`: makes a damaged repository consistent again so that the next pull restores
//! what was lost. Corrupt objects are removed (an insecure repository trusts names on reuse, so
//! a corrupt object left in place would be reused by the next pull), then every stream and
//! image link that needs a removed, missing or corrupt object — directly or through another
//! stream — is removed too. A pull whose config stream is gone fetches the image again and
//! re-creates exactly those objects and streams. Refs are kept: they say what to re-pull; until
//! then fsck reports them as dangling.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::fsck::FsckReport;
use crate::gc::ImageObjects;
use crate::repository::Repository;

/// What [`Repository::repair`] did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// The fsck report before repairing.
    pub before: FsckReport,
    /// Corrupt objects removed (paths relative to the repository).
    pub objects: Vec<String>,
    /// Stream links removed (content ids).
    pub streams: Vec<String>,
    /// Image links removed.
    pub images: Vec<String>,
    /// Refs whose stream or image is now gone: re-pull (or re-create) these.
    pub refs: Vec<String>,
}

/// Problem kinds that make a stream or image unusable.
const BROKEN: &[&str] = &[
    "missing-object",
    "missing-stream",
    "bad-stream",
    "bad-link",
    "bad-image",
];

impl Repository {
    /// Checks the repository like [`Repository::fsck`], then removes corrupt objects and every
    /// stream and image link that depends on something missing or corrupt. Holds the
    /// repository exclusively (waits for writers, as gc does).
    pub fn repair(
        &self,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<RepairReport> {
        self.lock_exclusive()?;
        let result = self.repair_locked(images, threads);
        self.lock_shared()?;
        result
    }

    fn repair_locked(
        &self,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<RepairReport> {
        let before = self.fsck(images, threads)?;
        let mut out = RepairReport::default();
        let mut broken_streams = BTreeSet::new();
        let mut broken_images = BTreeSet::new();
        for p in &before.problems {
            if p.kind == "corrupt-object" {
                out.objects.push(p.path.clone());
            } else if BROKEN.contains(&p.kind) {
                if let Some(cid) = p.path.strip_prefix("streams/")
                    && !cid.starts_with("refs/")
                {
                    broken_streams.insert(cid.to_owned());
                } else if let Some(id) = p.path.strip_prefix("images/")
                    && !id.starts_with("refs/")
                {
                    broken_images.insert(id.to_owned());
                }
            }
        }
        // Streams that name a broken stream are broken too (a config stream whose layer is
        // gone would let the next pull take the warm path): propagate to a fixed point.
        let streams = self.list_streams()?;
        loop {
            let mut grew = false;
            for (cid, id) in &streams {
                if broken_streams.contains(cid) {
                    continue;
                }
                let Ok(reader) = self.open_stream_object(id) else {
                    broken_streams.insert(cid.clone());
                    grew = true;
                    continue;
                };
                if reader
                    .header()
                    .streams
                    .iter()
                    .any(|s| broken_streams.contains(&s.content_id))
                {
                    broken_streams.insert(cid.clone());
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        // Names first, then objects: no name ever points at a removed object.
        for cid in &broken_streams {
            if self.remove_stream_link(cid)? {
                out.streams.push(cid.clone());
            }
        }
        for id in &broken_images {
            if self.remove_image_link(id)? {
                out.images.push(id.clone());
            }
        }
        // The links' removal is durable before the corrupt objects go.
        self.sync_link_dirs()?;
        for rel in &out.objects {
            crate::fault::point();
            let p = self.path().join(rel);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("removing", &p),
            }
        }
        if !out.objects.is_empty() {
            self.sync()?;
        }
        for r in self.list_stream_refs()? {
            if broken_streams.contains(&r.target) {
                out.refs.push(format!("streams/refs/{}", r.name));
            }
        }
        for r in self.list_image_refs()? {
            if broken_images.contains(&r.target) {
                out.refs.push(format!("images/refs/{}", r.name));
            }
        }
        out.before = before;
        Ok(out)
    }
}
