//! Importing one uncompressed tar layer: split it while hashing it, and name the stream by the
//! layer's diff_id (`oci-layer-sha256:<hex>`).
//!
//! [`split_layer`] only writes (objects and an unregistered stream) and reports the diff_id;
//! the caller decides whether to register it. The pull uses that to register a layer only
//! after its digests matched; [`import_layer`] registers whatever it was given.

use std::io::{BufRead, Read};

use cfs_repository::{ObjectId, ObjectPool, Repository};
use sha2::{Digest, Sha256};

use crate::tar::{TarError, split, split_with_pool};

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

/// A reader that hashes (sha256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sha256 (hex) of everything read, and the count.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A buffered reader that hashes (sha256) and counts what passes through it. Bytes are hashed
/// when the inner reader first exposes them (`fill_buf`), each exactly once, so after the
/// input has been read to its end the digest covers exactly the whole input.
pub struct HashingBufReader<R> {
    inner: R,
    /// `None`: count only (the caller has the digest from elsewhere).
    hasher: Option<Sha256>,
    /// Bytes at the front of the inner buffer that are already hashed.
    hashed: usize,
    count: u64,
}

impl<R: BufRead> HashingBufReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Some(Sha256::new()),
            hashed: 0,
            count: 0,
        }
    }

    /// Wraps `inner` to count what is consumed, without hashing it ([`Self::finish`] then
    /// gives an empty digest).
    pub fn counting(inner: R) -> Self {
        Self {
            hasher: None,
            ..Self::new(inner)
        }
    }

    /// Bytes consumed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sha256 (hex) of everything exposed, and the bytes consumed.
    pub fn finish(self) -> (String, u64) {
        let digest = self.hasher.map(|h| hex::encode(h.finalize()));
        (digest.unwrap_or_default(), self.count)
    }
}

impl<R: BufRead> BufRead for HashingBufReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let buf = self.inner.fill_buf()?;
        if buf.len() > self.hashed {
            if let Some(h) = &mut self.hasher {
                h.update(&buf[self.hashed..]);
            }
            self.hashed = buf.len();
        }
        Ok(buf)
    }

    fn consume(&mut self, amt: usize) {
        self.hashed = self.hashed.saturating_sub(amt);
        self.count += amt as u64;
        self.inner.consume(amt);
    }
}

impl<R: BufRead> Read for HashingBufReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The result of a split that consumed `taken` bytes, with `rest` bytes left after the archive
/// (which the stream would lack, so they are an error), and the reader's `(diff_id, size)`.
fn finish_import(
    stream: ObjectId,
    taken: u64,
    rest: u64,
    (diff_id, size): (String, u64),
) -> Result<LayerImport, TarError> {
    if rest != 0 {
        return Err(TarError::Read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{rest} bytes after the end of the tar archive (at byte {taken})"),
        )));
    }
    Ok(LayerImport {
        content_id: layer_content_id(&diff_id),
        diff_id,
        stream,
        size,
    })
}

/// [`split_layer`] with the objects stored by `pool`'s workers (the parsing thread only moves
/// bytes and hashes the diff_id).
pub fn split_layer_with_pool(
    repo: &Repository,
    tar: impl BufRead,
    pool: &ObjectPool,
) -> Result<LayerImport, TarError> {
    split_pooled(repo, HashingBufReader::new(tar), pool)
}

/// [`split_layer_with_pool`] for a layer whose diff_id the caller computes anyway (an
/// uncompressed blob: its digest is its diff_id): the bytes are not hashed a second time, and
/// the result's `diff_id` is empty.
pub fn split_layer_with_pool_unhashed(
    repo: &Repository,
    tar: impl BufRead,
    pool: &ObjectPool,
) -> Result<LayerImport, TarError> {
    split_pooled(repo, HashingBufReader::counting(tar), pool)
}

fn split_pooled<R: BufRead>(
    repo: &Repository,
    mut reader: HashingBufReader<R>,
    pool: &ObjectPool,
) -> Result<LayerImport, TarError> {
    let stream = split_with_pool(repo, &mut reader, pool)?;
    let taken = reader.count();
    let rest = std::io::copy(&mut reader, &mut std::io::sink())?;
    finish_import(stream, taken, rest, reader.finish())
}

/// Splits an uncompressed tar layer into the repository without naming it: the stream object
/// exists but nothing refers to it until it is registered (gc removes it otherwise).
///
/// The whole input is consumed. Bytes after the archive that the splitter did not take (it
/// takes the end-of-archive padding) would be missing from the stream, so they are an error.
pub fn split_layer(repo: &Repository, tar: impl Read) -> Result<LayerImport, TarError> {
    let mut reader = HashingReader::new(tar);
    let stream = split(repo, &mut reader)?;
    let taken = reader.count();
    let rest = std::io::copy(&mut reader, &mut std::io::sink())?;
    finish_import(stream, taken, rest, reader.finish())
}

/// Splits an uncompressed tar layer into the repository and registers it under its diff_id.
pub fn import_layer(repo: &Repository, tar: impl Read) -> Result<LayerImport, TarError> {
    let imported = split_layer(repo, tar)?;
    repo.register_stream(&imported.content_id, &imported.stream)?;
    Ok(imported)
}
