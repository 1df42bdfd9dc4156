//! The content ids under which a pull names what it stores, and the named refs between
//! those streams. One module so that the pull and the store agree without importing each
//! other.

/// `oci-config-sha256:<hex>` (an image: raw config JSON + refs to its layers).
pub fn config_content_id(hex: &str) -> String {
    format!("oci-config-sha256:{hex}")
}

/// `oci-manifest-sha256:<hex>` (a manifest or manifest list, stored inline).
pub fn manifest_content_id(hex: &str) -> String {
    format!("oci-manifest-sha256:{hex}")
}

/// `oci-blob-sha256:<hex>` (artifact blobs).
pub fn blob_content_id(hex: &str) -> String {
    format!("oci-blob-sha256:{hex}")
}

/// The named ref from a config stream to the manifest it was first pulled with.
pub const MANIFEST_REF: &str = "manifest";
/// The named ref from a config stream to the manifest list it was first pulled through.
pub const INDEX_REF: &str = "index";
