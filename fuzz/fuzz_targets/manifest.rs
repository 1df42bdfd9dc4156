//! Fuzz target: OCI manifest, index and config parsing, and media-type handling. Untrusted JSON
//! from a registry must give a value or an error, never a panic.

#![no_main]

use cfs_oci::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest::TopLevel::List(index)) = manifest::parse_top_level(data) {
        let _ = manifest::list_platforms(&index);
        let _ = manifest::choose_platform(&index, &manifest::Platform::host());
    }
    if let Ok(m) = manifest::parse_manifest(data) {
        let _ = manifest::is_container_image(&m);
        let _ = manifest::sha256_hex(m.config().digest().as_ref());
        for l in m.layers() {
            let _ = manifest::layer_compression(l.media_type().as_ref());
            let _ = manifest::sha256_hex(l.digest().as_ref());
        }
    }
    let _ = manifest::parse_config(data);
});
