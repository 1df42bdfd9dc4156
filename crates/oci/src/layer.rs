//! Importing one uncompressed tar layer: split it while hashing it, and name the stream by the
//! layer's diff_id (`oci-layer-sha256:<hex>`).

use std::io::Read;

use cfs_repository::{ObjectId, Repository};
use sha2::{Digest, Sha256};

use crate::tar::{TarError, split};

/// The content id of a layer stream, from its diff_id hex.
pub fn layer_content_id(diff_id_hex: &str) -> String {
    format!("oci-layer-sha256:{diff_id_hex}")
}

/// The result of importing a layer.
#[derive(Debug, Clone)]
pub struct LayerImport {
    /// sha256 of the uncompressed tar, as hex.
    pub diff_id: String,
    /// `oci-layer-sha256:<diff_id>`.
    pub content_id: String,
    /// The stream's object.
    pub stream: ObjectId,
    /// Uncompressed size in bytes.
    pub size: u64,
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Splits an uncompressed tar layer into the repository and registers it under its diff_id.
pub fn import_layer(repo: &Repository, tar: impl Read) -> Result<LayerImport, TarError> {
    let mut reader = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
        count: 0,
    };
    // `split` consumes its input to the end, padding after the end-of-archive marker included,
    // so the hash covers exactly the bytes the stream re-creates.
    let stream = split(repo, &mut reader)?;
    let diff_id = hex::encode(reader.hasher.finalize());
    let content_id = layer_content_id(&diff_id);
    repo.register_stream(&content_id, &stream)?;
    Ok(LayerImport {
        diff_id,
        content_id,
        stream,
        size: reader.count,
    })
}
