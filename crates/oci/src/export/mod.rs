//! Getting stored images back out: `oci:DIR[:TAG]` layouts ([`layout`]) and
//! `oci-archive:FILE[:TAG]` archives ([`archive`]), and pushing through skopeo ([`push`]).
//!
//! What is written: the config byte for byte as stored (so the image ID is the same); each
//! layer re-created from its splitstream straight into its blob while it is hashed, either as
//! the uncompressed tar (`application/vnd.oci.image.layer.v1.tar`, digest = diff_id) or
//! recompressed (gzip, zstd). The stored manifest is kept byte for byte (same manifest digest)
//! when it describes exactly the blobs written; otherwise a new OCI manifest is made. Every
//! layer's bytes are checked against its diff_id as they are written: a damaged store gives an
//! error, never a wrong blob. Artifacts are written as stored (manifest, config, blobs).

pub mod archive;
pub mod layout;
pub mod push;

use std::io::{self, Write};
use std::path::PathBuf;

use cfs_repository::Repository;
use sha2::{Digest as _, Sha256};

use crate::manifest::{self, ManifestError, OCI_CONFIG, OCI_MANIFEST, parse_manifest, sha256_hex};
use crate::store::{self, Kind, StoreError, StoredImage};

/// How layers are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compress {
    /// The stored tars as they are (digest = diff_id).
    #[default]
    None,
    /// gzip (level 6).
    Gzip,
    /// zstd (level 3).
    Zstd,
}

impl std::str::FromStr for Compress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            _ => Err(format!("{s:?}: expected none, gzip or zstd")),
        }
    }
}

impl Compress {
    fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Why an export failed. Each names the file, blob or image concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The destination is not `oci:DIR[:TAG]` / `oci-archive:FILE[:TAG]`.
    #[error("export destination {dest:?}: {why}")]
    BadDestination {
        /// What was given.
        dest: String,
        /// What is wrong.
        why: String,
    },
    /// A file of the destination could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The existing layout is not one we may add to.
    #[error("{}: {why}", path.display())]
    BadLayout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A stored stream did not re-create the bytes its digest names (a damaged store: run
    /// `cfsctl fsck`); nothing is named in the destination.
    #[error(
        "{what}: the stored bytes hash to sha256:{actual}, not sha256:{expected} (run `cfsctl fsck`)"
    )]
    Digest {
        /// The layer, config or blob.
        what: String,
        /// The digest it must have.
        expected: String,
        /// What was written.
        actual: String,
    },
    /// A stored blob re-created with another size than its descriptor says.
    #[error("{what}: {actual} bytes written, {expected} expected")]
    Size {
        /// The blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// Bytes written.
        actual: u64,
    },
    /// The image could not be found or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored manifest does not parse.
    #[error("{name}: {source}")]
    Manifest {
        /// The image.
        name: String,
        /// The problem.
        #[source]
        source: ManifestError,
    },
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
    /// skopeo failed (push).
    #[error("{0}")]
    Skopeo(String),
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportResult {
    /// `sha256:<config hex>` (artifacts: the manifest digest).
    pub image_id: String,
    /// `sha256:<hex>` of the manifest written.
    pub manifest_digest: String,
    /// Whether that is the stored manifest, byte for byte.
    pub manifest_kept: bool,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's size.
    pub manifest_size: u64,
    /// Blobs written (config, layers, manifest).
    pub written: usize,
    /// Blobs already in the layout, not rewritten.
    pub existing: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// One blob: its digest (hex) and size.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) hex: String,
    pub(crate) size: u64,
}

/// Produces a blob's bytes into a writer.
pub(crate) type Fill<'a> = dyn FnMut(&mut dyn Write) -> Result<(), ExportError> + 'a;

/// Where blobs go: a layout directory or an archive being written.
pub(crate) trait Sink {
    /// Whether the blob is already there (then it is not written again).
    fn has(&mut self, blob: &Blob) -> Result<bool, ExportError>;
    /// Writes a blob whose digest and size are known; the sink checks both.
    fn put(&mut self, blob: &Blob, what: &str, fill: &mut Fill<'_>) -> Result<(), ExportError>;
    /// Writes a blob whose digest is known only once written (a recompressed layer); the
    /// flag says whether it was already there (and so was not written again).
    fn put_new(&mut self, what: &str, fill: &mut Fill<'_>) -> Result<(Blob, bool), ExportError>;
}

/// A writer that hashes (sha256) and counts what passes through.
pub(crate) struct Hashing<W> {
    pub(crate) inner: W,
    hasher: Sha256,
    pub(crate) count: u64,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks what a [`Hashing`] writer saw against the blob it should have been.
pub(crate) fn check_written(
    what: &str,
    blob: &Blob,
    hex: String,
    count: u64,
) -> Result<(), ExportError> {
    if count != blob.size {
        return Err(ExportError::Size {
            what: what.to_owned(),
            expected: blob.size,
            actual: count,
        });
    }
    if hex != blob.hex {
        return Err(ExportError::Digest {
            what: what.to_owned(),
            expected: blob.hex.clone(),
            actual: hex,
        });
    }
    Ok(())
}

/// What the caller adds to the destination's index once the blobs are written.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub(crate) descriptor: serde_json::Value,
}

fn io_err(what: &str) -> impl Fn(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: PathBuf::from(what),
        source,
    }
}

/// Writes a stream (uncompressed, checked against `hex` by the sink or here) into `out`.
fn write_stream(repo: &Repository, cid: &str, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut out = out;
    repo.open_stream(cid)?.write_to(repo, &mut out)?;
    Ok(())
}

/// Writes `name`'s blobs into `sink` and returns the index entry to add (the manifest
/// descriptor, with `tag` as its `org.opencontainers.image.ref.name`).
pub(crate) fn write_image(
    repo: &Repository,
    name: &str,
    tag: Option<&str>,
    compress: Compress,
    sink: &mut dyn Sink,
) -> Result<(ExportResult, IndexEntry), ExportError> {
    let cid = store::resolve(repo, name)?;
    let img = store::open(repo, &cid)?;
    let mut stats = Stats::default();
    let (manifest, media_type, kept) = match img.kind {
        Kind::Image => image_blobs(repo, name, &img, compress, sink, &mut stats)?,
        Kind::Artifact => artifact_blobs(repo, name, &img, sink, &mut stats)?,
    };
    let blob = Blob {
        hex: hex::encode(Sha256::digest(&manifest)),
        size: manifest.len() as u64,
    };
    stats.put(sink, &blob, "manifest", &mut |w| {
        w.write_all(&manifest).map_err(io_err("manifest"))
    })?;
    let mut descriptor = serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", blob.hex),
        "size": blob.size,
    });
    if let Some(p) = img.platform.as_deref() {
        let mut parts = p.splitn(3, '/');
        let mut plat = serde_json::Map::new();
        if let (Some(os), Some(arch)) = (parts.next(), parts.next()) {
            plat.insert("architecture".into(), arch.into());
            plat.insert("os".into(), os.into());
            if let Some(v) = parts.next() {
                plat.insert("variant".into(), v.into());
            }
            descriptor["platform"] = plat.into();
        }
    }
    if let Some(t) = tag {
        descriptor["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": t });
    }
    Ok((
        ExportResult {
            image_id: img.id.clone(),
            manifest_digest: format!("sha256:{}", blob.hex),
            manifest_kept: kept,
            media_type,
            manifest_size: blob.size,
            written: stats.written,
            existing: stats.existing,
            bytes: stats.bytes,
        },
        IndexEntry { descriptor },
    ))
}

#[derive(Default)]
struct Stats {
    written: usize,
    existing: usize,
    bytes: u64,
}

impl Stats {
    fn put(
        &mut self,
        sink: &mut dyn Sink,
        blob: &Blob,
        what: &str,
        fill: &mut Fill<'_>,
    ) -> Result<(), ExportError> {
        if sink.has(blob)? {
            self.existing += 1;
            return Ok(());
        }
        sink.put(blob, what, fill)?;
        self.written += 1;
        self.bytes += blob.size;
        Ok(())
    }
}

/// The config and layers of an image; returns the manifest to write, its media type and
/// whether it is the stored one.
fn image_blobs(
    repo: &Repository,
    name: &str,
    img: &StoredImage,
    compress: Compress,
    sink: &mut dyn Sink,
    stats: &mut Stats,
) -> Result<(Vec<u8>, String, bool), ExportError> {
    let config = img.config.as_deref().unwrap_or_default();
    let config_blob = Blob {
        hex: img.id.trim_start_matches("sha256:").to_owned(),
        size: config.len() as u64,
    };
    stats.put(sink, &config_blob, "config", &mut |w| {
        w.write_all(config).map_err(io_err("config"))
    })?;
    let mut layers = Vec::new();
    for (i, layer) in img.layers.iter().enumerate() {
        let what = format!("{name} layer {i} ({})", layer.digest);
        let diff = Blob {
            hex: layer.digest.trim_start_matches("sha256:").to_owned(),
            size: layer.size,
        };
        let blob = match compress {
            Compress::None => {
                stats.put(sink, &diff, &what, &mut |w| {
                    write_stream(repo, &layer.content_id, w)
                })?;
                diff
            }
            Compress::Gzip | Compress::Zstd => {
                let (blob, existed) = sink.put_new(&what, &mut |w| {
                    compressed(repo, &layer.content_id, &diff, &what, compress, w)
                })?;
                if existed {
                    stats.existing += 1;
                } else {
                    stats.written += 1;
                    stats.bytes += blob.size;
                }
                blob
            }
        };
        layers.push((blob, compress.media_type()));
    }
    let bad = |source| ExportError::Manifest {
        name: name.to_owned(),
        source,
    };
    // The stored manifest, if it lists exactly these blobs.
    if let Some(raw) = &img.manifest {
        let m = parse_manifest(raw).map_err(bad)?;
        let same_config = sha256_hex(m.config().digest().as_ref()).map_err(bad)? == config_blob.hex
            && m.config().size() == config_blob.size;
        let same_layers = m.layers().len() == layers.len()
            && m.layers().iter().zip(&layers).all(|(d, (b, _))| {
                sha256_hex(d.digest().as_ref()).is_ok_and(|h| h == b.hex) && d.size() == b.size
            });
        if same_config && same_layers {
            let media_type = m
                .media_type()
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| OCI_MANIFEST.to_owned());
            return Ok((raw.clone(), media_type, true));
        }
    }
    let annotations = match &img.manifest {
        Some(raw) => parse_manifest(raw).map_err(bad)?.annotations().clone(),
        None => None,
    };
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": img.id,
            "size": config_blob.size,
        },
        "layers": layers.iter().map(|(b, mt)| serde_json::json!({
            "mediaType": mt,
            "digest": format!("sha256:{}", b.hex),
            "size": b.size,
        })).collect::<Vec<_>>(),
    });
    if let Some(a) = annotations.filter(|a| !a.is_empty()) {
        m["annotations"] = serde_json::Value::Object(
            a.into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        );
    }
    let raw = serde_json::to_vec(&m).map_err(|e| {
        bad(ManifestError::Parse {
            what: "manifest",
            message: e.to_string(),
        })
    })?;
    Ok((raw, OCI_MANIFEST.to_owned(), false))
}

/// Re-creates a layer through a compressor into `out`, checking the uncompressed bytes
/// against the diff_id.
fn compressed(
    repo: &Repository,
    cid: &str,
    diff: &Blob,
    what: &str,
    compress: Compress,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let ioe = io_err(what);
    let seen = match compress {
        Compress::Gzip => {
            let enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            let mut tee = Hashing::new(enc);
            write_stream(repo, cid, &mut tee)?;
            let seen = (tee.hex(), tee.count);
            tee.inner.finish().map_err(&ioe)?;
            seen
        }
        Compress::Zstd => {
            let enc = zstd::stream::write::Encoder::new(out, 3).map_err(&ioe)?;
            let mut tee = Hashing::new(enc);
            write_stream(repo, cid, &mut tee)?;
            let seen = (tee.hex(), tee.count);
            tee.inner.finish().map_err(&ioe)?;
            seen
        }
        Compress::None => {
            let mut tee = Hashing::new(out);
            write_stream(repo, cid, &mut tee)?;
            (tee.hex(), tee.count)
        }
    };
    check_written(what, diff, seen.0, seen.1)
}

/// An artifact: its config and blobs as stored, and its manifest.
fn artifact_blobs(
    repo: &Repository,
    name: &str,
    img: &StoredImage,
    sink: &mut dyn Sink,
    stats: &mut Stats,
) -> Result<(Vec<u8>, String, bool), ExportError> {
    let bad = |source| ExportError::Manifest {
        name: name.to_owned(),
        source,
    };
    let raw = img.manifest.clone().unwrap_or_default();
    let m = parse_manifest(&raw).map_err(bad)?;
    let config_hex = sha256_hex(m.config().digest().as_ref())
        .map_err(bad)?
        .to_owned();
    let config_cid = crate::ids::blob_content_id(&config_hex);
    let all = std::iter::once((
        config_hex,
        m.config().size(),
        config_cid,
        "config".to_owned(),
    ))
    .chain(img.layers.iter().enumerate().map(|(i, l)| {
        (
            l.digest.trim_start_matches("sha256:").to_owned(),
            l.size,
            l.content_id.clone(),
            format!("blob {i}"),
        )
    }));
    for (hex, size, cid, label) in all {
        let blob = Blob { hex, size };
        let what = format!("{name} {label} (sha256:{})", blob.hex);
        stats.put(sink, &blob, &what, &mut |w| write_stream(repo, &cid, w))?;
    }
    let media_type = m
        .media_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    Ok((raw, media_type, true))
}

/// Exports `name` to `dest` (`oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`).
pub fn export(
    repo: &Repository,
    name: &str,
    dest: &str,
    compress: Compress,
) -> Result<ExportResult, ExportError> {
    let bad = |why: &str| ExportError::BadDestination {
        dest: dest.to_owned(),
        why: why.to_owned(),
    };
    let (kind, details) = dest
        .split_once(':')
        .ok_or_else(|| bad("expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]"))?;
    let (path, tag) =
        crate::local::index::split_reference(details).map_err(|e| ExportError::BadDestination {
            dest: dest.to_owned(),
            why: e.to_string(),
        })?;
    match kind {
        "oci" => layout::export_to_layout(repo, name, &path, tag.as_deref(), compress),
        "oci-archive" => archive::export_to_archive(repo, name, &path, tag.as_deref(), compress),
        _ => Err(bad(
            "only oci:DIR[:TAG] and oci-archive:FILE[:TAG] can be written (docker:// through `cfsctl oci push`)",
        )),
    }
}

/// The `index.json` of a layout holding just `entries`.
pub(crate) fn new_index() -> serde_json::Value {
    serde_json::json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [] })
}

/// Adds `entry` to an index: an entry with the same tag (or, untagged, the same digest and no
/// tag) is replaced, the others are kept.
pub(crate) fn add_to_index(
    index: &mut serde_json::Value,
    entry: &IndexEntry,
) -> Result<(), String> {
    const REF: &str = "org.opencontainers.image.ref.name";
    let tag = entry.descriptor["annotations"][REF]
        .as_str()
        .map(str::to_owned);
    let digest = entry.descriptor["digest"].clone();
    let list = index
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or("index.json has no \"manifests\" array")?;
    list.retain(|d| {
        let t = d["annotations"][REF].as_str();
        match &tag {
            Some(tag) => t != Some(tag.as_str()),
            None => !(t.is_none() && d["digest"] == digest),
        }
    });
    list.push(entry.descriptor.clone());
    Ok(())
}
