//! The local source: `oci:`, `oci-archive:` and `dir:` read by cfs itself
//! ([`crate::local`] parses the layouts), with no skopeo. Blobs go to the pipeline's threads
//! as [`BlobInput::Local`]: the file (or the archive member, in place) is read there directly.
//!
//! Reads of manifests and configs are small and done on the caller's task.

use futures_util::future::BoxFuture;

use super::{BlobInput, BlobRequest, OpenedSource, SmallBlob, Source, SourceError};
use crate::local::{LocalKind, LocalSource};
use crate::manifest::Platform;

/// An image in a local layout, archive or directory.
pub struct Local(LocalSource);

impl Local {
    /// Opens `details` (what follows the transport) as `kind`.
    pub fn open(kind: LocalKind, details: &str) -> Result<Self, SourceError> {
        Ok(Self(LocalSource::open(kind, details)?))
    }
}

impl Source for Local {
    fn top_manifest(&self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(async move { Ok(self.0.top_manifest()?) })
    }

    fn open<'a>(
        &'a self,
        _platform: Option<&'a Platform>,
    ) -> BoxFuture<'a, Result<Box<dyn OpenedSource + 'a>, SourceError>> {
        Box::pin(async move { Ok(Box::new(Opened(&self.0)) as Box<dyn OpenedSource + 'a>) })
    }
}

struct Opened<'a>(&'a LocalSource);

/// The largest manifest read from a local source (a manifest list of many platforms is a few
/// hundred KiB).
const MAX_MANIFEST: u64 = 16 << 20;

impl OpenedSource for Opened<'_> {
    fn manifest<'a>(&'a self, hex: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
        Box::pin(async move { Ok(self.0.read_manifest(hex, MAX_MANIFEST)?) })
    }

    fn small_blob<'a>(
        &'a self,
        req: &'a BlobRequest,
    ) -> BoxFuture<'a, Result<SmallBlob, SourceError>> {
        Box::pin(async move {
            let data = self.0.read_blob(&req.hex, req.size.saturating_add(1))?;
            Ok(SmallBlob {
                data,
                complaint: None,
            })
        })
    }

    fn blobs<'a>(
        &'a self,
        reqs: &'a [BlobRequest],
    ) -> BoxFuture<'a, Result<Vec<BlobInput<'a>>, (usize, SourceError)>> {
        Box::pin(async move {
            reqs.iter()
                .enumerate()
                .map(|(i, r)| match self.0.open_blob(&r.hex, r.size) {
                    Ok(b) => Ok(BlobInput::Local(Box::new(b))),
                    Err(e) => Err((i, e.into())),
                })
                .collect()
        })
    }

    fn close<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), SourceError>>
    where
        Self: 'a,
    {
        Box::pin(async { Ok(()) })
    }
}
