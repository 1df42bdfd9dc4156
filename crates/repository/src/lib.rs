//! The cfs repository: a content-addressed store of objects named by their fs-verity digests,
//! splitstreams that re-create whole streams from inline bytes and object references, and the
//! names (refs) that keep streams and images alive.
//!
//! See `docs/repository.md` and `docs/splitstream.md` for the on-disk formats.

pub mod digest;
pub mod fsverity;

pub use digest::{DigestParseError, HashAlgorithm, ObjectId};
pub use fsverity::FsVerityHasher;
