//! Reads composefs EROFS images back into trees (stub).

use cfs_repository::ObjectId;

use crate::tree::FileSystem;

/// Why an image could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Corrupt or unsupported image.
    #[error("invalid image: {0}")]
    Invalid(String),
}

/// Reads an image.
pub fn read(_image: &[u8]) -> Result<FileSystem, ReadError> {
    Err(ReadError::Invalid("todo".into()))
}

/// Lists referenced objects.
pub fn referenced_objects(_image: &[u8]) -> Result<Vec<ObjectId>, ReadError> {
    Err(ReadError::Invalid("todo".into()))
}
