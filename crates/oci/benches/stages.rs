//! Throughput of the hot stages of a pull, each on its own (the end-to-end pull is measured
//! by `cargo xtask bench`; fs-verity hashing by `cfs-repository`'s `fsverity` bench):
//!
//! - `inflate/{gzip,zstd}`: decompressing a 32 MiB tar-like buffer through [`Decompressor`]
//!   (flate2 with zlib-rs; libzstd), in uncompressed bytes per second.
//! - `split/{serial,pool}`: splitting a 24 MiB tar of 1500 files (100 B – 64 KiB, a few of
//!   1–3 MiB) into a fresh repository, objects stored on the parsing thread or by an
//!   [`ObjectPool`] of one worker per core. Includes creating every object file.
//! - `object_write/{4KiB,64KiB,1MiB}`: [`Repository::ensure_object`] of new content: fs-verity
//!   digest, `O_TMPFILE`, write, `linkat`.
//!
//! Repositories live under /dev/shm when it exists (tmpfs: the kernel's cost of creating files
//! without a disk). Run with `cargo bench -p cfs-oci --bench stages`.

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cfs_oci::decompress::Decompressor;
use cfs_oci::tar::{split, split_with_pool};
use cfs_repository::{HashAlgorithm, InitVerity, ObjectPool, Repository};
use criterion::{BatchSize, Criterion, Throughput, criterion_main};

/// A deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Data that compresses about like binaries and text in a Debian layer (≈ 2.5:1 with gzip -6):
/// runs of words from a small vocabulary mixed with random bytes.
fn layer_like(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"the ",
        b"usr/lib/",
        b"\0\0\0\0",
        b"libc.so.6 ",
        b"config ",
        b"\x7fELF",
        b"return ",
        b"0x0000 ",
    ];
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        let r = rng.next();
        if r.is_multiple_of(4) {
            v.extend_from_slice(&r.to_le_bytes());
        } else {
            v.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]);
        }
    }
    v.truncate(len);
    v
}

fn scratch_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn new_repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir_in(scratch_root()).expect("tempdir");
    let repo = Repository::init(
        &dir.path().join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init");
    (dir, repo)
}

fn inflate(c: &mut Criterion) {
    const LEN: usize = 32 << 20;
    let data = layer_like(LEN, 7);
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).expect("gzip");
        e.finish().expect("gzip")
    };
    let zs = zstd::encode_all(&data[..], 3).expect("zstd");
    let mut group = c.benchmark_group("inflate");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(LEN as u64));
    for (name, blob) in [("gzip", &gz), ("zstd", &zs)] {
        group.bench_function(name, |b| {
            let mut out = vec![0u8; 256 * 1024];
            b.iter(|| {
                let (mut d, _) = Decompressor::new(&blob[..]).expect("decoder");
                let mut total = 0;
                loop {
                    let n = d.read(&mut out).expect("read");
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                black_box(total)
            });
        });
    }
    group.finish();
}

/// A tar of many small and medium files and a few large ones.
fn sample_tar() -> Vec<u8> {
    let mut rng = Rng(99);
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..1500u64 {
        let r = rng.next();
        let len = if i % 500 == 499 {
            (1 << 20) + (r % (2 << 20)) as usize
        } else {
            100 + (r % (64 << 10)) as usize
        };
        let data = layer_like(len, i + 1);
        let mut h = tar::Header::new_gnu();
        h.set_size(len as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("d{}/file{i}", i % 37), &data[..])
            .expect("append");
    }
    b.into_inner().expect("tar")
}

fn split_bench(c: &mut Criterion) {
    let archive = sample_tar();
    let mut group = c.benchmark_group("split");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(archive.len() as u64));
    group.bench_function("serial", |b| {
        b.iter_batched(
            new_repo,
            |(dir, repo)| {
                black_box(split(&repo, &archive[..]).expect("split"));
                (dir, repo)
            },
            BatchSize::PerIteration,
        );
    });
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    group.bench_function("pool", |b| {
        b.iter_batched(
            new_repo,
            |(dir, repo)| {
                std::thread::scope(|s| {
                    let pool = ObjectPool::new(s, &repo, cores);
                    black_box(split_with_pool(&repo, &archive[..], &pool).expect("split"));
                });
                (dir, repo)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn object_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("object_write");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for (name, len) in [
        ("4KiB", 4usize << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let base = layer_like(len, 5);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // A fresh repository per sample, so every object is new and memory stays
                // bounded; the first 8 bytes make each object distinct.
                let (_dir, repo) = new_repo();
                let mut data = base.clone();
                let start = Instant::now();
                for i in 0..iters {
                    data[..8].copy_from_slice(&i.to_le_bytes());
                    black_box(repo.ensure_object(&data).expect("store"));
                }
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// `criterion_group!` defines a public function, which the workspace's `missing_docs` lint would
/// flag at the crate root; a private module keeps it internal.
mod group {
    criterion::criterion_group!(
        benches,
        super::inflate,
        super::split_bench,
        super::object_write
    );
}
criterion_main!(group::benches);
