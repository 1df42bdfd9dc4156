//! The stages of a pull, each measured alone (`cargo xtask bench --stage STAGE FILE...`, run
//! by the benchmark under GNU time on one thread): the sum of their CPU-seconds over the
//! machine's cores is the wall-time bound a pull is held to (issue 11: "3.4 CPU-s ... about
//! 1.7 s of wall time on 2 cores").
//!
//! - `inflate`: decompress each blob to nothing, with the libraries and features cfs-oci uses
//!   (flate2 on zlib-rs with its runtime CPU detection, for gzip; libzstd through the `zstd`
//!   crate) — the format recognised from the first bytes, as cfs-oci does;
//! - `sha256`: SHA-256 (`sha2`) of each file's bytes (compressed blobs: the layer digests;
//!   uncompressed tars: the diff_ids);
//! - `verity`: the fs-verity digest (cfs-repository's hasher, sha256, 4 KiB blocks) of every
//!   regular file's content in each uncompressed tar (the object names);
//!
//! and, outside this process, file creation as GNU tar does it: `tar -xf` of the uncompressed
//! layers on a fresh RAM-backed ext4.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cfs_repository::{FsVerityHasher, HashAlgorithm};
use sha2::{Digest, Sha256};

/// A stage measured in-process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Decompress gzip or zstd blobs.
    Inflate,
    /// SHA-256 of whole files.
    Sha256,
    /// fs-verity digest of every regular file in tars.
    Verity,
}

const CHUNK: usize = 256 << 10;

/// Runs `stage` over `files`, printing the bytes it processed.
pub fn run(stage: Stage, files: &[PathBuf]) -> Result<()> {
    let mut total = 0u64;
    for path in files {
        total += match stage {
            Stage::Inflate => inflate(path),
            Stage::Sha256 => sha256(path),
            Stage::Verity => verity(path),
        }
        .with_context(|| format!("{stage:?} of {}", path.display()))?;
    }
    println!("{stage:?}: {total} bytes");
    Ok(())
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufReader::with_capacity(CHUNK, f))
}

/// Reads `r` to its end in [`CHUNK`]s, handing each to `f`; the byte count.
fn drain(mut r: impl Read, mut f: impl FnMut(&[u8])) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        f(&buf[..got]);
        n += got as u64;
    }
}

/// Decompresses one blob; the uncompressed byte count.
fn inflate(path: &Path) -> Result<u64> {
    let mut input = open(path)?;
    let head = input.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        drain(flate2::bufread::MultiGzDecoder::new(input), |_| {})
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        drain(zstd::stream::read::Decoder::with_buffer(input)?, |_| {})
    } else {
        bail!("neither gzip nor zstd")
    }
}

fn sha256(path: &Path) -> Result<u64> {
    let mut h = Sha256::new();
    let n = drain(open(path)?, |b| h.update(b))?;
    std::hint::black_box(h.finalize());
    Ok(n)
}

/// fs-verity digests of the regular files of one tar; the content bytes hashed.
fn verity(path: &Path) -> Result<u64> {
    let mut archive = tar::Archive::new(open(path)?);
    let mut total = 0;
    for entry in archive.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut h = FsVerityHasher::new(HashAlgorithm::Sha256);
        total += drain(entry, |b| h.update(b))?;
        std::hint::black_box(h.finalize());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Each stage reads every byte it is meant to: inflate yields the uncompressed length for
    /// gzip (two members, as `gzip -dc` reads them) and zstd, sha256 the file's length, verity
    /// the regular files' content only.
    #[test]
    fn stages_count_what_they_measure() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-stages.{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = Vec::new();
        for half in data.chunks(150_000) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(half)?;
            gz.extend(e.finish()?);
        }
        std::fs::write(dir.join("a.gz"), &gz)?;
        std::fs::write(dir.join("a.zst"), zstd::encode_all(data.as_slice(), 3)?)?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "f", data.as_slice())?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tar.append_data(&mut h, "d/", std::io::empty())?;
        let tar = tar.into_inner()?;
        std::fs::write(dir.join("a.tar"), &tar)?;
        let n = data.len() as u64;
        assert_eq!(inflate(&dir.join("a.gz"))?, n);
        assert_eq!(inflate(&dir.join("a.zst"))?, n);
        assert!(inflate(&dir.join("a.tar")).is_err());
        assert_eq!(sha256(&dir.join("a.tar"))?, tar.len() as u64);
        assert_eq!(verity(&dir.join("a.tar"))?, n);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
