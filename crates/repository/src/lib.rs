//! The cfs repository: a content-addressed store of objects named by their fs-verity digests,
//! splitstreams that re-create whole streams from inline bytes and object references, and the
//! names (refs) that keep streams and images alive.
//!
//! See `docs/repository.md` and `docs/splitstream.md` for the on-disk formats.

pub mod digest;
mod durable;
pub mod error;
mod fault;
pub mod fsck;
pub mod fsverity;
pub mod gc;
mod layout;
mod links;
pub mod lock;
mod meta;
pub mod names;
pub mod pool;
pub mod repair;
pub mod repository;
pub mod splitstream;

pub use digest::{DigestParseError, HashAlgorithm, ObjectId};
pub use error::{Error, Result};
pub use fsck::{FsckReport, Problem};
pub use fsverity::FsVerityHasher;
pub use gc::{GcReport, ImageObjects};
pub use links::RefEntry;
pub use lock::LockMode;
pub use pool::{ObjectPool, ObjectStream, Pending};
pub use repair::RepairReport;
pub use repository::{Imported, InitVerity, Meta, ObjectWriter, Repository, VerityMode};
pub use splitstream::{Chunk, SplitStreamHeader, SplitStreamReader, SplitStreamWriter, StreamRef};
