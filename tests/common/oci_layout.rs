//! Writes OCI image layouts (`oci:DIR:TAG`) for tests: tar layers built in the test, compressed
//! as gzip (one or several members), zstd (several frames, skippable frames) or not at all;
//! images, manifest lists with several platforms, and artifacts (blobs that are not tars).
//!
//! Include it with `#[path = "common/oci_layout.rs"] mod oci_layout;`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A tar archive (GNU format, fixed mtime) of `files` (path, contents); directories named
/// in paths are created as entries first.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        b.append_data(&mut h, &d, std::io::empty())
            .expect("tar dir");
    }
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).expect("tar file");
    }
    b.into_inner().expect("tar finish")
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How a layer blob is made from its tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    /// The tar itself.
    Plain,
    /// One gzip member.
    Gzip,
    /// Several gzip members (the tar cut in three).
    GzipMulti,
    /// One zstd frame.
    Zstd,
    /// Several zstd frames with skippable frames between and after them.
    ZstdMulti,
}

impl Comp {
    /// The OCI media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Comp::Plain => "application/vnd.oci.image.layer.v1.tar",
            Comp::Gzip | Comp::GzipMulti => "application/vnd.oci.image.layer.v1.tar+gzip",
            Comp::Zstd | Comp::ZstdMulti => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn thirds(data: &[u8]) -> [&[u8]; 3] {
    let a = data.len() / 3;
    [&data[..a], &data[a..2 * a], &data[2 * a..]]
}

/// A layer: its blob, media type, digest and diff_id.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob as stored.
    pub blob: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// `sha256:` of the blob.
    pub digest: String,
    /// `sha256:` of the tar.
    pub diff_id: String,
}

/// Makes a layer from a tar.
pub fn layer(tar: &[u8], comp: Comp) -> Layer {
    let blob = match comp {
        Comp::Plain => tar.to_vec(),
        Comp::Gzip => gzip(tar),
        Comp::GzipMulti => thirds(tar).iter().flat_map(|p| gzip(p)).collect(),
        Comp::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
        Comp::ZstdMulti => {
            // Frames with skippable frames between and after them (as zstd:chunked writes).
            // Not first: containers/image only recognises zstd by the frame magic, and would
            // treat such a blob as uncompressed when copying it.
            let mut v = Vec::new();
            for (i, p) in thirds(tar).iter().enumerate() {
                if i == 1 {
                    v.extend([0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
                }
                v.extend(zstd::encode_all(*p, 3).expect("zstd"));
            }
            v.extend([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, b'c', b'f', b's', b'!']);
            v
        }
    };
    Layer {
        digest: sha256(&blob),
        diff_id: sha256(tar),
        media_type: comp.media_type().to_owned(),
        blob,
    }
}

/// A platform for configs and lists.
#[derive(Debug, Clone)]
pub struct Plat {
    /// OS.
    pub os: &'static str,
    /// GOARCH.
    pub arch: &'static str,
    /// Variant.
    pub variant: Option<&'static str>,
}

/// `linux/amd64`.
pub const AMD64: Plat = Plat {
    os: "linux",
    arch: "amd64",
    variant: None,
};

/// What [`OciLayout::add_image`] wrote.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:` of the manifest.
    pub manifest_digest: String,
    /// Manifest size.
    pub manifest_size: u64,
    /// `sha256:` of the config = the image ID.
    pub config_digest: String,
    /// The config bytes.
    pub config: Vec<u8>,
    /// The layers.
    pub layers: Vec<Layer>,
    /// The platform in the config.
    pub platform: Plat,
}

/// An OCI image layout being written.
pub struct OciLayout {
    /// The directory.
    pub dir: PathBuf,
    index: Vec<serde_json::Value>,
}

impl OciLayout {
    /// Creates an empty layout in `dir`.
    pub fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        let l = Self {
            dir: dir.to_owned(),
            index: Vec::new(),
        };
        l.write_index();
        l
    }

    /// `oci:DIR:TAG`.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Stores a blob; returns its digest and size.
    pub fn add_blob(&self, data: &[u8]) -> (String, u64) {
        let d = sha256(data);
        std::fs::write(self.blob_path(&d), data).expect("write blob");
        (d, data.len() as u64)
    }

    fn write_index(&self) {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.index,
        });
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index.json");
    }

    fn tag(&mut self, tag: Option<&str>, mut desc: serde_json::Value) {
        if let Some(t) = tag {
            desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": t });
            self.index.push(desc);
            self.write_index();
        }
    }

    /// Writes an image (layers, config, manifest); tags it when `tag` is given. `edit_config`
    /// may change the config before it is stored (e.g. a wrong diff_id).
    pub fn add_image_with(
        &mut self,
        tag: Option<&str>,
        layers: &[Layer],
        platform: Plat,
        edit_config: impl FnOnce(&mut serde_json::Value),
    ) -> Image {
        let mut config = serde_json::json!({
            "created": "2025-01-02T03:04:05Z",
            "architecture": platform.arch,
            "os": platform.os,
            "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": [],
        });
        if let Some(v) = platform.variant {
            config["variant"] = v.into();
        }
        edit_config(&mut config);
        let config = serde_json::to_vec(&config).expect("json");
        let (config_digest, config_size) = self.add_blob(&config);
        let mut descs = Vec::new();
        for l in layers {
            let (d, s) = self.add_blob(&l.blob);
            descs.push(serde_json::json!({"mediaType": l.media_type, "digest": d, "size": s}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": descs,
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        let (manifest_digest, manifest_size) = self.add_blob(&manifest);
        let mut desc = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"os": platform.os, "architecture": platform.arch},
        });
        if let Some(v) = platform.variant {
            desc["platform"]["variant"] = v.into();
        }
        self.tag(tag, desc);
        Image {
            manifest_digest,
            manifest_size,
            config_digest,
            config,
            layers: layers.to_vec(),
            platform,
        }
    }

    /// [`OciLayout::add_image_with`] without config changes.
    pub fn add_image(&mut self, tag: Option<&str>, layers: &[Layer], platform: Plat) -> Image {
        self.add_image_with(tag, layers, platform, |_| {})
    }

    /// Writes an OCI index of `images` (each with its platform) and tags it; returns its
    /// digest.
    pub fn add_list(&mut self, tag: &str, images: &[&Image]) -> String {
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                let mut p =
                    serde_json::json!({"os": i.platform.os, "architecture": i.platform.arch});
                if let Some(v) = i.platform.variant {
                    p["variant"] = v.into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": i.manifest_digest,
                    "size": i.manifest_size,
                    "platform": p,
                })
            })
            .collect();
        let list = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .expect("json");
        let (digest, size) = self.add_blob(&list);
        self.tag(
            Some(tag),
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": digest,
                "size": size,
            }),
        );
        digest
    }

    /// Writes an artifact: an empty config and one layer per blob (media type, bytes);
    /// returns the manifest digest.
    pub fn add_artifact(
        &mut self,
        tag: &str,
        artifact_type: &str,
        blobs: &[(&str, &[u8])],
    ) -> String {
        let (config_digest, config_size) = self.add_blob(b"{}");
        let layers: Vec<serde_json::Value> = blobs
            .iter()
            .map(|(mt, data)| {
                let (d, s) = self.add_blob(data);
                serde_json::json!({"mediaType": mt, "digest": d, "size": s})
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
            "annotations": {"org.opencontainers.image.created": "2025-01-02T03:04:05Z"},
        }))
        .expect("json");
        let (digest, size) = self.add_blob(&manifest);
        self.tag(
            Some(tag),
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
            }),
        );
        digest
    }
}
