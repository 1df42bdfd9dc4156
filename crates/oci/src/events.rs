//! What a pull reports as it goes: [`PullEvent`]s sent to the caller on a channel.
//!
//! The library never draws anything; a caller (the CLI's progress bars, a daemon's status
//! API, a `--progress-fd` writer) receives the events on a
//! [`tokio::sync::mpsc::UnboundedReceiver`] and does what it likes with them. Events come from
//! the pull's own task and from its worker threads; sending never blocks, and a caller that
//! drops its receiver simply stops getting them.

use tokio::sync::mpsc::UnboundedSender;

/// One thing that happened in a pull. Blobs are named by their index in the manifest's
/// layers ([`CONFIG_INDEX`] for an artifact's config blob).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// A line of status ("resolving", "image already stored", ...).
    Message(String),
    /// The manifest is known: how many blobs the image has and which are to be fetched.
    Resolved {
        /// `sha256:<hex>` of the image manifest.
        manifest_digest: String,
        /// Blobs (layers, or an artifact's blobs) the manifest lists.
        blobs: usize,
        /// Of those, the ones that will be fetched (the rest are stored already).
        to_fetch: usize,
        /// Their compressed bytes.
        bytes_to_fetch: u64,
    },
    /// A blob is about to be fetched: its digest and size (0: not known in advance).
    BlobStarted {
        /// Index in the manifest.
        index: usize,
        /// `sha256:<hex>` as fetched.
        digest: String,
        /// Compressed size.
        size: u64,
    },
    /// `bytes` more of blob `index` were read.
    BlobProgress {
        /// Index in the manifest.
        index: usize,
        /// Bytes since the previous event for this blob.
        bytes: u64,
    },
    /// Blob `index` is stored and both of its digests matched.
    BlobDone {
        /// Index in the manifest.
        index: usize,
    },
    /// Blob `index` is already stored and will not be fetched.
    BlobSkipped {
        /// Index in the manifest.
        index: usize,
        /// `sha256:<hex>` from the manifest.
        digest: String,
    },
}

/// The index events use for an artifact's config blob.
pub const CONFIG_INDEX: usize = usize::MAX;

/// The pull's end of the event channel (cheap to clone; a no-op without a receiver).
#[derive(Debug, Clone, Default)]
pub(crate) struct Events(Option<UnboundedSender<PullEvent>>);

impl Events {
    pub(crate) fn new(tx: Option<UnboundedSender<PullEvent>>) -> Self {
        Self(tx)
    }

    pub(crate) fn send(&self, event: PullEvent) {
        if let Some(tx) = &self.0 {
            // A receiver that went away wants no more events; the pull goes on.
            let _ = tx.send(event);
        }
    }

    pub(crate) fn message(&self, msg: &str) {
        self.send(PullEvent::Message(msg.to_owned()));
    }
}
