//! Where a pull's bytes come from: one [`Source`] per transport, all behind the same trait.
//!
//! - [`skopeo`]: `docker://`, `containers-storage:`, `docker-archive:`, `docker-daemon:`
//!   through skopeo (`skopeo inspect --raw` and the `containers-image-proxy` protocol).
//! - [`local`]: `oci:`, `oci-archive:` and `dir:`, read by cfs itself (no skopeo): blobs are
//!   files (or members of an uncompressed archive) handed to the pipeline's threads as they
//!   are, read in place.
//!
//! A source only delivers bytes. It checks nothing the pull relies on: every manifest, config
//! and blob is hashed by the pull and compared with the digest that names it.

pub mod local;
pub mod skopeo;
mod skopeo_msg;

use std::io::Read;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use tokio::io::AsyncRead;

use crate::local::{LocalError, LocalKind};
use crate::manifest::Platform;
use crate::reference::{ImageRef, Transport};

/// Why a source could not deliver something.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `skopeo inspect --raw` failed.
    #[error("reading the manifest with skopeo: {0}")]
    Inspect(String),
    /// The skopeo proxy failed.
    #[error("{what}: {source}")]
    Proxy {
        /// What was being done.
        what: String,
        /// The proxy's error.
        #[source]
        source: containers_image_proxy::Error,
    },
    /// The instance manifest of a Docker manifest list cannot be fetched unconverted.
    #[error(
        "the proxy returns manifest sha256:{digest} converted to OCI, and this transport \
         cannot fetch the original bytes"
    )]
    ManifestUnavailable {
        /// The instance digest.
        digest: String,
    },
    /// A request the source cannot make (a digest it cannot parse).
    #[error("{what}: {message}")]
    Request {
        /// What was asked for.
        what: String,
        /// Why it cannot be asked.
        message: String,
    },
    /// A local layout, archive or directory is unreadable or malformed.
    #[error(transparent)]
    Local(Box<LocalError>),
    /// Something local (temporary files) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<LocalError> for SourceError {
    fn from(e: LocalError) -> Self {
        SourceError::Local(Box::new(e))
    }
}

/// How to reach the source (what `PullOptions` says about it).
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Skip TLS verification.
    pub insecure_skip_tls_verification: bool,
    /// Registry credentials file.
    pub authfile: Option<PathBuf>,
    /// `USER`, `PASSWORD` for the reference's registry.
    pub creds: Option<(String, String)>,
    /// skopeo's `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
}

/// One blob to fetch.
#[derive(Debug, Clone)]
pub struct BlobRequest {
    /// `sha256:<hex>` as the source names it.
    pub digest: String,
    /// Its hex.
    pub hex: String,
    /// Its size, when known (`exact_size`); otherwise 0 and the blob is read to its end.
    pub size: u64,
    /// Whether `size` is known.
    pub exact_size: bool,
}

/// A blob's bytes, as the source delivers them.
pub enum BlobInput<'a> {
    /// Read directly on a worker thread: exactly the blob's bytes (a file, or a member of an
    /// archive read in place).
    Local(Box<dyn Read + Send>),
    /// Bytes that arrive asynchronously (a pipe from skopeo): the pipeline pumps them to the
    /// worker thread. `finish` resolves once the source is done with the blob, with its own
    /// verdict (which explains a failure; the pipeline's digests decide).
    Remote {
        /// The bytes.
        reader: Box<dyn AsyncRead + Send + Unpin + 'a>,
        /// The source's end of the transfer.
        finish: BoxFuture<'a, Result<(), String>>,
    },
}

/// A small blob (a config), read whole, with the source's complaint about it if it had one.
#[derive(Debug)]
pub struct SmallBlob {
    /// What arrived (at most one byte more than asked for).
    pub data: Vec<u8>,
    /// The source's own error, if it reported one after the bytes.
    pub complaint: Option<String>,
}

/// A transport that can deliver an image's manifest and blobs.
pub trait Source: Send + Sync {
    /// The top-level manifest (or manifest list) exactly as stored.
    fn top_manifest(&self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>>;

    /// Opens the image for fetching; `platform` is the one chosen from a manifest list.
    fn open<'a>(
        &'a self,
        platform: Option<&'a Platform>,
    ) -> BoxFuture<'a, Result<Box<dyn OpenedSource + 'a>, SourceError>>;
}

/// An opened image: its instance manifest and blobs.
pub trait OpenedSource: Send + Sync {
    /// The manifest with sha256 `hex` that the list names (exact bytes).
    fn manifest<'a>(&'a self, hex: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>>;

    /// A small blob, whole (at most `size + 1` bytes are read).
    fn small_blob<'a>(
        &'a self,
        req: &'a BlobRequest,
    ) -> BoxFuture<'a, Result<SmallBlob, SourceError>>;

    /// Sizes of the layers when this source serves them uncompressed, named by their diff_ids
    /// (containers-storage); `None`: layers are served as the manifest names them.
    fn uncompressed_layers<'a>(
        &'a self,
        _diff_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Option<u64>>>, String>> {
        Box::pin(async { Ok(None) })
    }

    /// Opens every blob of `reqs`, in order, before any is read (skopeo serves requests one
    /// at a time, so a blob requested after another's end would wait for it). On failure,
    /// the index in `reqs` of the blob that could not be opened.
    fn blobs<'a>(
        &'a self,
        reqs: &'a [BlobRequest],
    ) -> BoxFuture<'a, Result<Vec<BlobInput<'a>>, (usize, SourceError)>>;

    /// Ends the transfer (skopeo: shuts the proxy down).
    fn close<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), SourceError>>
    where
        Self: 'a;
}

/// The source for `iref`.
pub fn open(iref: &ImageRef, opts: &SourceOptions) -> Result<Box<dyn Source>, SourceError> {
    let local = |kind| -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(local::Local::open(kind, &iref.details)?))
    };
    match iref.transport {
        Transport::Oci => local(LocalKind::Layout),
        Transport::OciArchive => local(LocalKind::Archive),
        Transport::Dir => local(LocalKind::Dir),
        _ => Ok(Box::new(skopeo::Skopeo::new(iref, opts)?)),
    }
}
