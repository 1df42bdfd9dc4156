//! Pulled images as stored: finding one by name or digest, reading its config, manifest and
//! layers back, and listing them. An image is its config stream (`oci-config-sha256:<hex>`);
//! an artifact is its manifest stream (`oci-manifest-sha256:<hex>`). Names are stream refs.

use std::io::Write;

use cfs_repository::Repository;

use crate::ids::{MANIFEST_REF, blob_content_id, config_content_id, manifest_content_id};
use crate::layer::layer_content_id;
use crate::manifest::{self, ManifestError, parse_config, parse_manifest, sha256_hex};
use crate::reference::is_sha256_hex;

/// Why a stored image could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No name, ID or digest matches.
    #[error(
        "no OCI image {0:?} (see `cfsctl oci images`; composefs images made by create-image \
         are listed by `cfsctl images` and removed by `cfsctl rmi`)"
    )]
    NotFound(String),
    /// A short ID matches several images.
    #[error("{name:?} matches several images: {}", matches.join(", "))]
    Ambiguous {
        /// What was asked.
        name: String,
        /// The candidates.
        matches: Vec<String>,
    },
    /// A layer index out of range.
    #[error("{name} has {count} layers (0 to {}); there is no layer {index}", count.saturating_sub(1))]
    NoLayer {
        /// The image.
        name: String,
        /// Asked for.
        index: usize,
        /// Layers it has.
        count: usize,
    },
    /// The stored config or manifest does not parse.
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
}

/// Image or artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A container image: a config and tar layers.
    Image,
    /// An artifact: blobs stored whole.
    Artifact,
}

/// One layer (or artifact blob) of a stored image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredLayer {
    /// The layer's diff_id (images) or the blob's digest (artifacts), `sha256:<hex>`.
    pub digest: String,
    /// The stream holding it.
    pub content_id: String,
    /// The (uncompressed) size in bytes.
    pub size: u64,
    /// Media type from the manifest, when the manifest is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The compressed blob digest from the manifest, when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_digest: Option<String>,
}

/// A stored image or artifact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredImage {
    /// Image or artifact.
    pub kind: Kind,
    /// The stream names point at.
    pub content_id: String,
    /// The OCI image ID, `sha256:<config hex>` (images), or `sha256:<manifest hex>`
    /// (artifacts); JSON key `image_id` (never to be confused with a composefs ID).
    #[serde(rename = "image_id")]
    pub id: String,
    /// `sha256:<manifest hex>`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The config's `created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `os/arch[/variant]` from the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Layers in order.
    pub layers: Vec<StoredLayer>,
    /// Sum of the layer sizes.
    pub size: u64,
    /// The raw config (images).
    #[serde(skip)]
    pub config: Option<Vec<u8>>,
    /// The raw manifest, when stored.
    #[serde(skip)]
    pub manifest: Option<Vec<u8>>,
}

fn read(repo: &Repository, cid: &str) -> Result<Vec<u8>, StoreError> {
    Ok(repo.open_stream(cid)?.read_to_vec(repo)?)
}

fn stream_size(repo: &Repository, cid: &str) -> Result<u64, StoreError> {
    Ok(repo.open_stream(cid)?.header().stream_size)
}

fn exists(repo: &Repository, cid: &str) -> Result<bool, StoreError> {
    Ok(repo.stream_object(cid)?.is_some())
}

/// Whether a content id is an image (config) or artifact (manifest) root.
fn root_kind(cid: &str) -> Option<Kind> {
    if cid.starts_with("oci-config-sha256:") {
        Some(Kind::Image)
    } else if cid.starts_with("oci-manifest-sha256:") {
        Some(Kind::Artifact)
    } else {
        None
    }
}

/// The image a manifest or list digest leads to, if stored.
fn from_manifest_digest(repo: &Repository, hex: &str) -> Result<Option<String>, StoreError> {
    let cid = manifest_content_id(hex);
    if !exists(repo, &cid)? {
        return Ok(None);
    }
    let raw = read(repo, &cid)?;
    let bad = |source| StoreError::Manifest {
        name: format!("sha256:{hex}"),
        source,
    };
    match manifest::parse_top_level(&raw).map_err(bad)? {
        manifest::TopLevel::Manifest(m) => {
            if !manifest::is_container_image(&m) {
                return Ok(Some(cid));
            }
            let c = config_content_id(sha256_hex(m.config().digest().as_ref()).map_err(bad)?);
            Ok(exists(repo, &c)?.then_some(c))
        }
        manifest::TopLevel::List(index) => {
            // The host's platform if it was pulled, else the first pulled entry.
            let host = manifest::choose_platform(&index, &manifest::Platform::host())
                .ok()
                .map(|(d, _)| d.digest().to_string());
            let entries = host
                .iter()
                .cloned()
                .chain(index.manifests().iter().map(|d| d.digest().to_string()));
            for d in entries {
                if let Ok(h) = sha256_hex(&d)
                    && let Some(c) = from_manifest_digest(repo, h)?
                {
                    return Ok(Some(c));
                }
            }
            Ok(None)
        }
    }
}

/// Finds an image: by name (stream ref), by ID or digest (`sha256:<hex>` or `<hex>` of the
/// config, manifest or manifest list), or by a unique ID prefix of at least 4 hex digits.
/// Returns the root content id.
pub fn resolve(repo: &Repository, name: &str) -> Result<String, StoreError> {
    if cfs_repository::names::check_ref_name(name).is_ok()
        && let Some(cid) = repo.stream_ref(name)?
        && root_kind(&cid).is_some()
    {
        return Ok(cid);
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if is_sha256_hex(hex) {
        let c = config_content_id(hex);
        if exists(repo, &c)? {
            return Ok(c);
        }
        if let Some(c) = from_manifest_digest(repo, hex)? {
            return Ok(c);
        }
    } else if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches: Vec<String> = repo
            .list_stream_refs()?
            .into_iter()
            .map(|r| r.target)
            .chain(unnamed(repo)?)
            .filter(|t| {
                root_kind(t).is_some() && t.rsplit(':').next().is_some_and(|h| h.starts_with(hex))
            })
            .collect();
        matches.sort();
        matches.dedup();
        match matches.len() {
            0 => {}
            1 => return Ok(matches.remove(0)),
            _ => {
                return Err(StoreError::Ambiguous {
                    name: name.to_owned(),
                    matches,
                });
            }
        }
    }
    Err(StoreError::NotFound(name.to_owned()))
}

/// Reads a stored image or artifact by its root content id.
pub fn open(repo: &Repository, cid: &str) -> Result<StoredImage, StoreError> {
    let hex = cid.rsplit(':').next().unwrap_or_default().to_owned();
    let bad = |source| StoreError::Manifest {
        name: cid.to_owned(),
        source,
    };
    match root_kind(cid) {
        Some(Kind::Image) => {
            let reader = repo.open_stream(cid)?;
            let manifest_cid = reader
                .header()
                .stream_ref(MANIFEST_REF)
                .map(|r| r.content_id.clone());
            let config = reader.read_to_vec(repo)?;
            let summary = parse_config(&config).map_err(bad)?;
            let manifest = match &manifest_cid {
                Some(m) if exists(repo, m)? => Some(read(repo, m)?),
                _ => None,
            };
            let parsed = match &manifest {
                Some(raw) => Some(parse_manifest(raw).map_err(bad)?),
                None => None,
            };
            let mut layers = Vec::new();
            for (i, diff_id) in summary.rootfs.diff_ids.iter().enumerate() {
                let lcid = layer_content_id(sha256_hex(diff_id).map_err(bad)?);
                let desc = parsed.as_ref().and_then(|m| m.layers().get(i));
                layers.push(StoredLayer {
                    digest: diff_id.clone(),
                    size: stream_size(repo, &lcid)?,
                    content_id: lcid,
                    media_type: desc.map(|d| d.media_type().to_string()),
                    blob_digest: desc.map(|d| d.digest().to_string()),
                });
            }
            let platform = match (&summary.os, &summary.architecture) {
                (Some(os), Some(arch)) => Some(match &summary.variant {
                    Some(v) => format!("{os}/{arch}/{v}"),
                    None => format!("{os}/{arch}"),
                }),
                _ => None,
            };
            Ok(StoredImage {
                kind: Kind::Image,
                content_id: cid.to_owned(),
                id: format!("sha256:{hex}"),
                manifest_digest: manifest_cid
                    .as_deref()
                    .and_then(|m| m.rsplit(':').next())
                    .map(|h| format!("sha256:{h}")),
                created: summary.created,
                platform,
                size: layers.iter().map(|l| l.size).sum(),
                layers,
                config: Some(config),
                manifest,
            })
        }
        Some(Kind::Artifact) => {
            let raw = read(repo, cid)?;
            let m = parse_manifest(&raw).map_err(bad)?;
            let mut layers = Vec::new();
            for d in m.layers() {
                let bcid = blob_content_id(sha256_hex(d.digest().as_ref()).map_err(bad)?);
                layers.push(StoredLayer {
                    digest: d.digest().to_string(),
                    size: stream_size(repo, &bcid)?,
                    content_id: bcid,
                    media_type: Some(d.media_type().to_string()),
                    blob_digest: None,
                });
            }
            let created = m
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.created").cloned());
            let config_cid =
                blob_content_id(sha256_hex(m.config().digest().as_ref()).map_err(bad)?);
            let config = if exists(repo, &config_cid)? {
                Some(read(repo, &config_cid)?)
            } else {
                None
            };
            Ok(StoredImage {
                kind: Kind::Artifact,
                content_id: cid.to_owned(),
                id: format!("sha256:{hex}"),
                manifest_digest: Some(format!("sha256:{hex}")),
                created,
                platform: None,
                size: layers.iter().map(|l| l.size).sum(),
                layers,
                config,
                manifest: Some(raw),
            })
        }
        None => Err(StoreError::NotFound(cid.to_owned())),
    }
}

/// The image ref that keeps the composefs image built from the image named `name` (by
/// `cfsctl oci create-image`/`oci mount`): `oci/NAME`.
pub fn image_ref_name(name: &str) -> String {
    format!("oci/{name}")
}

/// Points the image name `name` at `target` (an `oci-config-…`/`oci-manifest-…` content id).
/// If the name pointed at another image before, the composefs image ref made under it
/// ([`image_ref_name`]) described that other image and is removed (the next `oci mount` or
/// `oci create-image` makes it anew), so it neither goes stale nor keeps the old image alive.
/// Returns what the name pointed at before, when that was another image (the name moved).
pub fn set_name(
    repo: &Repository,
    name: &str,
    target: &str,
) -> cfs_repository::Result<Option<String>> {
    // The stale ref goes first: a crash in between then leaves no ref describing an image
    // the name no longer points at.
    let before = repo.stream_ref(name)?.filter(|b| b != target);
    if before.is_some() {
        repo.remove_image_ref(&image_ref_name(name))?;
    }
    repo.set_stream_ref(name, target)?;
    Ok(before)
}

/// The image ID (`sha256:<hex>`) of a root content id (`oci-config-sha256:<hex>`, or an
/// artifact's `oci-manifest-sha256:<hex>`).
pub fn image_id_of(cid: &str) -> String {
    match cid
        .split_once('-')
        .and_then(|(_, rest)| rest.split_once('-'))
    {
        Some((_, id)) => id.to_owned(),
        None => cid.to_owned(),
    }
}

/// The images stored with no name (a pull or tag moved their name away): their config
/// streams' content ids, sorted. They stay until `oci rm ID` or gc.
pub fn unnamed(repo: &Repository) -> Result<Vec<String>, StoreError> {
    let named: std::collections::HashSet<String> = repo
        .list_stream_refs()?
        .into_iter()
        .map(|r| r.target)
        .collect();
    let mut out: Vec<String> = repo
        .list_streams()?
        .into_iter()
        .map(|(cid, _)| cid)
        .filter(|cid| root_kind(cid) == Some(Kind::Image) && !named.contains(cid))
        .collect();
    out.sort();
    Ok(out)
}

/// Every name that points at an image or artifact, with its root content id, sorted by name.
pub fn names(repo: &Repository) -> Result<Vec<(String, String)>, StoreError> {
    Ok(repo
        .list_stream_refs()?
        .into_iter()
        .filter(|r| root_kind(&r.target).is_some())
        .map(|r| (r.name, r.target))
        .collect())
}

/// Writes layer `index` (the uncompressed tar, or the artifact blob) to `out`.
pub fn write_layer(
    repo: &Repository,
    image: &StoredImage,
    name: &str,
    index: usize,
    out: &mut impl Write,
) -> Result<u64, StoreError> {
    let layer = image.layers.get(index).ok_or_else(|| StoreError::NoLayer {
        name: name.to_owned(),
        index,
        count: image.layers.len(),
    })?;
    Ok(repo.open_stream(&layer.content_id)?.write_to(repo, out)?)
}
