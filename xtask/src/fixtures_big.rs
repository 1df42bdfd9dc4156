//! The big fixture image of the pull benchmark (issue 11 §4), shaped like a real 4-layer
//! Debian image of 237 MB gzip, 736 MB of tar and 28.5k files: `cargo xtask fixtures --big`,
//! or built by `cargo xtask bench` on demand into its own cache.
//!
//! It is made only from what `cargo xtask fixtures` already caches, so it needs no network:
//!
//! 1. `base`: the debootstrap minbase tar, verbatim (≈ 5.2k files, 121 MB);
//! 2. `packages`: the fixtures' packages layer (curl, python3.11-minimal), verbatim;
//! 3. and 4. `copies-a`, `copies-b`: the regular files of layers 1 and 2 again, under
//!    `opt/big/copy-N/<original path>`, copy N with every byte XORed with a constant of its
//!    own, until the image holds [`FILES`] regular files. XOR with a constant is a bijection on
//!    bytes, so each copy compresses exactly as the real files do (deflate's matches and code
//!    lengths are the same) while having content, sha256 and fs-verity digests of its own: no
//!    copy dedups against another, and the size mix is the real one.
//!
//! Every layer is written with fixed metadata by the `tar` crate (GNU long names) or taken
//! verbatim, then compressed with `gzip -n -6` and `zstd -3 -T1`, so every build yields the same
//! digests. Three tags in one OCI layout: `big-gzip`, `big-zstd`, `big-plain`. A summary with
//! every layer's digests, sizes and file count lands beside it in `big.json`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::fixtures::{
    Blob, CREATED, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, remove_tree, sha256_file,
    write_json_blob,
};

/// Bump whenever the recipe changes what the image holds: a cached build by another recipe is
/// rebuilt.
const RECIPE: u64 = 1;

/// Regular files in the whole image (the issue's image: 28.5k).
const FILES: usize = 28_500;

/// A compressor: program and arguments (stdin to stdout).
type Compressor = (&'static str, &'static [&'static str]);

/// The tags of the layout, with their layer media type and compressor.
const VARIANTS: &[(&str, &str, Option<Compressor>)] = &[
    (
        "big-gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Some(("gzip", &["-n", "-6", "-c"])),
    ),
    (
        "big-zstd",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        Some(("zstd", &["-3", "-T1", "-q", "-c"])),
    ),
    ("big-plain", "application/vnd.oci.image.layer.v1.tar", None),
];

/// One regular file of the pool the copies are made from.
struct PoolFile {
    path: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

/// An uncompressed layer tar of the image.
struct LayerTar {
    name: &'static str,
    tar: PathBuf,
    diff_id: String,
    size: u64,
    files: usize,
}

/// Builds the big image into `out` (its `oci/` layout and `big.json`) from the fixtures in
/// `fixtures` (their cache and fixtures.json), unless a complete build of this recipe from the
/// same inputs is there. Returns the summary (`big.json`).
pub fn ensure(fixtures: &Path, out: &Path) -> Result<Value> {
    let start = Instant::now();
    let (base, packages) = inputs(fixtures)?;
    // Blobs of the fixture layout are named by their sha256.
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let inputs_id = json!({ "base": name(&base), "packages": name(&packages) });
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let _lock = crate::fixtures::lock(out)?;
    let summary_path = out.join("big.json");
    match cached(&summary_path, &inputs_id) {
        Ok(summary) => return Ok(summary),
        Err(why) => println!("building the big fixture in {}: {why:#}", out.display()),
    }
    let build = out.join("build");
    remove_tree(&build)?;
    fs::create_dir_all(&build).with_context(|| format!("cannot create {}", build.display()))?;

    let mut pool = Vec::new();
    let base_files = read_pool(&base, &mut pool)?;
    let package_files = read_pool(&packages, &mut pool)?;
    ensure!(!pool.is_empty(), "no regular files in {}", base.display());
    let copies = FILES.saturating_sub(base_files + package_files);
    let first = copies / 2;
    let mut layers = vec![
        layer_from(&base, "base", base_files)?,
        layer_from(&packages, "packages", package_files)?,
    ];
    layers.push(write_copies(&pool, 0..first, &build.join("copies-a.tar"))?);
    layers.push(write_copies(
        &pool,
        first..copies,
        &build.join("copies-b.tar"),
    )?);
    drop(pool);
    for l in &layers {
        println!(
            "big layer {:<9} {:>10} bytes {:>6} files  diff_id {}",
            l.name, l.size, l.files, l.diff_id
        );
    }
    let summary = write_layout(out, &layers, &inputs_id)?;
    remove_tree(&build)?;
    let text = serde_json::to_vec_pretty(&summary).context("cannot serialise big.json")?;
    fs::write(&summary_path, text)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!(
        "built the big fixture in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// The base tar and the packages layer tar of the fixtures in `fixtures`.
fn inputs(fixtures: &Path) -> Result<(PathBuf, PathBuf)> {
    let listing = fixtures.join("fixtures.json");
    let summary: Value = serde_json::from_slice(
        &fs::read(&listing)
            .with_context(|| format!("no {} (run `cargo xtask fixtures`)", listing.display()))?,
    )
    .with_context(|| format!("cannot parse {}", listing.display()))?;
    let layout = PathBuf::from(
        summary["layout"]
            .as_str()
            .context("fixtures.json: layout")?,
    );
    let plain = summary["images"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["tag"] == "debian-plain"))
        .context("fixtures.json: no debian-plain image")?;
    let layer = |name: &str| -> Result<PathBuf> {
        let l = plain["layers"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .with_context(|| format!("fixtures.json: debian-plain has no {name} layer"))?;
        let digest = l["digest"].as_str().context("layer digest")?;
        let hex = digest.strip_prefix("sha256:").context("sha256 digest")?;
        Ok(layout.join("blobs/sha256").join(hex))
    };
    Ok((layer("base")?, layer("packages")?))
}

/// The summary at `path`, if it is from this recipe and these inputs and every blob it lists is
/// present with its size.
fn cached(path: &Path, inputs_id: &Value) -> Result<Value> {
    let summary: Value = serde_json::from_slice(
        &fs::read(path).with_context(|| format!("no usable {}", path.display()))?,
    )
    .with_context(|| format!("cannot parse {}", path.display()))?;
    ensure!(
        summary["recipe"].as_u64() == Some(RECIPE),
        "{} is from another recipe",
        path.display()
    );
    ensure!(&summary["inputs"] == inputs_id, "the fixtures changed");
    let layout = PathBuf::from(summary["layout"].as_str().context("big.json: layout")?);
    for blob in summary["blobs"].as_array().context("big.json: blobs")? {
        let digest = blob["digest"].as_str().context("blob digest")?;
        let hex = digest.strip_prefix("sha256:").context("sha256 digest")?;
        let p = layout.join("blobs/sha256").join(hex);
        let len = fs::metadata(&p).map(|m| m.len()).ok();
        ensure!(
            len == blob["size"].as_u64(),
            "{} missing or of the wrong size",
            p.display()
        );
    }
    Ok(summary)
}

/// Appends the regular files of the tar at `tar` to `pool`; returns how many there were.
fn read_pool(tar: &Path, pool: &mut Vec<PoolFile>) -> Result<usize> {
    let file = File::open(tar).with_context(|| format!("cannot open {}", tar.display()))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut n = 0;
    for entry in archive
        .entries()
        .with_context(|| format!("cannot read {}", tar.display()))?
    {
        let mut entry = entry.with_context(|| format!("cannot read {}", tar.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path_bytes().into_owned();
        let h = entry.header();
        let (mode, uid, gid, mtime) = (h.mode()?, h.uid()?, h.gid()?, h.mtime()?);
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {}", String::from_utf8_lossy(&path)))?;
        pool.push(PoolFile {
            path,
            mode,
            uid,
            gid,
            mtime,
            data,
        });
        n += 1;
    }
    Ok(n)
}

/// A layer that is an existing tar, verbatim.
fn layer_from(tar: &Path, name: &'static str, files: usize) -> Result<LayerTar> {
    let (diff_id, size) = sha256_file(tar)?;
    Ok(LayerTar {
        name,
        tar: tar.to_path_buf(),
        diff_id,
        size,
        files,
    })
}

/// The XOR constant of copy `copy`: odd, so never 0, and distinct for the first 128 copies.
fn xor_key(copy: usize) -> u8 {
    let c = u8::try_from(copy % 128).unwrap_or(0);
    (c * 2 + 1) ^ 0x80
}

/// Writes a layer holding the files numbered `range` of the endless sequence "pool, copy 0;
/// pool, copy 1; ..." (file `j` is pool file `j % len` of copy `j / len`), with their parent
/// directories.
fn write_copies(pool: &[PoolFile], range: std::ops::Range<usize>, out: &Path) -> Result<LayerTar> {
    let name = if range.start == 0 {
        "copies-a"
    } else {
        "copies-b"
    };
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    let mut data = Vec::new();
    let files = range.len();
    for j in range {
        let copy = j / pool.len();
        let f = &pool[j % pool.len()];
        let mut path = format!("opt/big/copy-{copy}/").into_bytes();
        path.extend_from_slice(f.path.strip_prefix(b"./").unwrap_or(&f.path));
        // Parent directories, outermost first, each once.
        for (i, _) in path.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            let dir = &path[..=i];
            if dirs.insert(dir.to_vec()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(f.mtime);
                h.set_size(0);
                tar.append_data(&mut h, OsStr::from_bytes(dir), std::io::empty())
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
        }
        let key = xor_key(copy);
        data.clear();
        data.extend(f.data.iter().map(|b| b ^ key));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(f.mode);
        h.set_uid(f.uid);
        h.set_gid(f.gid);
        h.set_mtime(f.mtime);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, OsStr::from_bytes(&path), data.as_slice())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let mut w = tar
        .into_inner()
        .with_context(|| format!("cannot finish {}", out.display()))?;
    w.flush()
        .with_context(|| format!("cannot write {}", out.display()))?;
    drop(w);
    let (diff_id, size) = sha256_file(out)?;
    Ok(LayerTar {
        name,
        tar: out.to_path_buf(),
        diff_id,
        size,
        files,
    })
}

/// Compresses every layer for every variant (all at once, as separate processes), writes the
/// layout into `out/oci`; returns the summary.
fn write_layout(out: &Path, layers: &[LayerTar], inputs_id: &Value) -> Result<Value> {
    let tmp = out.join("oci.tmp");
    remove_tree(&tmp)?;
    let blobs_dir = tmp.join("blobs/sha256");
    fs::create_dir_all(&blobs_dir)
        .with_context(|| format!("cannot create {}", blobs_dir.display()))?;
    fs::write(tmp.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .context("cannot write oci-layout")?;
    let t = Instant::now();
    let mut running = Vec::new();
    let mut blobs: BTreeMap<(usize, usize), Blob> = BTreeMap::new();
    for (v, (_, _, compressor)) in VARIANTS.iter().enumerate() {
        for (l, layer) in layers.iter().enumerate() {
            let Some((program, args)) = compressor else {
                let path = blobs_dir.join(&layer.diff_id);
                fs::copy(&layer.tar, &path)
                    .with_context(|| format!("cannot copy {}", layer.tar.display()))?;
                let digest = format!("sha256:{}", layer.diff_id);
                blobs.insert(
                    (v, l),
                    Blob {
                        digest,
                        size: layer.size,
                    },
                );
                continue;
            };
            let tmp_blob = blobs_dir.join(format!(".tmp-{v}-{l}"));
            let input = File::open(&layer.tar)
                .with_context(|| format!("cannot open {}", layer.tar.display()))?;
            let output = File::create(&tmp_blob)
                .with_context(|| format!("cannot create {}", tmp_blob.display()))?;
            let child = Command::new(program)
                .args(*args)
                .stdin(input)
                .stdout(output)
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start {program}"))?;
            running.push((v, l, tmp_blob, child, *program));
        }
    }
    for (v, l, tmp_blob, mut child, program) in running {
        let status = child
            .wait()
            .with_context(|| format!("waiting for {program}"))?;
        ensure!(status.success(), "{program} of layer {l} failed: {status}");
        let (hex, size) = sha256_file(&tmp_blob)?;
        fs::rename(&tmp_blob, blobs_dir.join(&hex))
            .with_context(|| format!("cannot rename {}", tmp_blob.display()))?;
        blobs.insert(
            (v, l),
            Blob {
                digest: format!("sha256:{hex}"),
                size,
            },
        );
    }
    println!(
        "compressed the big layers in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let layout = out.join("oci");
    let mut blob_list: BTreeMap<String, u64> = BTreeMap::new();
    let mut index = Vec::new();
    let mut images = Vec::new();
    for (v, (tag, media_type, _)) in VARIANTS.iter().enumerate() {
        let mut descriptors = Vec::new();
        let mut summaries = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let blob = blobs.get(&(v, l)).context("a layer blob is missing")?;
            blob_list.insert(blob.digest.clone(), blob.size);
            descriptors.push(blob.descriptor(media_type));
            summaries.push(json!({
                "name": layer.name,
                "mediaType": media_type,
                "digest": blob.digest,
                "size": blob.size,
                "diff_id": format!("sha256:{}", layer.diff_id),
                "uncompressed_size": layer.size,
                "files": layer.files,
            }));
        }
        let config = json!({
            "created": CREATED,
            "author": "cfs cargo xtask fixtures --big",
            "architecture": "amd64",
            "os": "linux",
            "config": { "Cmd": ["/bin/bash"], "Labels": { "org.cfs.fixture": tag } },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.diff_id)).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|l| json!({
                "created": CREATED,
                "created_by": format!("cargo xtask fixtures --big: layer {}", l.name),
            })).collect::<Vec<_>>(),
        });
        let config_blob = write_json_blob(&blobs_dir, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_blob.descriptor(MEDIA_CONFIG),
            "layers": descriptors,
        });
        let manifest_blob = write_json_blob(&blobs_dir, &manifest)?;
        blob_list.insert(config_blob.digest.clone(), config_blob.size);
        blob_list.insert(manifest_blob.digest.clone(), manifest_blob.size);
        let mut entry = manifest_blob.descriptor(MEDIA_MANIFEST);
        entry["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        index.push(entry);
        images.push(json!({
            "tag": tag,
            "reference": format!("oci:{}:{tag}", layout.display()),
            "manifest": manifest_blob.descriptor(MEDIA_MANIFEST),
            "layers": summaries,
        }));
    }
    let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index });
    fs::write(
        tmp.join("index.json"),
        serde_json::to_vec(&index).context("cannot serialise index.json")?,
    )
    .context("cannot write index.json")?;
    remove_tree(&layout)?;
    fs::rename(&tmp, &layout).with_context(|| format!("cannot rename {}", tmp.display()))?;
    Ok(json!({
        "recipe": RECIPE,
        "inputs": inputs_id,
        "layout": layout,
        "files": layers.iter().map(|l| l.files).sum::<usize>(),
        "tar_bytes": layers.iter().map(|l| l.size).sum::<u64>(),
        "images": images,
        "blobs": blob_list
            .iter()
            .map(|(digest, size)| json!({ "digest": digest, "size": size }))
            .collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_keys_are_distinct_and_nonzero() {
        let keys: HashSet<u8> = (0..128).map(xor_key).collect();
        assert_eq!(keys.len(), 128);
        assert!(!keys.contains(&0));
    }
}
