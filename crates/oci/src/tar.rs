//! Splitting a tar stream into a splitstream.
//!
//! PLACEHOLDER for the real splitter: stores the whole archive inline. Correct (re-creates the
//! bytes exactly) but shares nothing; being replaced by the header-aware splitter.

use std::io::Read;

use cfs_repository::{ObjectId, Repository};

/// The content type of tar splitstreams.
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";

/// Why a tar stream could not be split.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the input failed.
    #[error("reading the tar stream: {0}")]
    Read(#[from] std::io::Error),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
}

/// Splits the tar stream from `input` into a new (unregistered) splitstream; returns its object.
pub fn split(repo: &Repository, mut input: impl Read) -> Result<ObjectId, TarError> {
    let mut w = repo.create_stream(TAR_CONTENT_TYPE)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_inline(&buf[..n])?;
    }
    Ok(w.finish()?)
}
