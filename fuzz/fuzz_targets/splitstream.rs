//! Fuzz target: the splitstream reader on arbitrary bytes (header, object and stream tables,
//! zstd body, chunk records). Must return an error or chunks — never panic, never allocate
//! without bound (libFuzzer's `-malloc_limit_mb` catches that), never loop.

#![no_main]

use cfs_repository::{Chunk, HashAlgorithm, SplitStreamReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for alg in [HashAlgorithm::Sha256, HashAlgorithm::Sha512] {
        let Ok(mut reader) = SplitStreamReader::new(data, alg, "fuzz") else {
            continue;
        };
        let _ = reader.header().stream_ref("manifest");
        let mut buf = Vec::new();
        // Every chunk consumes at least one body byte, and the body is at most what zstd can
        // expand the input to; bound the loop anyway so a bug shows as a failure, not a hang.
        for _ in 0..1_000_000 {
            match reader.next_chunk(&mut buf) {
                Ok(Some(Chunk::Inline(b))) => assert!(!b.is_empty()),
                Ok(Some(Chunk::External { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
