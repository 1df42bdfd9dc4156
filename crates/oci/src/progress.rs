//! Progress reporting for pulls: the library calls these hooks (from several threads), the CLI
//! draws bars with them. Every method has an empty default, so [`NoProgress`] is the quiet case.

/// What a pull reports as it goes.
pub trait PullProgress: Send + Sync {
    /// A line of status ("resolving", "config already stored", ...).
    fn message(&self, _msg: &str) {}
    /// A blob (layer or artifact blob) is about to be fetched: `index` in the manifest, its
    /// digest and compressed size.
    fn blob_started(&self, _index: usize, _digest: &str, _size: u64) {}
    /// `n` more compressed bytes of blob `index` arrived.
    fn blob_progress(&self, _index: usize, _n: u64) {}
    /// Blob `index` is stored and registered.
    fn blob_done(&self, _index: usize) {}
    /// Blob `index` is already stored and will not be fetched.
    fn blob_skipped(&self, _index: usize, _digest: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl PullProgress for NoProgress {}
