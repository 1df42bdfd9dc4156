//! The pull: an image from any transport into the repository, every digest checked by cfs.
//!
//! [`pull`] is an `async fn` that runs in the caller's tokio runtime; its CPU-bound stages run
//! on threads of its own (see [`crate::pipeline`]), progress goes to the caller as
//! [`PullEvent`]s, and dropping its future cancels it, leaving the repository valid.
//!
//! The steps (docs/oci.md has the full story):
//! 1. The [`Source`](crate::source::Source) delivers the top-level manifest exactly as stored
//!    (a manifest list stays a list, so we pick the platform ourselves and keep the list's
//!    bytes). A digest-pinned reference must match it.
//! 2. If the config stream (or, for an artifact, the manifest stream) is already stored with
//!    every object of every layer, only the manifest/list streams and the name are written
//!    ([`crate::register::finish_if_stored`]): no blob is read.
//! 3. Otherwise the source opens the image; the config is fetched whole and hashed.
//! 4. Every missing layer goes through the pipeline ([`crate::pipeline`]): blob digest,
//!    decompression, diff_id, tar split, objects stored by a pool of workers.
//! 5. The config stream (raw config JSON, named refs to every layer stream, the manifest and
//!    the list) is written; every stream of the pull is registered after one `syncfs` (layer
//!    streams only if both of their digests matched), and the name is pointed at it
//!    ([`crate::register`]).
//!
//! A pull from inside a tokio runtime, with its events (this example runs as a doc-test; the
//! hidden lines write a one-layer OCI layout to pull):
//!
//! ```
//! # use std::io::Write as _;
//! # use sha2::Digest as _;
//! # fn blob(dir: &std::path::Path, data: &[u8]) -> (String, usize) {
//! #     let hex = hex::encode(sha2::Sha256::digest(data));
//! #     std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
//! #     (format!("sha256:{hex}"), data.len())
//! # }
//! # let tmp = tempfile::tempdir()?;
//! # let layout = tmp.path().join("layout");
//! # std::fs::create_dir_all(layout.join("blobs/sha256"))?;
//! # std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
//! # let mut t = tar::Builder::new(Vec::new());
//! # let mut h = tar::Header::new_ustar();
//! # h.set_size(6); h.set_mode(0o644); h.set_cksum();
//! # t.append_data(&mut h, "etc/motd", &b"hello\n"[..])?;
//! # let tar = t.into_inner()?;
//! # let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
//! # let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! # gz.write_all(&tar)?;
//! # let (layer, layer_size) = blob(&layout, &gz.finish()?);
//! # let config = serde_json::json!({"architecture": "amd64", "os": "linux",
//! #     "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
//! # let (config, config_size) = blob(&layout, config.to_string().as_bytes());
//! # let manifest = serde_json::json!({"schemaVersion": 2,
//! #     "mediaType": "application/vnd.oci.image.manifest.v1+json",
//! #     "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
//! #                "digest": config, "size": config_size},
//! #     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
//! #                 "digest": layer, "size": layer_size}]});
//! # let (manifest, manifest_size) = blob(&layout, manifest.to_string().as_bytes());
//! # let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
//! #     "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest,
//! #     "size": manifest_size,
//! #     "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
//! # std::fs::write(layout.join("index.json"), index.to_string())?;
//! use std::sync::Arc;
//! use cfs_oci::pull::{PullEvent, PullOptions, pull};
//! use cfs_repository::{HashAlgorithm, InitVerity, Repository};
//!
//! # let repo_path = tmp.path().join("repo");
//! let repo = Repository::init(&repo_path, HashAlgorithm::Sha256, InitVerity::Insecure)?;
//! let repo = Arc::new(repo);
//! let image = format!("oci:{}:v1", layout.display());
//!
//! let opts = PullOptions::default();
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let result = rt.block_on(async {
//!     let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//!     // Progress arrives as events; here they are counted while the pull runs.
//!     let events = async move {
//!         let mut layers_done = 0;
//!         while let Some(event) = rx.recv().await {
//!             if let PullEvent::BlobDone { .. } = event {
//!                 layers_done += 1;
//!             }
//!         }
//!         layers_done
//!     };
//!     let pulled = pull(Arc::clone(&repo), &image, Some("demo"), &opts, Some(tx));
//!     let (result, layers_done) = tokio::join!(pulled, events);
//!     assert_eq!(layers_done, 1);
//!     result
//! })?;
//! assert_eq!(result.name, "demo");
//! assert_eq!(result.image_id, config);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cfs_repository::{ObjectId, Repository};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc::UnboundedSender;

pub use crate::error::PullError;
pub use crate::events::PullEvent;
use crate::events::{CONFIG_INDEX, Events};
pub use crate::ids::{
    INDEX_REF, MANIFEST_REF, blob_content_id, config_content_id, manifest_content_id,
};
use crate::layer::layer_content_id;
use crate::manifest::{
    self, Platform, TopLevel, is_container_image, layer_compression, parse_config, parse_manifest,
    parse_top_level, sha256_hex,
};
use crate::pipeline::{CancelOnDrop, Ctx, Job, run_jobs};
use crate::reference::ImageRef;
use crate::register::{
    Config, Instance, ListInfo, Reg, Registered, finish_if_stored, register_pull,
};
use crate::source::{self, BlobRequest, OpenedSource, SourceOptions};

/// Largest config we accept (configs are JSON; big ones are a few hundred KiB).
const MAX_CONFIG: u64 = 64 * 1024 * 1024;

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Skip TLS verification (`--tls-verify=false`; needed for plain-http registries).
    pub insecure_skip_tls_verification: bool,
    /// Registry credentials file; `None`: skopeo's default (`REGISTRY_AUTH_FILE`, then the
    /// containers auth.json locations).
    pub authfile: Option<PathBuf>,
    /// `USER`, `PASSWORD` for the reference's registry (overrides `authfile`).
    pub creds: Option<(String, String)>,
    /// Directory of certificates for the registry (`*.crt` CAs, `*.cert`/`*.key` client
    /// pairs), as skopeo's `--cert-dir`; `None`: the system's and /etc/containers/certs.d.
    pub cert_dir: Option<PathBuf>,
    /// The platform to pick from a manifest list; `None`: the host's.
    pub platform: Option<Platform>,
    /// Layers processed at once; `None`: the number of cores.
    pub jobs: Option<usize>,
    /// Largest uncompressed size a layer may have; `None`: [`DEFAULT_MAX_LAYER_SIZE`]. A layer
    /// that decompresses to more (a decompression bomb) fails the pull before filling the disk.
    pub max_layer_size: Option<u64>,
    /// Refuse the pull, before anything is named, unless the image ID (the config digest;
    /// artifacts: the manifest digest) is this `sha256:<hex>`.
    pub image_id: Option<String>,
    /// When to contact the source at all (podman's `--pull`).
    pub policy: PullPolicy,
}

/// When a pull contacts the source, as podman's `--pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull (blobs already stored are not fetched again).
    #[default]
    Always,
    /// Use the image stored under the name if it is readable (and is `image_id`, if given);
    /// the source is not contacted at all.
    Missing,
    /// Read the source's manifest; pull only if its digest differs from the stored image's
    /// manifest (or manifest list) digest.
    Newer,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "missing" => Ok(Self::Missing),
            "newer" => Ok(Self::Newer),
            _ => Err(format!("{s:?}: expected always, missing or newer")),
        }
    }
}

/// The default bound on a layer's uncompressed size: 64 GiB, far more than any real layer.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// The name set (stream ref).
    pub name: String,
    /// What the name points to: `oci-config-sha256:<hex>` (image) or
    /// `oci-manifest-sha256:<hex>` (artifact).
    pub content_id: String,
    /// The image ID as podman prints it: `sha256:<config hex>`; for an artifact the manifest
    /// digest.
    pub image_id: String,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the manifest list, when pulled through one.
    pub list_digest: Option<String>,
    /// The platform picked from the list.
    pub platform: Option<Platform>,
    /// Whether this is an artifact (blobs stored whole) rather than a container image.
    pub artifact: bool,
    /// Blobs fetched (layers, or artifact blobs; not the config).
    pub fetched: usize,
    /// Compressed bytes fetched.
    pub fetched_bytes: u64,
    /// Blobs found already stored.
    pub reused: usize,
    /// The image ID the name pointed at before, when this pull moved the name to another
    /// image (that image stays stored, unnamed, until gc or `oci rm`).
    pub moved_from: Option<String>,
    /// The policy (`missing`, `newer`) found the stored image good: nothing was pulled.
    pub up_to_date: bool,
}

fn sha256_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Pulls `image` (skopeo syntax: `docker://…`, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
/// `dir:DIR`, `containers-storage:…`, …) into `repo` and names it `name` (default: derived
/// from the reference, see [`ImageRef::default_name`]). `oci:`, `oci-archive:` and `dir:` are
/// read by cfs itself; the other transports through skopeo.
///
/// Runs in the caller's tokio runtime (any flavour); hashing, decompression and file writes
/// run on threads of the pull's own. `events`, if given, receives [`PullEvent`]s. Dropping the
/// returned future cancels the pull: its threads stop soon after, and nothing unverified is
/// ever named or registered.
pub async fn pull(
    repo: Arc<Repository>,
    image: &str,
    name: Option<&str>,
    opts: &PullOptions,
    events: Option<UnboundedSender<PullEvent>>,
) -> Result<PullResult, PullError> {
    let events = Events::new(events);
    let iref = ImageRef::parse(image)?;
    let image = iref.to_string();
    let name = match name {
        Some(n) => n.to_owned(),
        None => iref.default_name()?,
    };
    // Every stream ref is a path under streams/refs/: the name may not collide with any.
    let existing = repo
        .list_stream_refs()
        .map_err(|source| PullError::Repository {
            image: image.clone(),
            source,
        })?;
    crate::names::check_new_name(&name, existing.iter().map(|r| r.name.as_str()))?;
    let r = Reg {
        repo: &repo,
        image: &image,
        events: &events,
    };
    cfs_repository::names::check_ref_name(&name).map_err(r.repo_err())?;
    let source_err = |source| PullError::Source {
        image: image.clone(),
        source,
    };
    let source_opts = SourceOptions {
        insecure_skip_tls_verification: opts.insecure_skip_tls_verification,
        authfile: opts.authfile.clone(),
        creds: opts.creds.clone(),
        cert_dir: opts.cert_dir.clone(),
    };
    let wanted_id = match &opts.image_id {
        Some(id) => Some(normalize_id(id).map_err(r.manifest_err())?),
        None => None,
    };
    if opts.policy == PullPolicy::Missing
        && let Some(done) = stored_result(&repo, &name, None, wanted_id.as_deref())
    {
        return Ok(done);
    }
    let source = source::open(&iref, &source_opts).map_err(source_err)?;

    events.message(&format!("resolving {image}"));
    let top = source.top_manifest().await.map_err(source_err)?;
    let top_hex = sha256_of(&top);
    if let Some(pin) = iref.pinned_digest() {
        let want = pin.strip_prefix("sha256:").unwrap_or(pin);
        if want != top_hex {
            return Err(PullError::ManifestDigest {
                image,
                what: "manifest",
                expected: want.to_owned(),
                actual: top_hex,
            });
        }
    }
    if opts.policy == PullPolicy::Newer
        && let Some(done) = stored_result(&repo, &name, Some(&top_hex), wanted_id.as_deref())
    {
        return Ok(done);
    }
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
    let (list, instance_hex, instance_raw, platform) =
        match parse_top_level(&top).map_err(r.manifest_err())? {
            TopLevel::List(index) => {
                let (desc, platform) =
                    manifest::choose_platform(&index, &wanted).map_err(r.manifest_err())?;
                let hex = sha256_hex(desc.digest().as_ref())
                    .map_err(r.manifest_err())?
                    .to_owned();
                let media_type = index
                    .media_type()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| manifest::OCI_INDEX.to_owned());
                let list = ListInfo {
                    hex: top_hex,
                    raw: top,
                    media_type,
                };
                (Some(list), hex, None, Some(platform))
            }
            TopLevel::Manifest(_) => (None, top_hex, Some(top), None),
        };

    // Warm path: everything already stored?
    let stored_manifest = match &instance_raw {
        Some(raw) => Some(raw.clone()),
        None => match repo
            .stream_object(&manifest_content_id(&instance_hex))
            .map_err(r.repo_err())?
        {
            Some(id) => Some(read_stream(&repo, &id).map_err(r.repo_err())?),
            None => None,
        },
    };
    if let Some(raw) = stored_manifest {
        let m = parse_manifest(&raw).map_err(r.manifest_err())?;
        check_image_id(&image, &m, &instance_hex, wanted_id.as_deref())?;
        let instance = Instance {
            hex: instance_hex.clone(),
            raw,
        };
        if let Some(done) = finish_if_stored(&r, &name, &m, &instance, list.as_ref())? {
            let base = result_base(&name, &instance, list.as_ref(), platform.clone());
            return Ok(PullResult {
                reused: m.layers().len(),
                ..finished(base, done)
            });
        }
    }

    // Cold path.
    events.message("opening the image");
    let opened = source.open(platform.as_ref()).await.map_err(source_err)?;
    let raw = match instance_raw {
        Some(raw) => raw,
        None => {
            let raw = opened.manifest(&instance_hex).await.map_err(source_err)?;
            let actual = sha256_of(&raw);
            if actual != instance_hex {
                return Err(PullError::ManifestDigest {
                    image,
                    what: "manifest chosen from the list",
                    expected: instance_hex,
                    actual,
                });
            }
            raw
        }
    };
    let instance = Instance {
        hex: instance_hex,
        raw,
    };
    let m = parse_manifest(&instance.raw).map_err(r.manifest_err())?;
    check_image_id(&image, &m, &instance.hex, wanted_id.as_deref())?;
    let base = result_base(&name, &instance, list.as_ref(), platform.clone());
    // The manifest may lead to an image whose config is already stored.
    if let Some(done) = finish_if_stored(&r, &name, &m, &instance, list.as_ref())? {
        let _ = opened.close().await;
        return Ok(PullResult {
            reused: m.layers().len(),
            ..finished(base, done)
        });
    }

    let plan = plan(&r, opened.as_ref(), &m).await?;
    let fetched = plan.jobs.len();
    events.send(PullEvent::Resolved {
        manifest_digest: base.manifest_digest.clone(),
        blobs: m.layers().len(),
        to_fetch: plan.jobs.iter().filter(|j| j.index != CONFIG_INDEX).count(),
        bytes_to_fetch: plan.jobs.iter().map(|j| j.req.size).sum(),
    });

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let parallel = opts.jobs.unwrap_or(cores).max(1);
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancel));
    let ctx = Arc::new(Ctx {
        repo: Arc::clone(&repo),
        image: image.clone(),
        events: events.clone(),
        max_layer_size: opts.max_layer_size.unwrap_or(DEFAULT_MAX_LAYER_SIZE),
        cancel,
    });
    let done = match run_jobs(&ctx, opened.as_ref(), plan.jobs, parallel, cores).await {
        Ok(done) => done,
        Err((e, verified)) => {
            // Layers that passed both checks are correct: keep them for the next pull (one
            // syncfs, then their names).
            drop(opened);
            r.register(&pairs(&verified))?;
            return Err(e);
        }
    };
    if let Err(e) = opened.close().await {
        r.register(&pairs(&done))?;
        return Err(source_err(e));
    }
    let fetched_bytes = done.iter().map(|d| d.bytes).sum();
    let reg = pairs(&done);
    let registered = register_pull(
        &r,
        &name,
        &m,
        &instance,
        list.as_ref(),
        plan.config.as_ref(),
        reg,
    )?;
    Ok(PullResult {
        fetched,
        fetched_bytes,
        reused: plan.reused,
        ..finished(base, registered)
    })
}

fn pairs(done: &[crate::pipeline::Verified]) -> Vec<(String, ObjectId)> {
    done.iter()
        .map(|d| (d.content_id.clone(), d.stream))
        .collect()
}

fn result_base(
    name: &str,
    instance: &Instance,
    list: Option<&ListInfo>,
    platform: Option<Platform>,
) -> PullResult {
    PullResult {
        name: name.to_owned(),
        content_id: String::new(),
        image_id: String::new(),
        manifest_digest: format!("sha256:{}", instance.hex),
        list_digest: list.map(|l| format!("sha256:{}", l.hex)),
        platform,
        artifact: false,
        fetched: 0,
        fetched_bytes: 0,
        reused: 0,
        moved_from: None,
        up_to_date: false,
    }
}

/// `sha256:<hex>` from `sha256:<hex>` or `<hex>` (an `--image-id`).
fn normalize_id(id: &str) -> Result<String, manifest::ManifestError> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    Ok(format!("sha256:{}", sha256_hex(&format!("sha256:{hex}"))?))
}

/// Refuses an image whose ID is not `wanted` (checked before anything is fetched or named).
fn check_image_id(
    image: &str,
    m: &oci_spec::image::ImageManifest,
    instance_hex: &str,
    wanted: Option<&str>,
) -> Result<(), PullError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let actual = if is_container_image(m) {
        m.config().digest().to_string()
    } else {
        format!("sha256:{instance_hex}")
    };
    if actual != wanted {
        return Err(PullError::ImageId {
            image: image.to_owned(),
            expected: wanted.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// The image stored under `name`, as a pull result, if it can be read, is `wanted` (if
/// given) and, with `top_hex`, was pulled with that manifest or manifest list. An image that
/// cannot be read counts as absent (the pull then heals it).
fn stored_result(
    repo: &Repository,
    name: &str,
    top_hex: Option<&str>,
    wanted: Option<&str>,
) -> Option<PullResult> {
    let cid = repo.stream_ref(name).ok()??;
    let img = crate::store::open(repo, &cid).ok()?;
    if wanted.is_some_and(|w| w != img.id) {
        return None;
    }
    let list_hex = repo
        .open_stream(&cid)
        .ok()?
        .header()
        .stream_ref(INDEX_REF)
        .and_then(|r| r.content_id.rsplit(':').next().map(str::to_owned));
    let manifest_hex = img
        .manifest_digest
        .as_deref()
        .map(|d| d.trim_start_matches("sha256:").to_owned());
    if let Some(top) = top_hex
        && manifest_hex.as_deref() != Some(top)
        && list_hex.as_deref() != Some(top)
    {
        return None;
    }
    Some(PullResult {
        name: name.to_owned(),
        content_id: cid,
        image_id: img.id,
        manifest_digest: img.manifest_digest.unwrap_or_default(),
        list_digest: list_hex.map(|h| format!("sha256:{h}")),
        platform: None,
        artifact: img.kind == crate::store::Kind::Artifact,
        fetched: 0,
        fetched_bytes: 0,
        reused: img.layers.len(),
        moved_from: None,
        up_to_date: true,
    })
}

fn finished(base: PullResult, r: Registered) -> PullResult {
    PullResult {
        content_id: r.content_id,
        image_id: r.image_id,
        artifact: r.artifact,
        moved_from: r.moved_from,
        ..base
    }
}

fn read_stream(repo: &Repository, id: &ObjectId) -> cfs_repository::Result<Vec<u8>> {
    repo.open_stream_object(id)?.read_to_vec(repo)
}

/// What the cold path fetches.
struct Plan {
    jobs: Vec<Job>,
    /// The verified config (`None`: an artifact).
    config: Option<Config>,
    /// Blobs already stored.
    reused: usize,
}

/// Fetches and checks the config and decides which blobs to fetch.
async fn plan(
    r: &Reg<'_>,
    opened: &dyn OpenedSource,
    m: &oci_spec::image::ImageManifest,
) -> Result<Plan, PullError> {
    let repo = r.repo;
    let image = r.image.to_owned();
    let config_desc = m.config();
    let config_hex = sha256_hex(config_desc.digest().as_ref())
        .map_err(r.manifest_err())?
        .to_owned();
    let mut jobs = Vec::new();
    let mut reused = 0usize;
    let mut seen = HashSet::new();
    if !is_container_image(m) {
        // The config is one more blob; index CONFIG_INDEX marks it.
        let all = std::iter::once((CONFIG_INDEX, config_desc)).chain(m.layers().iter().enumerate());
        for (index, d) in all {
            let hex = sha256_hex(d.digest().as_ref())
                .map_err(r.manifest_err())?
                .to_owned();
            if !seen.insert(hex.clone()) {
                continue;
            }
            if repo
                .complete_stream_object(&blob_content_id(&hex))
                .map_err(r.repo_err())?
                .is_some()
            {
                reused += 1;
                if index != CONFIG_INDEX {
                    r.events.send(PullEvent::BlobSkipped {
                        index,
                        digest: d.digest().to_string(),
                    });
                }
                continue;
            }
            jobs.push(Job {
                index,
                label: if index == CONFIG_INDEX {
                    "config".to_owned()
                } else {
                    format!("layer {index}")
                },
                req: BlobRequest {
                    digest: d.digest().to_string(),
                    hex,
                    size: d.size(),
                    exact_size: true,
                },
                diff_id: None,
            });
        }
        return Ok(Plan {
            jobs,
            config: None,
            reused,
        });
    }
    let config_err = |message: String| PullError::Fetch {
        image: image.clone(),
        layer: "config".into(),
        digest: config_hex.clone(),
        message,
    };
    let size = config_desc.size();
    if size > MAX_CONFIG {
        return Err(config_err(format!("config of {size} bytes is too large")));
    }
    r.events.message("fetching config");
    let req = BlobRequest {
        digest: config_desc.digest().to_string(),
        hex: config_hex.clone(),
        size,
        exact_size: true,
    };
    let blob = opened
        .small_blob(&req)
        .await
        .map_err(|source| PullError::Source {
            image: image.clone(),
            source,
        })?;
    let got = u64::try_from(blob.data.len()).unwrap_or(u64::MAX);
    let actual = sha256_of(&blob.data);
    // Our own check first: it names both digests.
    if got == size && actual != config_hex {
        return Err(PullError::ConfigDigest {
            image,
            expected: config_hex,
            actual,
        });
    }
    if let Some(m) = blob.complaint {
        return Err(config_err(m));
    }
    if got > size {
        return Err(config_err(format!(
            "more than the {size} bytes the manifest says"
        )));
    }
    if got < size {
        return Err(config_err(format!("got {got} of {size} bytes")));
    }
    let raw = blob.data;
    let config = parse_config(&raw).map_err(r.manifest_err())?;
    if config.rootfs.diff_ids.len() != m.layers().len() {
        return Err(PullError::LayerCount {
            image,
            layers: m.layers().len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let uncompressed = opened
        .uncompressed_layers(&config.rootfs.diff_ids)
        .await
        .map_err(|message| PullError::Fetch {
            image: image.clone(),
            layer: "layers".into(),
            digest: config_hex.clone(),
            message,
        })?;
    for (index, (d, diff_id)) in m.layers().iter().zip(&config.rootfs.diff_ids).enumerate() {
        let hex = sha256_hex(d.digest().as_ref())
            .map_err(r.manifest_err())?
            .to_owned();
        let media_type = d.media_type().to_string();
        if layer_compression(&media_type).is_none() {
            return Err(PullError::MediaType {
                image,
                layer: index,
                digest: hex,
                media_type,
            });
        }
        let diff_hex = sha256_hex(diff_id).map_err(r.manifest_err())?.to_owned();
        if !seen.insert(diff_hex.clone()) {
            continue;
        }
        if repo
            .complete_stream_object(&layer_content_id(&diff_hex))
            .map_err(r.repo_err())?
            .is_some()
        {
            reused += 1;
            r.events.send(PullEvent::BlobSkipped {
                index,
                digest: d.digest().to_string(),
            });
            continue;
        }
        // From containers-storage the layer comes uncompressed, named by its diff_id.
        let req = match uncompressed.as_ref().and_then(|u| u.get(index)) {
            Some(&size) => BlobRequest {
                digest: diff_id.clone(),
                hex: diff_hex.clone(),
                size: size.unwrap_or(0),
                exact_size: size.is_some(),
            },
            None => BlobRequest {
                digest: d.digest().to_string(),
                hex,
                size: d.size(),
                exact_size: true,
            },
        };
        jobs.push(Job {
            index,
            label: format!("layer {index}"),
            req,
            diff_id: Some(diff_hex),
        });
    }
    Ok(Plan {
        jobs,
        config: Some(Config {
            raw,
            parsed: config,
        }),
        reused,
    })
}
