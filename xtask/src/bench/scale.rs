//! The scaling layers of `cargo xtask bench` (issue 11 §4: "a layer of 300,000 small files
//! (files/s) and one of a 3 GiB file (MB/s)"), each an uncompressed single-layer OCI layout
//! built once into the benchmark's cache and reused while its recipe is unchanged:
//!
//! Both live below `usr/` (composefs-rs's pull fails on an image without `/usr`: "Directory
//! entry "usr" does not exist").
//!
//! - `many-small`: [`SMALL_FILES`] regular files of 1–2048 pseudo-random bytes (sizes and
//!   contents from a seeded PRNG), 300 to a directory, so nearly all become objects of their
//!   own (only files up to the splitstream's inline limit stay inline);
//! - `one-large`: one file of [`LARGE_BYTES`] pseudo-random (incompressible) bytes.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::fixtures::{
    MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, Xoshiro256, remove_tree, sha256_file,
    write_json_blob,
};

/// Bump when what a scaling layer holds changes.
const RECIPE: &str = "scale-2";
/// Files of the `many-small` layer.
pub const SMALL_FILES: usize = 300_000;
/// Files per directory in `many-small`.
const PER_DIR: usize = 300;
/// Size of the file of `one-large`: 3 GiB.
pub const LARGE_BYTES: u64 = 3 << 30;
const SEED: u64 = 0x5ca1_ab1e_cf5f_0011;

/// An image of the scaling layouts.
pub struct ScaleImage {
    /// `oci:DIR:TAG`.
    pub reference: String,
    /// The uncompressed layer's size.
    pub bytes: u64,
}

/// Ensures both scaling layouts under `cache`; (many-small, one-large).
pub fn ensure(cache: &Path) -> Result<(ScaleImage, ScaleImage)> {
    let small = ensure_one(&cache.join("many-small"), "many-small", write_small)?;
    let large = ensure_one(&cache.join("one-large"), "one-large", write_large)?;
    Ok((small, large))
}

/// The layout in `dir` (tag `tag`), built by `write` unless a complete one of this recipe is
/// there.
fn ensure_one(
    dir: &Path,
    tag: &str,
    write: fn(&mut tar::Builder<BufWriter<File>>) -> Result<()>,
) -> Result<ScaleImage> {
    let marker = dir.join("complete");
    let reference = format!("oci:{}:{tag}", dir.join("oci").display());
    if let Ok(text) = fs::read_to_string(&marker)
        && let Some(bytes) = text
            .strip_prefix(RECIPE)
            .and_then(|r| r.trim().parse().ok())
    {
        return Ok(ScaleImage { reference, bytes });
    }
    println!("building the {tag} scaling layer in {}", dir.display());
    remove_tree(dir)?;
    let blobs = dir.join("oci/blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
    let tmp = dir.join("layer.tar");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    write(&mut builder)?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let (hex, bytes) = sha256_file(&tmp)?;
    fs::rename(&tmp, blobs.join(&hex)).context("cannot move the layer into the layout")?;
    let digest = format!("sha256:{hex}");
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest]},
    });
    let config = write_json_blob(&blobs, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(MEDIA_CONFIG),
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest, "size": bytes}],
    });
    let manifest = write_json_blob(&blobs, &manifest)?;
    let mut entry = manifest.descriptor(MEDIA_MANIFEST);
    entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry] });
    fs::write(dir.join("oci/index.json"), serde_json::to_vec(&index)?)
        .context("cannot write index.json")?;
    fs::write(
        dir.join("oci/oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .context("cannot write oci-layout")?;
    fs::write(&marker, format!("{RECIPE} {bytes}\n")).context("cannot mark the layout")?;
    Ok(ScaleImage { reference, bytes })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn write_small(tar: &mut tar::Builder<BufWriter<File>>) -> Result<()> {
    let mut rng = Xoshiro256::new(SEED);
    let mut data = Vec::with_capacity(2048);
    for dir in ["usr/", "usr/share/", "usr/share/small/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    for i in 0..SMALL_FILES {
        let dir = format!("usr/share/small/d{:04}/", i / PER_DIR);
        if i % PER_DIR == 0 {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, &dir, std::io::empty())?;
        }
        let len = usize::try_from(rng.next_u64() % 2048 + 1)?;
        data.clear();
        while data.len() < len {
            data.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        data.truncate(len);
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, format!("{dir}f{i:06}"), data.as_slice())?;
    }
    tar.finish()?;
    Ok(())
}

/// A reader of `left` bytes from a PRNG.
struct RandomBytes {
    rng: Xoshiro256,
    left: u64,
}

impl Read for RandomBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX))
            / 8
            * 8;
        let n = if n == 0 {
            buf.len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX))
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            let w = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn write_large(tar: &mut tar::Builder<BufWriter<File>>) -> Result<()> {
    for dir in ["usr/", "usr/share/", "usr/share/large/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o644, LARGE_BYTES);
    let data = RandomBytes {
        rng: Xoshiro256::new(SEED),
        left: LARGE_BYTES,
    };
    tar.append_data(&mut h, "usr/share/large/random.bin", data)?;
    tar.finish()?;
    Ok(())
}

/// Where the scaling layouts are cached, below the benchmark's cache.
pub fn cache_dir(bench_cache: &Path) -> PathBuf {
    bench_cache.join("scale")
}
