//! Manifests, manifest lists (OCI indexes) and configs as the pull sees them: which kind a raw
//! manifest is, which platform a list offers, what each layer's media type means, and whether
//! an image is a container image (tar layers, an image config) or an artifact (opaque blobs).
//!
//! Parsing uses `oci-spec`; Docker schema 2 manifests and lists have the same structure and
//! parse as the OCI types with `Other` media types.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::reference::is_sha256_hex;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A manifest-level problem.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape.
    #[error("cannot parse the {what}: {message}")]
    Parse {
        /// "manifest", "manifest list", "config".
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A schema 1 manifest, or another unknown type.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    /// A digest that is not `sha256:<hex>`.
    #[error("unsupported digest {0:?} (only sha256 is supported)")]
    UnsupportedDigest(String),
    /// The wanted platform is not in the list.
    #[error("no image for platform {wanted} in the manifest list; it has: {}", available.join(", "))]
    NoPlatform {
        /// The platform asked for.
        wanted: Platform,
        /// What the list offers.
        available: Vec<String>,
    },
    /// A platform string that cannot be parsed.
    #[error("invalid platform {0:?} (expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8)")]
    BadPlatform(String),
}

/// A platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub arch: String,
    /// e.g. `v8`, `v7`.
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
                variant: Some((*v).to_owned()),
            }),
            _ => Err(ManifestError::BadPlatform(s.to_owned())),
        }
    }
}

impl Platform {
    /// The platform this program runs on, in GOARCH spelling.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.to_owned(),
            arch: arch.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    fn of(d: &Descriptor) -> Option<Self> {
        let p = d.platform().as_ref()?;
        Some(Self {
            os: p.os().to_string(),
            arch: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        })
    }

    /// Whether an entry for `other` can serve this platform: same OS and architecture, and the
    /// same variant when one is asked for (`arm64` without a variant means `v8`).
    pub fn accepts(&self, other: &Platform) -> bool {
        if self.os != other.os || self.arch != other.arch {
            return false;
        }
        let norm = |v: &Option<String>| match (self.arch.as_str(), v.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match &self.variant {
            None => true,
            Some(_) => norm(&self.variant) == norm(&other.variant),
        }
    }
}

/// A digest checked to be `sha256:<64 hex>`.
pub fn sha256_hex(digest: &str) -> Result<&str, ManifestError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_sha256_hex(h) => Ok(h),
        _ => Err(ManifestError::UnsupportedDigest(digest.to_owned())),
    }
}

/// A raw top-level manifest, classified.
pub enum TopLevel {
    /// A manifest list or OCI index.
    List(Box<ImageIndex>),
    /// A single image (or artifact) manifest.
    Manifest(Box<ImageManifest>),
}

fn media_type_of(raw: &[u8]) -> Result<(Option<String>, bool, bool), ManifestError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(raw).map_err(|e| ManifestError::Parse {
        what: "manifest",
        message: e.to_string(),
    })?;
    if p.schema_version == Some(1) {
        return Err(ManifestError::UnsupportedManifest(
            "application/vnd.docker.distribution.manifest.v1+json (schema 1)".into(),
        ));
    }
    Ok((p.media_type, p.manifests.is_some(), p.layers.is_some()))
}

/// Classifies and parses a raw manifest.
pub fn parse_top_level(raw: &[u8]) -> Result<TopLevel, ManifestError> {
    let (mt, has_manifests, has_layers) = media_type_of(raw)?;
    let is_list = match mt.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(ManifestError::UnsupportedManifest(other.to_owned())),
        None => has_manifests && !has_layers,
    };
    if is_list {
        let index: ImageIndex = serde_json::from_slice(raw).map_err(|e| ManifestError::Parse {
            what: "manifest list",
            message: e.to_string(),
        })?;
        Ok(TopLevel::List(Box::new(index)))
    } else {
        Ok(TopLevel::Manifest(Box::new(parse_manifest(raw)?)))
    }
}

/// Parses a single (non-list) manifest.
pub fn parse_manifest(raw: &[u8]) -> Result<ImageManifest, ManifestError> {
    let (mt, _, _) = media_type_of(raw)?;
    match mt.as_deref() {
        None | Some(OCI_MANIFEST | DOCKER_MANIFEST) => {}
        Some(other) => return Err(ManifestError::UnsupportedManifest(other.to_owned())),
    }
    let m: ImageManifest = serde_json::from_slice(raw).map_err(|e| ManifestError::Parse {
        what: "manifest",
        message: e.to_string(),
    })?;
    sha256_hex(m.config().digest().as_ref())?;
    for l in m.layers() {
        sha256_hex(l.digest().as_ref())?;
    }
    Ok(m)
}

/// The platforms a list offers, as `os/arch[/variant]` strings (entries without a platform
/// show as `unknown`).
pub fn list_platforms(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .map(|d| Platform::of(d).map_or_else(|| "unknown".to_owned(), |p| p.to_string()))
        .collect()
}

/// Picks the first manifest of `index` whose platform `wanted` accepts.
pub fn choose_platform<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<(&'a Descriptor, Platform), ManifestError> {
    for d in index.manifests() {
        // Skip nested indexes and attestation manifests (platform unknown/unknown).
        let mt = d.media_type().to_string();
        if mt == OCI_INDEX || mt == DOCKER_LIST {
            continue;
        }
        if let Some(p) = Platform::of(d)
            && wanted.accepts(&p)
        {
            sha256_hex(d.digest().as_ref())?;
            return Ok((d, p));
        }
    }
    Err(ManifestError::NoPlatform {
        wanted: wanted.clone(),
        available: list_platforms(index),
    })
}

/// How a layer blob is compressed, according to its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames, skippable frames allowed).
    Zstd,
}

/// The compression a tar layer media type declares, or `None` for a media type that is not
/// a tar layer we can read.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// Whether the manifest describes a container image (an image config) rather than an
/// artifact (any other config media type, or an `artifactType`).
pub fn is_container_image(m: &ImageManifest) -> bool {
    let cmt = m.config().media_type().to_string();
    m.artifact_type().is_none() && (cmt == OCI_CONFIG || cmt == DOCKER_CONFIG)
}

/// The parts of an image config the pull needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfigSummary {
    /// `created`, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// `architecture`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// `os`.
    #[serde(default)]
    pub os: Option<String>,
    /// `variant`.
    #[serde(default)]
    pub variant: Option<String>,
    /// `rootfs`.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RootFs {
    /// `diff_ids`: the sha256 of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

/// Parses the parts of an image config the pull needs, checking the diff_ids.
pub fn parse_config(raw: &[u8]) -> Result<ConfigSummary, ManifestError> {
    let c: ConfigSummary = serde_json::from_slice(raw).map_err(|e| ManifestError::Parse {
        what: "config",
        message: e.to_string(),
    })?;
    for d in &c.rootfs.diff_ids {
        sha256_hex(d)?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{:064x}", i),
                    "size": 100,
                    "platform": p,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests
        }))
        .expect("json")
    }

    #[test]
    fn platforms() {
        let raw = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v7")),
        ]);
        let TopLevel::List(idx) = parse_top_level(&raw).expect("parse") else {
            panic!("not a list");
        };
        let want = |s: &str| s.parse::<Platform>().expect("platform");
        let (d, _) = choose_platform(&idx, &want("linux/arm64")).expect("arm64");
        assert_eq!(d.digest().to_string(), format!("sha256:{:064x}", 1));
        let (d, _) = choose_platform(&idx, &want("linux/arm64/v8")).expect("arm64/v8");
        assert_eq!(d.digest().to_string(), format!("sha256:{:064x}", 1));
        assert!(choose_platform(&idx, &want("linux/arm/v6")).is_err());
        let err = choose_platform(&idx, &want("linux/s390x"))
            .expect_err("no s390x")
            .to_string();
        assert!(
            err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
            "{err}"
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v2/x".parse::<Platform>().is_err());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+xz"),
            None
        );
        assert!(parse_top_level(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
    }
}
