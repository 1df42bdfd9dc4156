//! Throughput of the userspace fs-verity hasher ([`FsVerityHasher`]).
//!
//! Two groups:
//! - `fsverity/large`: one 1 GiB buffer hashed in a single `update`, for SHA-256 and SHA-512.
//!   This is the figure compared with `openssl speed -evp sha256` (16 KiB column) in
//!   `docs/performance.md`. An iteration takes about a second, so the group uses flat sampling
//!   with the minimum of 10 samples of one iteration each.
//! - `fsverity/small`: whole files of 4 KiB and 64 KiB, hasher creation and finalisation
//!   included, because tar layers hold many small files and per-file overhead counts there.
//! - `fsverity/baseline`: plain SHA-256 from the `sha2` crate on 16 KiB messages, the work
//!   `openssl speed`'s 16 KiB column measures, to tell the hash library's speed from the tree's.
//!
//! Run with `cargo bench -p cfs-repository --bench fsverity` (about a minute); pass a filter
//! such as `-- large/sha256` to run one case.

use std::hint::black_box;
use std::time::Duration;

use cfs_repository::{FsVerityHasher, HashAlgorithm};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_main};

const ALGORITHMS: [HashAlgorithm; 2] = [HashAlgorithm::Sha256, HashAlgorithm::Sha512];

/// `len` bytes of a cheap non-constant pattern (SHA speed does not depend on the content, but a
/// buffer of zeroes could be backed by the shared zero page until written).
fn buffer(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut buf = vec![0u8; len];
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    buf
}

fn large(c: &mut Criterion) {
    const LEN: usize = 1 << 30;
    let data = buffer(LEN);
    let mut group = c.benchmark_group("fsverity/large");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(LEN as u64));
    for alg in ALGORITHMS {
        group.bench_with_input(BenchmarkId::new(alg.name(), "1GiB"), &data, |b, data| {
            b.iter(|| FsVerityHasher::digest(alg, black_box(data)));
        });
    }
    group.finish();
}

fn small(c: &mut Criterion) {
    let mut group = c.benchmark_group("fsverity/small");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (len, label) in [(4096, "4KiB"), (64 * 1024, "64KiB")] {
        let data = buffer(len);
        group.throughput(Throughput::Bytes(len as u64));
        for alg in ALGORITHMS {
            group.bench_with_input(BenchmarkId::new(alg.name(), label), &data, |b, data| {
                b.iter(|| FsVerityHasher::digest(alg, black_box(data)));
            });
        }
    }
    group.finish();
}

/// Plain SHA-256 from the `sha2` crate over 16 KiB messages, the same work as the 16 KiB column of
/// `openssl speed -evp sha256`: separates the hash library's speed from the tree's overhead.
fn baseline(c: &mut Criterion) {
    use sha2::Digest;
    const LEN: usize = 16 * 1024;
    let data = buffer(LEN);
    let mut group = c.benchmark_group("fsverity/baseline");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(LEN as u64));
    group.bench_with_input(
        BenchmarkId::new("sha2-sha256", "16KiB"),
        &data,
        |b, data| {
            b.iter(|| sha2::Sha256::digest(black_box(data)));
        },
    );
    group.finish();
}

/// `criterion_group!` defines a public function, which the workspace's `missing_docs` lint would
/// flag at the crate root; a private module keeps it internal.
mod group {
    criterion::criterion_group!(benches, super::large, super::small, super::baseline);
}
criterion_main!(group::benches);
