//! A 4 GiB splitstream is written and read back with flat memory (its own test binary, so the
//! process's peak RSS measures this test alone).

use cfs_repository::{HashAlgorithm, InitVerity, Repository};

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

#[test]
fn four_gib_stream_with_flat_memory() {
    const GIB: u64 = 1 << 30;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repository::init(
        &tmp.path().join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init");
    let before = rss_kib("VmRSS:");

    // 64 distinct 1 MiB objects, referenced over and over: 2 GiB of references.
    let objects: Vec<_> = (0..64u8)
        .map(|i| {
            let data: Vec<u8> = (0..1u32 << 20)
                .map(|j| (j.wrapping_mul(2654435761) >> 13) as u8 ^ i)
                .collect();
            repo.ensure_object(&data).expect("object")
        })
        .collect();
    let mut w = repo.create_stream("application/x-test").expect("create");
    let inline: Vec<u8> = (0..1u32 << 20)
        .map(|j| (j.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let mut i = 0usize;
    while w.size() < 4 * GIB {
        if i.is_multiple_of(2) {
            w.write_inline(&inline).expect("inline");
        } else {
            w.write_reference(objects[i % 64], 1 << 20).expect("ref");
        }
        i += 1;
    }
    let id = w.finish().expect("finish");
    repo.register_stream("big:1", &id).expect("register");

    let reader = repo.open_stream("big:1").expect("open");
    assert_eq!(reader.header().stream_size, 4 * GIB);
    let mut counter = Counter(0);
    let n = reader.write_to(&repo, &mut counter).expect("read");
    assert_eq!(n, 4 * GIB);
    assert_eq!(counter.0, 4 * GIB);

    let peak = rss_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS before {before} KiB, peak {peak} KiB, growth {growth_mib} MiB");
    // The test's own 1 MiB buffers plus zstd's window and spill buffer: far below the stream.
    assert!(
        growth_mib < 64,
        "memory grew by {growth_mib} MiB for a 4 GiB stream"
    );
}

struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
