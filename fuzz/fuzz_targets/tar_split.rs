//! Fuzz target: the tar splitter, then the stream reader over what it stored. An archive the
//! splitter accepts must re-create its input byte for byte, and the reader (the same parser)
//! must list its entries without error; anything else must be a `TarError`, never a panic.

#![no_main]

use std::sync::OnceLock;

use cfs_oci::tar;
use cfs_repository::{HashAlgorithm, InitVerity, Repository};
use libfuzzer_sys::fuzz_target;

/// One insecure repository for the whole run: under `$CFS_FUZZ_TMP` (set by `cargo xtask
/// fuzz`, which removes it afterwards), else on tmpfs when there is one.
fn repo() -> &'static Repository {
    static REPO: OnceLock<Repository> = OnceLock::new();
    REPO.get_or_init(|| {
        let base = if let Some(dir) = std::env::var_os("CFS_FUZZ_TMP") {
            std::path::PathBuf::from(dir)
        } else if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("cfs-fuzz-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Repository::init(&dir, HashAlgorithm::Sha256, InitVerity::Insecure).expect("init repo")
    })
}

fuzz_target!(|data: &[u8]| {
    let repo = repo();
    let Ok(id) = tar::split(repo, data) else {
        return;
    };
    let stream = repo.open_stream_object(&id).expect("open the new stream");
    let back = stream.read_to_vec(repo).expect("re-create the archive");
    assert!(back == data, "the stream does not re-create the input");
    let stream = repo.open_stream_object(&id).expect("open the new stream");
    let entries = tar::entries(repo, stream).expect("entries of an accepted archive");
    for e in entries {
        e.expect("an entry of an accepted archive");
    }
});
