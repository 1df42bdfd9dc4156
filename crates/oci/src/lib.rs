//! OCI ingest for cfs: tar layers split into splitstreams (file contents shared as objects) and
//! named by their diff_id, and images pulled through skopeo and named by their config digest.

pub mod copy;
pub mod decompress;
pub mod error;
pub mod events;
pub mod export;
pub mod ids;
pub mod layer;
pub mod local;
pub mod manifest;
pub mod names;
mod pipeline;
pub mod pull;
pub mod reference;
mod register;
pub mod source;
pub mod store;
pub mod tar;
pub mod tree;

pub use layer::{LayerImport, import_layer, layer_content_id};
