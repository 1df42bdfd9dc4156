//! `cfsctl oci copy --from OTHER NAME [NEWNAME]`: an image (or artifact) taken from another cfs
//! repository with everything it needs: its root stream (config or manifest), every stream
//! that names (layers, manifest, list, blobs), and every object those streams reference.
//!
//! Objects come through [`Repository::import_object`] (hardlinked on one filesystem with the
//! same verity mode, else reflinked or copied; always verified against their fs-verity digest
//! before they are named). Then every copied stream is re-created from the destination's
//! objects and its sha256 compared with its content id (`oci-layer-sha256:<diff_id>`,
//! `oci-config-sha256:<config digest>`, …). Only then are the streams registered (one
//! `syncfs` first) and the name set: a killed or failed copy leaves unnamed objects (fsck
//! clean, gc removes them) and a re-run finds them and completes.

use std::collections::HashSet;
use std::io::Write;

use cfs_repository::{HashAlgorithm, Imported, ObjectId, Repository};
use sha2::{Digest as _, Sha256};

use crate::store::{self, StoreError};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The repositories name objects with different hash algorithms.
    #[error(
        "cannot copy from {from} ({src}) into {to} ({dst}): object names use different hash \
         algorithms; pull the image into {to} instead (or export it and pull the export)"
    )]
    Algorithm {
        /// The source repository.
        from: String,
        /// Its algorithm.
        src: HashAlgorithm,
        /// The destination.
        to: String,
        /// Its algorithm.
        dst: HashAlgorithm,
    },
    /// A stream's content is not what its content id says.
    #[error("stream {content_id} of {name} re-creates bytes with sha256 {actual}; refused")]
    Content {
        /// The image.
        name: String,
        /// The stream.
        content_id: String,
        /// What it hashed to.
        actual: String,
    },
    /// A stream of a kind copy does not know.
    #[error("stream {0}: not an OCI stream cfs knows how to check; refused")]
    UnknownStream(String),
    /// The image could not be found or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A repository failed (also: an object whose digest does not match).
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
}

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// The name set in the destination.
    pub name: String,
    /// The image ID (`sha256:<config hex>`; artifacts: the manifest digest).
    pub image_id: String,
    /// Streams copied (or found).
    pub streams: usize,
    /// Objects already in the destination.
    pub present: usize,
    /// Objects hardlinked.
    pub hardlinked: usize,
    /// Objects reflinked.
    pub reflinked: usize,
    /// Objects copied.
    pub copied: usize,
}

/// The sha256 hex a stream's content must hash to, from its content id.
fn expected_hex(content_id: &str) -> Option<&str> {
    let (kind, hex) = content_id.split_once("-sha256:")?;
    matches!(
        kind,
        "oci-layer" | "oci-config" | "oci-manifest" | "oci-blob"
    )
    .then_some(hex)
    .filter(|h| crate::reference::is_sha256_hex(h))
}

struct Sha(Sha256);

impl Write for Sha {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `name` from `src` into `dst`, named `new_name` (default: `name`).
pub fn copy_image(
    src: &Repository,
    dst: &Repository,
    name: &str,
    new_name: Option<&str>,
) -> Result<CopyReport, CopyError> {
    if src.algorithm() != dst.algorithm() {
        return Err(CopyError::Algorithm {
            from: src.path().display().to_string(),
            src: src.algorithm(),
            to: dst.path().display().to_string(),
            dst: dst.algorithm(),
        });
    }
    let target = new_name.unwrap_or(name);
    cfs_repository::names::check_ref_name(target)?;
    let root = store::resolve(src, name)?;
    let img = store::open(src, &root)?;
    let (_, root_obj) = src.resolve_stream(&root)?;
    let mut report = CopyReport {
        name: target.to_owned(),
        image_id: img.id.clone(),
        ..CopyReport::default()
    };
    // Every stream reachable from the root through the streams' named refs, each after the
    // streams it names (post-order): registered in this order, a kill between two links never
    // leaves a stream naming one that is not there.
    let mut todo = vec![(root.clone(), root_obj, false)];
    let mut seen = HashSet::new();
    let mut streams: Vec<(String, ObjectId)> = Vec::new();
    while let Some((cid, obj, expanded)) = todo.pop() {
        if expanded {
            streams.push((cid, obj));
            continue;
        }
        if !seen.insert(cid.clone()) {
            continue;
        }
        let header = src.open_stream_object(&obj)?.header().clone();
        todo.push((cid, obj, true));
        for r in &header.streams {
            todo.push((r.content_id.clone(), r.object, false));
        }
    }
    for (cid, obj) in &streams {
        if expected_hex(cid).is_none() {
            return Err(CopyError::UnknownStream(cid.clone()));
        }
        // The stream object first (its header lists its objects), then its objects.
        count(&mut report, dst.import_object(src, obj)?);
        let header = dst.open_stream_object(obj)?.header().clone();
        for o in &header.objects {
            count(&mut report, dst.import_object(src, o)?);
        }
        // Re-created from the destination's own (verified) objects.
        let mut sha = Sha(Sha256::new());
        dst.open_stream_object(obj)?.write_to(dst, &mut sha)?;
        let actual = hex::encode(sha.0.finalize());
        if Some(actual.as_str()) != expected_hex(cid) {
            return Err(CopyError::Content {
                name: name.to_owned(),
                content_id: cid.clone(),
                actual,
            });
        }
    }
    report.streams = streams.len();
    let pairs: Vec<(&str, ObjectId)> = streams.iter().map(|(c, o)| (c.as_str(), *o)).collect();
    dst.register_streams(&pairs)?;
    store::set_name(dst, target, &root)?;
    Ok(report)
}

fn count(report: &mut CopyReport, how: Imported) {
    match how {
        Imported::Present => report.present += 1,
        Imported::Hardlinked => report.hardlinked += 1,
        Imported::Reflinked => report.reflinked += 1,
        Imported::Copied => report.copied += 1,
    }
}
