//! Why a pull failed: [`PullError`]. Every variant names the image; blob problems name the
//! layer and both digests.

use std::io;

use crate::manifest::ManifestError;
use crate::reference::ReferenceError;
use crate::source::SourceError;
use crate::tar::TarError;

/// Why a pull failed. Every variant names the image; blob problems name the layer and both
/// digests.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference cannot be used.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The local name cannot be used (refused before anything is fetched).
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// The source could not deliver (skopeo, a local layout).
    #[error("{image}: {source}")]
    Source {
        /// The image.
        image: String,
        /// What went wrong.
        #[source]
        source: SourceError,
    },
    /// A manifest problem (parse, media type, platform).
    #[error("{image}: {source}")]
    Manifest {
        /// The image.
        image: String,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// The manifest (or list) is not the one the digest names.
    #[error("{image}: the {what} has digest sha256:{actual}, expected sha256:{expected}")]
    ManifestDigest {
        /// The image.
        image: String,
        /// "manifest", "manifest list", ...
        what: &'static str,
        /// Expected hex.
        expected: String,
        /// Actual hex.
        actual: String,
    },
    /// The config blob does not hash to the config digest.
    #[error(
        "{image}: config: content hashes to sha256:{actual}, the manifest says sha256:{expected}"
    )]
    ConfigDigest {
        /// The image.
        image: String,
        /// From the manifest.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// Layer count and diff_id count differ.
    #[error("{image}: the manifest lists {layers} layers but the config has {diff_ids} diff_ids")]
    LayerCount {
        /// The image.
        image: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A layer media type we cannot read.
    #[error(
        "{image}: layer {layer} (sha256:{digest}): unsupported media type {media_type:?} \
         (supported: OCI/Docker tar, tar+gzip, tar+zstd)"
    )]
    MediaType {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Layer digest hex.
        digest: String,
        /// The media type.
        media_type: String,
    },
    /// A blob's bytes do not hash to its digest.
    #[error(
        "{image}: {layer}: content hashes to sha256:{actual}, the manifest says sha256:{expected}"
    )]
    BlobDigest {
        /// The image.
        image: String,
        /// "layer N" (index in the manifest) or "config".
        layer: String,
        /// From the manifest.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// The uncompressed layer does not hash to its diff_id.
    #[error(
        "{image}: layer {layer} (sha256:{digest}): uncompressed content hashes to \
         sha256:{actual}, the config's diff_id is sha256:{expected}"
    )]
    DiffId {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// The layer's (compressed) digest hex.
        digest: String,
        /// diff_id from the config.
        expected: String,
        /// Of the bytes.
        actual: String,
    },
    /// The blob's bytes ended early or could not be read.
    #[error("{image}: {layer} (sha256:{digest}): fetching: {message}")]
    Fetch {
        /// The image.
        image: String,
        /// "layer N" (index in the manifest) or "config".
        layer: String,
        /// Digest hex.
        digest: String,
        /// What went wrong.
        message: String,
    },
    /// Decompressing failed.
    #[error("{image}: layer {layer} (sha256:{digest}): decompressing: {source}")]
    Decompress {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Digest hex.
        digest: String,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// The layer is not a tar we can store.
    #[error("{image}: layer {layer} (sha256:{digest}): {source}")]
    Tar {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Digest hex.
        digest: String,
        /// The splitter's error.
        #[source]
        source: Box<TarError>,
    },
    /// The repository failed.
    #[error("{image}: {source}")]
    Repository {
        /// The image.
        image: String,
        /// The error.
        #[source]
        source: cfs_repository::Error,
    },
    /// Something local (temporary files, threads) failed.
    #[error("{image}: {what}: {source}")]
    Io {
        /// The image.
        image: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `--image-id` was given and the image's config digest is another (nothing was named).
    #[error(
        "{image}: the image ID is {actual}, not the {expected} asked for (--image-id); refused"
    )]
    ImageId {
        /// The image.
        image: String,
        /// What `--image-id` asked for.
        expected: String,
        /// The config digest (artifacts: the manifest digest) of what the source offers.
        actual: String,
    },
}
