//! Pulling an image into the repository through skopeo (`containers-image-proxy`).
//!
//! The pipeline (docs/oci.md has the full story):
//! 1. `skopeo inspect --raw` fetches the top-level manifest exactly as stored (a manifest list
//!    stays a list, so we pick the platform ourselves and keep the list's bytes). A
//!    digest-pinned reference must match it.
//! 2. If the config stream (or, for an artifact, the manifest stream) is already stored, we
//!    only make sure the manifest/list streams are stored and set the name: no proxy, no blob.
//! 3. Otherwise the proxy opens the image; we fetch the config blob with `GetBlob` (not
//!    `GetFullConfig`, which re-serialises it) and check its sha256.
//! 4. Every missing layer is requested at once (`GetBlob`), then processed largest first, as
//!    many at a time as there are cores: an async pump moves the blob's bytes through a
//!    bounded channel to a thread that hashes them (== layer digest) and decompresses into a
//!    second bounded channel; the layer's parsing thread hashes the uncompressed bytes
//!    (== diff_id) and splits the tar, handing every object to a pool of workers (one per
//!    core) that hash and write them.
//! 5. The config stream (raw config JSON, named refs to every layer stream, the manifest and
//!    the list) is written; then every stream of the pull is registered after one `syncfs`
//!    (layer streams only if both their digests matched), and the name is pointed at it.
//!
//! Why every `GetBlob` is issued before the first `FinishPipe`: skopeo handles requests one at
//! a time and `FinishPipe` blocks until its blob has been read to the end, so a `GetBlob`
//! queued behind it would wait for that whole blob. `FinishPipe` is only sent for blobs
//! being read, so it always completes.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::thread::Scope;

use cfs_repository::{ObjectId, ObjectPool, Repository};
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use oci_spec::image::ImageManifest;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::decompress::Decompressor;
use crate::layer::{HashingReader, layer_content_id, split_layer_with_pool};
use crate::manifest::{
    self, ManifestError, Platform, TopLevel, is_container_image, layer_compression, parse_config,
    parse_manifest, parse_top_level, sha256_hex,
};
use crate::progress::PullProgress;
use crate::reference::{ImageRef, ReferenceError, Transport};
use crate::tar::TarError;

/// `oci-config-sha256:<hex>`.
pub fn config_content_id(hex: &str) -> String {
    format!("oci-config-sha256:{hex}")
}

/// `oci-manifest-sha256:<hex>` (manifests and manifest lists).
pub fn manifest_content_id(hex: &str) -> String {
    format!("oci-manifest-sha256:{hex}")
}

/// `oci-blob-sha256:<hex>` (artifact blobs).
pub fn blob_content_id(hex: &str) -> String {
    format!("oci-blob-sha256:{hex}")
}

/// The named ref from a config stream to the manifest it was first pulled with.
pub const MANIFEST_REF: &str = "manifest";
/// The named ref from a config stream to the manifest list it was first pulled through.
pub const INDEX_REF: &str = "index";

/// Largest config we accept (configs are JSON; big ones are a few hundred KiB).
const MAX_CONFIG: u64 = 64 * 1024 * 1024;
/// Chunks in flight between a blob's pump and its worker thread.
const CHANNEL_DEPTH: usize = 16;
/// Largest chunk the pump reads at once.
const CHUNK: usize = 256 * 1024;
/// Size of the decompressed chunks passed from a layer's decompressing thread to its parser.
const TAR_CHUNK: usize = 256 * 1024;
/// Decompressed chunks in flight between them.
const TAR_CHUNK_DEPTH: usize = 8;

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
    /// The platform to pick from a manifest list; `None`: the host's.
    pub platform: Option<Platform>,
    /// Layers processed at once; `None`: the number of cores.
    pub jobs: Option<usize>,
    /// Largest uncompressed size a layer may have; `None`: [`DEFAULT_MAX_LAYER_SIZE`]. A layer
    /// that decompresses to more (a decompression bomb) fails the pull before filling the disk.
    pub max_layer_size: Option<u64>,
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
}

/// Why a pull failed. Every variant names the image; blob problems name the layer and both
/// digests.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference cannot be used.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// `skopeo inspect --raw` failed.
    #[error("{image}: reading the manifest with skopeo: {message}")]
    Inspect {
        /// The image.
        image: String,
        /// skopeo's message.
        message: String,
    },
    /// The skopeo proxy failed.
    #[error("{image}: {what}: {source}")]
    Proxy {
        /// The image.
        image: String,
        /// What was being done.
        what: String,
        /// The proxy's error.
        #[source]
        source: containers_image_proxy::Error,
    },
    /// A manifest problem (parse, media type, platform).
    #[error("{image}: {source}")]
    Manifest {
        /// The image.
        image: String,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// The manifest (or list) is not the one the digest names.
    #[error("{image}: the {what} has digest sha256:{actual}, expected sha256:{expected}")]
    ManifestDigest {
        /// The image.
        image: String,
        /// "manifest", "manifest list", ...
        what: &'static str,
        /// Expected hex.
        expected: String,
        /// Actual hex.
        actual: String,
    },
    /// The instance manifest of a Docker manifest list cannot be fetched unconverted.
    #[error(
        "{image}: the proxy returns manifest sha256:{digest} converted to OCI, and this \
         transport cannot fetch the original bytes"
    )]
    ManifestUnavailable {
        /// The image.
        image: String,
        /// The instance digest.
        digest: String,
    },
    /// The config blob does not hash to the config digest.
    #[error(
        "{image}: config: content hashes to sha256:{actual}, the manifest says sha256:{expected}"
    )]
    ConfigDigest {
        /// The image.
        image: String,
        /// From the manifest.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// Layer count and diff_id count differ.
    #[error("{image}: the manifest lists {layers} layers but the config has {diff_ids} diff_ids")]
    LayerCount {
        /// The image.
        image: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A layer media type we cannot read.
    #[error(
        "{image}: layer {layer} (sha256:{digest}): unsupported media type {media_type:?} \
         (supported: OCI/Docker tar, tar+gzip, tar+zstd)"
    )]
    MediaType {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Layer digest hex.
        digest: String,
        /// The media type.
        media_type: String,
    },
    /// A blob's bytes do not hash to its digest.
    #[error(
        "{image}: {layer}: content hashes to sha256:{actual}, the manifest says sha256:{expected}"
    )]
    BlobDigest {
        /// The image.
        image: String,
        /// "layer N" (index in the manifest) or "config".
        layer: String,
        /// From the manifest.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// The uncompressed layer does not hash to its diff_id.
    #[error(
        "{image}: layer {layer} (sha256:{digest}): uncompressed content hashes to \
         sha256:{actual}, the config's diff_id is sha256:{expected}"
    )]
    DiffId {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// The layer's (compressed) digest hex.
        digest: String,
        /// diff_id from the config.
        expected: String,
        /// Of the bytes.
        actual: String,
    },
    /// The blob's bytes ended early or could not be read.
    #[error("{image}: {layer} (sha256:{digest}): fetching: {message}")]
    Fetch {
        /// The image.
        image: String,
        /// "layer N" (index in the manifest) or "config".
        layer: String,
        /// Digest hex.
        digest: String,
        /// What went wrong.
        message: String,
    },
    /// Decompressing failed.
    #[error("{image}: layer {layer} (sha256:{digest}): decompressing: {source}")]
    Decompress {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Digest hex.
        digest: String,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// The layer is not a tar we can store.
    #[error("{image}: layer {layer} (sha256:{digest}): {source}")]
    Tar {
        /// The image.
        image: String,
        /// Index in the manifest.
        layer: usize,
        /// Digest hex.
        digest: String,
        /// The splitter's error.
        #[source]
        source: Box<TarError>,
    },
    /// The repository failed.
    #[error("{image}: {source}")]
    Repository {
        /// The image.
        image: String,
        /// The error.
        #[source]
        source: cfs_repository::Error,
    },
    /// Something local (temporary files, threads) failed.
    #[error("{image}: {what}: {source}")]
    Io {
        /// The image.
        image: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Per-pull context shared by the threads.
struct Ctx<'a> {
    repo: &'a Repository,
    image: String,
    progress: &'a dyn PullProgress,
    /// Bound on a layer's uncompressed size.
    max_layer_size: u64,
}

impl Ctx<'_> {
    fn repo_err(&self) -> impl Fn(cfs_repository::Error) -> PullError + '_ {
        |source| PullError::Repository {
            image: self.image.clone(),
            source,
        }
    }

    fn manifest_err(&self) -> impl Fn(ManifestError) -> PullError + '_ {
        |source| PullError::Manifest {
            image: self.image.clone(),
            source,
        }
    }

    fn proxy_err(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(containers_image_proxy::Error) -> PullError + '_ {
        let what = what.into();
        move |source| PullError::Proxy {
            image: self.image.clone(),
            what,
            source,
        }
    }
}

fn sha256_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A private temporary auth file for `--creds`, removed on drop.
struct TempAuth(PathBuf);

impl Drop for TempAuth {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn write_temp_auth(
    image: &str,
    registry: &str,
    user: &str,
    pass: &str,
) -> Result<TempAuth, PullError> {
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("cfs-auth-{}-{nanos}.json", std::process::id()));
    let body = serde_json::json!({
        "auths": { registry: { "auth": base64(format!("{user}:{pass}").as_bytes()) } }
    });
    let io_err = |source| PullError::Io {
        image: image.to_owned(),
        what: "writing a temporary auth file",
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err)?;
    let guard = TempAuth(path);
    f.write_all(body.to_string().as_bytes()).map_err(io_err)?;
    Ok(guard)
}

/// Options turned into skopeo arguments.
struct Skopeo {
    tls_verify: bool,
    authfile: Option<PathBuf>,
    platform: Option<Platform>,
}

impl Skopeo {
    fn command(&self) -> Command {
        let mut c = Command::new("skopeo");
        if let Some(p) = &self.platform {
            c.args(["--override-os", &p.os, "--override-arch", &p.arch]);
            if let Some(v) = &p.variant {
                c.args(["--override-variant", v]);
            }
        }
        c
    }

    /// The raw manifest `image` names, as stored (lists stay lists).
    fn inspect_raw(&self, image: &str) -> Result<Vec<u8>, PullError> {
        let mut c = self.command();
        c.args(["inspect", "--raw"]);
        if !self.tls_verify {
            c.arg("--tls-verify=false");
        }
        if let Some(a) = &self.authfile {
            c.arg("--authfile").arg(a);
        }
        c.arg(image);
        let out = c.output().map_err(|e| PullError::Inspect {
            image: image.to_owned(),
            message: format!("cannot run skopeo: {e} (install the skopeo package)"),
        })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg.trim();
            let msg = msg
                .strip_prefix("time=")
                .and_then(|m| m.split_once("msg=\"").map(|(_, r)| r.trim_end_matches('"')))
                .unwrap_or(msg);
            return Err(PullError::Inspect {
                image: image.to_owned(),
                message: if msg.is_empty() {
                    format!("skopeo exited with {}", out.status)
                } else {
                    msg.to_owned()
                },
            });
        }
        Ok(out.stdout)
    }

    fn proxy_config(&self) -> ImageProxyConfig {
        let mut cfg = ImageProxyConfig::default();
        cfg.authfile = self.authfile.clone();
        if !self.tls_verify {
            cfg.insecure_skip_tls_verification = Some(true);
        }
        let mut c = self.command();
        // Like the proxy crate's default: skopeo dies with us.
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe; it allocates nothing and takes no locks.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(io::Error::from)
            });
        }
        cfg.skopeo_cmd = Some(c);
        cfg
    }
}

/// The manifest to pull: its digest and, when already known, its bytes.
struct Instance {
    hex: String,
    raw: Option<Vec<u8>>,
}

/// The list a manifest was chosen from.
struct ListInfo {
    hex: String,
    raw: Vec<u8>,
    media_type: String,
}

/// Pulls `image` (skopeo syntax) into `repo` and names it `name` (default: derived from the
/// reference, see [`ImageRef::default_name`]).
pub fn pull(
    repo: &Repository,
    image: &str,
    name: Option<&str>,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<PullResult, PullError> {
    let iref = ImageRef::parse(image)?;
    let image = iref.to_string();
    let ctx = Ctx {
        repo,
        image: image.clone(),
        progress,
        max_layer_size: opts.max_layer_size.unwrap_or(DEFAULT_MAX_LAYER_SIZE),
    };
    let name = match name {
        Some(n) => n.to_owned(),
        None => iref.default_name()?,
    };
    cfs_repository::names::check_ref_name(&name).map_err(ctx.repo_err())?;

    let temp_auth = match (&opts.creds, iref.registry()) {
        (Some((user, pass)), Some(registry)) => {
            Some(write_temp_auth(&image, registry, user, pass)?)
        }
        (Some(_), None) => {
            return Err(PullError::Inspect {
                image,
                message: "--creds applies to docker:// references only".into(),
            });
        }
        (None, _) => None,
    };
    let authfile = match &temp_auth {
        Some(t) => Some(t.0.clone()),
        None => opts.authfile.clone(),
    };
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut skopeo = Skopeo {
        tls_verify: !opts.insecure_skip_tls_verification,
        authfile,
        platform: None,
    };

    progress.message(&format!("resolving {image}"));
    let top = skopeo.inspect_raw(&image)?;
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
    let (list, instance, platform) = match parse_top_level(&top).map_err(ctx.manifest_err())? {
        TopLevel::List(index) => {
            let (desc, platform) =
                manifest::choose_platform(&index, &wanted).map_err(ctx.manifest_err())?;
            let hex = sha256_hex(desc.digest().as_ref())
                .map_err(ctx.manifest_err())?
                .to_owned();
            let media_type = index
                .media_type()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| manifest::OCI_INDEX.to_owned());
            skopeo.platform = Some(platform.clone());
            (
                Some(ListInfo {
                    hex: top_hex,
                    raw: top,
                    media_type,
                }),
                Instance { hex, raw: None },
                Some(platform),
            )
        }
        TopLevel::Manifest(_) => (
            None,
            Instance {
                hex: top_hex,
                raw: Some(top),
            },
            None,
        ),
    };

    // Warm path: everything already stored?
    let stored_manifest = match &instance.raw {
        Some(raw) => Some(raw.clone()),
        None => match repo
            .stream_object(&manifest_content_id(&instance.hex))
            .map_err(ctx.repo_err())?
        {
            Some(id) => Some(read_stream(repo, &id).map_err(ctx.repo_err())?),
            None => None,
        },
    };
    if let Some(raw) = stored_manifest {
        let m = parse_manifest(&raw).map_err(ctx.manifest_err())?;
        if let Some(result) = finish_if_stored(&ctx, &name, &m, &raw, &instance, list.as_ref())? {
            return Ok(PullResult { platform, ..result });
        }
    }

    // Cold path: through the proxy.
    let jobs = opts
        .jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(2)
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| PullError::Io {
            image: image.clone(),
            what: "starting the async runtime",
            source,
        })?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let result = std::thread::scope(|pool_scope| {
        // Object hashing and file creation, for every layer, on one pool sized to the cores;
        // its workers stop when `pool` is dropped, and `pool_scope` waits for them.
        let pool = ObjectPool::new(pool_scope, repo, workers);
        let result = std::thread::scope(|scope| {
            rt.block_on(cold_pull(
                scope, &ctx, &pool, &skopeo, &iref, &name, instance, list, jobs,
            ))
        });
        drop(pool);
        result
    });
    // Blocked proxy requests (after an error) must not keep us waiting.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    drop(temp_auth);
    let result = result?;
    Ok(PullResult { platform, ..result })
}

fn read_stream(repo: &Repository, id: &ObjectId) -> cfs_repository::Result<Vec<u8>> {
    repo.open_stream_object(id)?.read_to_vec(repo)
}

/// A stream to (re)use: existing, or written now and registered with the others.
/// Keeps a manifest list's exact bytes as its own stream; returns its content id and object.
fn ensure_list_stream(
    repo: &Repository,
    list: Option<&ListInfo>,
    to_register: &mut Vec<(String, ObjectId)>,
) -> cfs_repository::Result<Option<(String, ObjectId)>> {
    let Some(l) = list else { return Ok(None) };
    let cid = manifest_content_id(&l.hex);
    let id = ensure_inline_stream(repo, &cid, &l.media_type, &l.raw, to_register)?;
    Ok(Some((cid, id)))
}

fn ensure_inline_stream(
    repo: &Repository,
    cid: &str,
    content_type: &str,
    data: &[u8],
    to_register: &mut Vec<(String, ObjectId)>,
) -> cfs_repository::Result<ObjectId> {
    if let Some(id) = repo.stream_object(cid)? {
        return Ok(id);
    }
    let mut w = repo.create_stream(content_type)?;
    w.write_inline(data)?;
    let id = w.finish()?;
    to_register.push((cid.to_owned(), id));
    Ok(id)
}

fn media_type_of(m: &ImageManifest) -> String {
    m.media_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned())
}

/// If the image (config stream) or artifact (manifest stream) is already stored, stores what
/// is missing of the manifest and list, sets the name and returns the result.
fn finish_if_stored(
    ctx: &Ctx<'_>,
    name: &str,
    m: &ImageManifest,
    manifest_raw: &[u8],
    instance: &Instance,
    list: Option<&ListInfo>,
) -> Result<Option<PullResult>, PullError> {
    let repo = ctx.repo;
    let manifest_cid = manifest_content_id(&instance.hex);
    let base = PullResult {
        name: name.to_owned(),
        content_id: String::new(),
        image_id: String::new(),
        manifest_digest: format!("sha256:{}", instance.hex),
        list_digest: list.map(|l| format!("sha256:{}", l.hex)),
        platform: None,
        artifact: false,
        fetched: 0,
        fetched_bytes: 0,
        reused: m.layers().len(),
    };
    if !is_container_image(m) {
        // An artifact is complete when its manifest stream (which references every blob) is.
        if repo
            .stream_object(&manifest_cid)
            .map_err(ctx.repo_err())?
            .is_none()
        {
            return Ok(None);
        }
        let mut reg = Vec::new();
        if let Some(l) = list {
            ensure_inline_stream(
                repo,
                &manifest_content_id(&l.hex),
                &l.media_type,
                &l.raw,
                &mut reg,
            )
            .map_err(ctx.repo_err())?;
        }
        register_and_name(ctx, &reg, name, &manifest_cid)?;
        ctx.progress.message("artifact already stored");
        return Ok(Some(PullResult {
            content_id: manifest_cid,
            image_id: format!("sha256:{}", instance.hex),
            artifact: true,
            ..base
        }));
    }
    let config_hex = sha256_hex(m.config().digest().as_ref())
        .map_err(ctx.manifest_err())?
        .to_owned();
    let config_cid = config_content_id(&config_hex);
    let Some(config_obj) = repo.stream_object(&config_cid).map_err(ctx.repo_err())? else {
        return Ok(None);
    };
    // The config is stored; make sure it references this manifest (and list), so they stay.
    let mut reg = Vec::new();
    let manifest_obj = ensure_inline_stream(
        repo,
        &manifest_cid,
        &media_type_of(m),
        manifest_raw,
        &mut reg,
    )
    .map_err(ctx.repo_err())?;
    let list_obj = ensure_list_stream(repo, list, &mut reg).map_err(ctx.repo_err())?;
    let reader = repo
        .open_stream_object(&config_obj)
        .map_err(ctx.repo_err())?;
    let refs = reader.header().streams.clone();
    // A layer with a missing or damaged object: take the cold path, which writes it again.
    for r in &refs {
        if repo
            .complete_stream_object(&r.content_id)
            .map_err(ctx.repo_err())?
            .is_none()
        {
            return Ok(None);
        }
    }
    let has = |cid: &str| refs.iter().any(|r| r.content_id == cid);
    let mut extra = Vec::new();
    if !has(&manifest_cid) {
        extra.push((
            format!("{MANIFEST_REF}:sha256:{}", instance.hex),
            manifest_cid.clone(),
            manifest_obj,
        ));
    }
    if let Some((cid, obj)) = list_obj
        && !has(&cid)
    {
        let hex = cid.rsplit(':').next().unwrap_or_default().to_owned();
        extra.push((format!("{INDEX_REF}:sha256:{hex}"), cid, obj));
    }
    if !extra.is_empty() {
        let content_type = reader.header().content_type.clone();
        let config_raw = reader.read_to_vec(repo).map_err(ctx.repo_err())?;
        let mut w = repo.create_stream(&content_type).map_err(ctx.repo_err())?;
        w.write_inline(&config_raw).map_err(ctx.repo_err())?;
        for r in refs.iter() {
            w.add_stream_ref(&r.name, &r.content_id, r.object)
                .map_err(ctx.repo_err())?;
        }
        for (n, cid, obj) in &extra {
            w.add_stream_ref(n, cid, *obj).map_err(ctx.repo_err())?;
        }
        let id = w.finish().map_err(ctx.repo_err())?;
        reg.push((config_cid.clone(), id));
    }
    register_and_name(ctx, &reg, name, &config_cid)?;
    ctx.progress.message("image already stored");
    Ok(Some(PullResult {
        content_id: config_cid,
        image_id: format!("sha256:{config_hex}"),
        ..base
    }))
}

fn register_and_name(
    ctx: &Ctx<'_>,
    reg: &[(String, ObjectId)],
    name: &str,
    target: &str,
) -> Result<(), PullError> {
    if !reg.is_empty() {
        let pairs: Vec<(&str, ObjectId)> = reg.iter().map(|(c, o)| (c.as_str(), *o)).collect();
        ctx.repo.register_streams(&pairs).map_err(ctx.repo_err())?;
    }
    crate::store::set_name(ctx.repo, name, target).map_err(ctx.repo_err())
}

/// One blob to fetch.
#[derive(Debug, Clone)]
struct Job {
    /// Index in the manifest's layers (`usize::MAX`: an artifact's config blob).
    index: usize,
    /// "layer N" or "config", for messages.
    label: String,
    /// `sha256:<hex>`.
    digest: String,
    hex: String,
    /// The blob's size (when `exact_size`; otherwise 0 and the blob is read to its end).
    size: u64,
    exact_size: bool,
    /// For a tar layer: the diff_id hex it must have. `None`: an artifact blob.
    diff_id: Option<String>,
}

/// A blob stored and verified (registered by the caller).
#[derive(Debug)]
struct Done {
    /// The job's index.
    index: usize,
    content_id: String,
    stream: ObjectId,
    /// The blob's bytes as fetched.
    bytes: u64,
}

#[allow(clippy::too_many_arguments)]
async fn cold_pull<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    ctx: &'env Ctx<'env>,
    pool: &'env ObjectPool,
    skopeo: &Skopeo,
    iref: &ImageRef,
    name: &str,
    instance: Instance,
    list: Option<ListInfo>,
    jobs: usize,
) -> Result<PullResult, PullError> {
    let repo = ctx.repo;
    let image = &ctx.image;
    ctx.progress.message("starting skopeo");
    let proxy = ImageProxy::new_with_config(skopeo.proxy_config())
        .await
        .map_err(ctx.proxy_err("starting the skopeo proxy"))?;
    let oimg = proxy
        .open_image(image)
        .await
        .map_err(ctx.proxy_err("opening the image"))?;

    let manifest_raw = match instance.raw {
        Some(raw) => raw,
        None => {
            let (digest, bytes) = proxy
                .fetch_manifest_raw_oci(&oimg)
                .await
                .map_err(ctx.proxy_err("fetching the manifest"))?;
            let got = digest.strip_prefix("sha256:").unwrap_or(&digest);
            if got != instance.hex {
                return Err(PullError::ManifestDigest {
                    image: image.clone(),
                    what: "manifest skopeo picked from the list",
                    expected: instance.hex,
                    actual: got.to_owned(),
                });
            }
            if sha256_of(&bytes) == instance.hex {
                bytes
            } else if let Some(pinned) = iref.pinned_to(&format!("sha256:{}", instance.hex)) {
                // A Docker schema 2 manifest, converted by the proxy: fetch the original.
                let raw = skopeo.inspect_raw(&pinned)?;
                let actual = sha256_of(&raw);
                if actual != instance.hex {
                    return Err(PullError::ManifestDigest {
                        image: image.clone(),
                        what: "manifest",
                        expected: instance.hex,
                        actual,
                    });
                }
                raw
            } else {
                return Err(PullError::ManifestUnavailable {
                    image: image.clone(),
                    digest: instance.hex,
                });
            }
        }
    };
    let m = parse_manifest(&manifest_raw).map_err(ctx.manifest_err())?;
    let instance = Instance {
        hex: instance.hex,
        raw: Some(manifest_raw),
    };
    let manifest_raw = instance.raw.as_deref().unwrap_or_default();
    // The manifest may lead to an image whose config is already stored.
    if let Some(r) = finish_if_stored(ctx, name, &m, manifest_raw, &instance, list.as_ref())? {
        let _ = proxy.close_image(&oimg).await;
        let _ = proxy.finalize().await;
        return Ok(r);
    }

    let artifact = !is_container_image(&m);
    let config_desc = m.config();
    let config_hex = sha256_hex(config_desc.digest().as_ref())
        .map_err(ctx.manifest_err())?
        .to_owned();
    let mut jobs_list = Vec::new();
    let mut reused = 0usize;
    let mut config_raw = None;
    let mut seen = HashSet::new();
    if artifact {
        // The config is one more blob; index usize::MAX marks it.
        let all = std::iter::once((usize::MAX, config_desc)).chain(m.layers().iter().enumerate());
        for (index, d) in all {
            let hex = sha256_hex(d.digest().as_ref())
                .map_err(ctx.manifest_err())?
                .to_owned();
            if !seen.insert(hex.clone()) {
                continue;
            }
            if repo
                .complete_stream_object(&blob_content_id(&hex))
                .map_err(ctx.repo_err())?
                .is_some()
            {
                reused += 1;
                if index != usize::MAX {
                    ctx.progress.blob_skipped(index, d.digest().as_ref());
                }
                continue;
            }
            jobs_list.push(Job {
                index,
                label: if index == usize::MAX {
                    "config".to_owned()
                } else {
                    format!("layer {index}")
                },
                digest: d.digest().to_string(),
                hex,
                size: d.size(),
                exact_size: true,
                diff_id: None,
            });
        }
    } else {
        if config_desc.size() > MAX_CONFIG {
            return Err(PullError::Fetch {
                image: image.clone(),
                layer: "config".into(),
                digest: config_hex,
                message: format!("config of {} bytes is too large", config_desc.size()),
            });
        }
        ctx.progress.message("fetching config");
        let raw = fetch_small(
            ctx,
            &proxy,
            &oimg,
            config_desc.digest(),
            config_desc.size(),
            &config_hex,
        )
        .await?;
        let actual = sha256_of(&raw);
        if actual != config_hex {
            return Err(PullError::ConfigDigest {
                image: image.clone(),
                expected: config_hex,
                actual,
            });
        }
        let config = parse_config(&raw).map_err(ctx.manifest_err())?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            return Err(PullError::LayerCount {
                image: image.clone(),
                layers: m.layers().len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let uncompressed = if iref.transport == Transport::ContainersStorage {
            Some(uncompressed_layers(ctx, &proxy, &oimg, &config.rootfs.diff_ids).await?)
        } else {
            None
        };
        for (index, (d, diff_id)) in m.layers().iter().zip(&config.rootfs.diff_ids).enumerate() {
            let hex = sha256_hex(d.digest().as_ref())
                .map_err(ctx.manifest_err())?
                .to_owned();
            let media_type = d.media_type().to_string();
            if layer_compression(&media_type).is_none() {
                return Err(PullError::MediaType {
                    image: image.clone(),
                    layer: index,
                    digest: hex,
                    media_type,
                });
            }
            let diff_hex = sha256_hex(diff_id).map_err(ctx.manifest_err())?.to_owned();
            if !seen.insert(diff_hex.clone()) {
                continue;
            }
            if repo
                .complete_stream_object(&layer_content_id(&diff_hex))
                .map_err(ctx.repo_err())?
                .is_some()
            {
                reused += 1;
                ctx.progress.blob_skipped(index, d.digest().as_ref());
                continue;
            }
            // From containers-storage the layer comes uncompressed, named by its diff_id.
            let (digest, hex, size, exact_size) =
                match uncompressed.as_ref().and_then(|u| u.get(index)) {
                    Some(&size) => (
                        diff_id.clone(),
                        diff_hex.clone(),
                        size.unwrap_or(0),
                        size.is_some(),
                    ),
                    None => (d.digest().to_string(), hex, d.size(), true),
                };
            jobs_list.push(Job {
                index,
                label: format!("layer {index}"),
                digest,
                hex,
                size,
                exact_size,
                diff_id: Some(diff_hex),
            });
        }
        config_raw = Some((raw, config));
    }
    jobs_list.sort_by(|a, b| b.size.cmp(&a.size).then(a.index.cmp(&b.index)));
    let fetched = jobs_list.len();

    let done = match fetch_blobs(scope, ctx, pool, &proxy, &oimg, jobs_list, jobs).await {
        Ok(done) => done,
        Err((e, verified)) => {
            // Layers that passed both checks are correct: keep them for the next pull (one
            // syncfs, then their names).
            let pairs: Vec<(&str, ObjectId)> = verified
                .iter()
                .map(|d| (d.content_id.as_str(), d.stream))
                .collect();
            if !pairs.is_empty() {
                repo.register_streams(&pairs).map_err(ctx.repo_err())?;
            }
            return Err(e);
        }
    };
    let _ = proxy.close_image(&oimg).await;
    if let Err(e) = proxy.finalize().await {
        let pairs: Vec<(&str, ObjectId)> = done
            .iter()
            .map(|d| (d.content_id.as_str(), d.stream))
            .collect();
        if !pairs.is_empty() {
            repo.register_streams(&pairs).map_err(ctx.repo_err())?;
        }
        return Err(ctx.proxy_err("shutting down the skopeo proxy")(e));
    }

    // Everything verified: write the top-level streams, then register them together with
    // the blobs' streams (one syncfs for the whole pull, then the names).
    let mut reg: Vec<(String, ObjectId)> = done
        .iter()
        .map(|d| (d.content_id.clone(), d.stream))
        .collect();
    let manifest_cid = manifest_content_id(&instance.hex);
    let manifest_media_type = media_type_of(&m);
    let list_obj = ensure_list_stream(repo, list.as_ref(), &mut reg).map_err(ctx.repo_err())?;
    let stream_of = |cid: &str| -> Result<ObjectId, PullError> {
        if let Some(d) = done.iter().find(|d| d.content_id == cid) {
            return Ok(d.stream);
        }
        repo.stream_object(cid)
            .map_err(ctx.repo_err())?
            .ok_or_else(|| PullError::Repository {
                image: image.clone(),
                source: cfs_repository::Error::NotFound {
                    kind: "stream",
                    name: cid.to_owned(),
                },
            })
    };
    let result_base = PullResult {
        name: name.to_owned(),
        content_id: String::new(),
        image_id: String::new(),
        manifest_digest: format!("sha256:{}", instance.hex),
        list_digest: list.as_ref().map(|l| format!("sha256:{}", l.hex)),
        platform: None,
        artifact,
        fetched,
        fetched_bytes: done.iter().map(|d| d.bytes).sum(),
        reused,
    };
    if artifact {
        let mut w = repo
            .create_stream(&manifest_media_type)
            .map_err(ctx.repo_err())?;
        w.write_inline(manifest_raw).map_err(ctx.repo_err())?;
        let mut named = HashSet::new();
        for d in std::iter::once(m.config()).chain(m.layers()) {
            let hex = sha256_hex(d.digest().as_ref()).map_err(ctx.manifest_err())?;
            let cid = blob_content_id(hex);
            if named.insert(cid.clone()) {
                w.add_stream_ref(d.digest().as_ref(), &cid, stream_of(&cid)?)
                    .map_err(ctx.repo_err())?;
            }
        }
        if let Some((cid, obj)) = &list_obj {
            w.add_stream_ref(INDEX_REF, cid, *obj)
                .map_err(ctx.repo_err())?;
        }
        let obj = w.finish().map_err(ctx.repo_err())?;
        reg.push((manifest_cid.clone(), obj));
        register_and_name(ctx, &reg, name, &manifest_cid)?;
        return Ok(PullResult {
            content_id: manifest_cid,
            image_id: format!("sha256:{}", instance.hex),
            ..result_base
        });
    }

    let Some((config_raw, config)) = config_raw else {
        return Err(PullError::Fetch {
            image: image.clone(),
            layer: "config".into(),
            digest: config_hex,
            message: "config missing".into(),
        });
    };
    let manifest_obj = ensure_inline_stream(
        repo,
        &manifest_cid,
        &manifest_media_type,
        manifest_raw,
        &mut reg,
    )
    .map_err(ctx.repo_err())?;
    let config_cid = config_content_id(&config_hex);
    let mut w = repo
        .create_stream(config_desc.media_type().as_ref())
        .map_err(ctx.repo_err())?;
    w.write_inline(&config_raw).map_err(ctx.repo_err())?;
    let mut named = HashSet::new();
    for diff_id in &config.rootfs.diff_ids {
        let hex = sha256_hex(diff_id).map_err(ctx.manifest_err())?;
        let cid = layer_content_id(hex);
        if named.insert(cid.clone()) {
            w.add_stream_ref(diff_id, &cid, stream_of(&cid)?)
                .map_err(ctx.repo_err())?;
        }
    }
    w.add_stream_ref(MANIFEST_REF, &manifest_cid, manifest_obj)
        .map_err(ctx.repo_err())?;
    if let Some((cid, obj)) = &list_obj {
        w.add_stream_ref(INDEX_REF, cid, *obj)
            .map_err(ctx.repo_err())?;
    }
    let obj = w.finish().map_err(ctx.repo_err())?;
    reg.push((config_cid.clone(), obj));
    register_and_name(ctx, &reg, name, &config_cid)?;
    Ok(PullResult {
        content_id: config_cid,
        image_id: format!("sha256:{config_hex}"),
        ..result_base
    })
}

/// Fetches a small blob (a config) whole.
async fn fetch_small(
    ctx: &Ctx<'_>,
    proxy: &ImageProxy,
    oimg: &OpenedImage,
    digest: &oci_spec::image::Digest,
    size: u64,
    hex: &str,
) -> Result<Vec<u8>, PullError> {
    let (mut reader, finish) = proxy
        .get_blob(oimg, digest, size)
        .await
        .map_err(ctx.proxy_err(format!("fetching the config {digest}")))?;
    let read = async {
        let mut buf = Vec::new();
        let r = (&mut reader).take(size).read_to_end(&mut buf).await;
        // Drain what a too-long blob has left, so the proxy can finish.
        let extra = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        (r.map(|_| buf), extra)
    };
    let ((data, extra), fin) = futures_util::future::join(read, finish).await;
    let fetch_err = |message: String| PullError::Fetch {
        image: ctx.image.clone(),
        layer: "config".into(),
        digest: hex.to_owned(),
        message,
    };
    let data = data.map_err(|e| fetch_err(e.to_string()))?;
    // Our own check first: it names both digests.
    if data.len() as u64 == size && sha256_of(&data) != hex {
        return Err(PullError::ConfigDigest {
            image: ctx.image.clone(),
            expected: hex.to_owned(),
            actual: sha256_of(&data),
        });
    }
    fin.map_err(|e| fetch_err(e.to_string()))?;
    if data.len() as u64 != size {
        return Err(fetch_err(format!("got {} of {size} bytes", data.len())));
    }
    if let Ok(n) = extra
        && n > 0
    {
        return Err(fetch_err(format!(
            "{n} bytes more than the {size} the manifest says"
        )));
    }
    Ok(data)
}

/// A message from a pump to its worker.
enum Msg {
    Data(Vec<u8>),
    /// All `size` bytes sent.
    End,
    /// The blob ended early.
    Short,
    /// Reading failed.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChannelState {
    Open,
    Ended,
    Short,
    Failed(String),
    Aborted,
}

/// The worker's end of the bridge: a blocking `Read` over the pump's chunks.
struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    state: ChannelState,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Msg>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
            state: ChannelState::Open,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                ChannelState::Open => {}
                ChannelState::Ended => return Ok(0),
                ChannelState::Short => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob ended early",
                    ));
                }
                ChannelState::Failed(m) => return Err(io::Error::other(m.clone())),
                ChannelState::Aborted => return Err(io::Error::other("pull aborted")),
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Some(Msg::End) => self.state = ChannelState::Ended,
                Some(Msg::Short) => self.state = ChannelState::Short,
                Some(Msg::Failed(m)) => self.state = ChannelState::Failed(m),
                None => self.state = ChannelState::Aborted,
            }
        }
    }
}

/// Moves exactly `size` bytes (or fewer, if the blob ends early; or, without `exact_size`,
/// everything up to the end) from the proxy into the channel; returns the reader so the rest
/// can be drained while the proxy finishes.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    job: &Job,
    tx: mpsc::Sender<Msg>,
    progress: &dyn PullProgress,
) -> R {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while !job.exact_size || got < job.size {
        let want = if job.exact_size {
            usize::try_from(job.size - got).unwrap_or(CHUNK).min(CHUNK)
        } else {
            CHUNK
        };
        match reader.read(&mut buf[..want]).await {
            Ok(0) if !job.exact_size => break,
            Ok(0) => {
                let _ = tx.send(Msg::Short).await;
                return reader;
            }
            Ok(n) => {
                got += n as u64;
                progress.blob_progress(job.index, n as u64);
                if tx.send(Msg::Data(buf[..n].to_vec())).await.is_err() {
                    return reader;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Msg::Failed(e.to_string())).await;
                return reader;
            }
        }
    }
    let _ = tx.send(Msg::End).await;
    reader
}

/// The parser's end of a layer's decompressed bytes: chunks from the decompressing thread,
/// read in place (no copy into another buffer); used chunks go back to be refilled.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.chunk, next);
                    self.pos = 0;
                    // The decompressor may have finished; then the chunk is simply dropped.
                    let _ = self.recycle.send(used);
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.chunk.len());
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The decompressing thread of a layer: sniffs and decompresses `comp` into chunks for the
/// parser until the end, an error (sent on as the last message) or the parser hanging up.
/// Past `limit` uncompressed bytes it stops and returns `true` (the caller reports the bound).
fn decompress_into(
    comp: &mut HashingReader<ChannelReader>,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
    limit: u64,
) -> bool {
    let mut total = 0u64;
    let mut dec = match Decompressor::new(comp) {
        Ok((d, _kind)) => d,
        Err(e) => {
            let _ = tx.send(Err(e));
            return false;
        }
    };
    loop {
        let mut chunk = recycle.try_recv().unwrap_or_default();
        chunk.resize(TAR_CHUNK, 0);
        // Fill the chunk: fewer, larger messages.
        let mut n = 0;
        let mut failure = None;
        while n < chunk.len() {
            match dec.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        chunk.truncate(n);
        total += n as u64;
        if total > limit {
            // Dropping `tx` ends the splitter's input; the caller reports the bound.
            return true;
        }
        if n > 0 && tx.send(Ok(chunk)).is_err() {
            return false;
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e));
            return false;
        }
        if n < TAR_CHUNK {
            return false;
        }
    }
}

/// The worker: verify and store one blob from the channel. Runs on its own thread; a layer
/// gets a second thread that decompresses, while this one hashes the uncompressed bytes and
/// parses the tar, and `pool` stores the objects.
fn process(
    ctx: &Ctx<'_>,
    pool: &ObjectPool,
    job: &Job,
    rx: mpsc::Receiver<Msg>,
) -> Result<Done, PullError> {
    let repo = ctx.repo;
    let image = &ctx.image;
    let mut comp = HashingReader::new(ChannelReader::new(rx));
    enum Failure {
        /// Past `--max-layer-size`: decided without reading the rest of the blob.
        Bound(io::Error),
        Decompress(io::Error),
        Tar(TarError),
        Repo(cfs_repository::Error),
        Io(io::Error),
    }
    let outcome: Result<(ObjectId, Option<String>), Failure> = match &job.diff_id {
        Some(_) => std::thread::scope(|s| {
            let (tx, chunks) = std::sync::mpsc::sync_channel(TAR_CHUNK_DEPTH);
            let limit = ctx.max_layer_size;
            let (recycle, recycled) = std::sync::mpsc::channel();
            let comp = &mut comp;
            let decompressor = std::thread::Builder::new()
                .name(format!("decompress {}", job.label))
                .spawn_scoped(s, move || decompress_into(comp, tx, recycled, limit))
                .map_err(Failure::Io)?;
            let input = ChunkReader {
                rx: chunks,
                recycle,
                chunk: Vec::new(),
                pos: 0,
                done: false,
            };
            // The reader is consumed: when the splitter stops (done or failed) the
            // decompressor's sends fail and it stops too.
            let imported = split_layer_with_pool(repo, input, pool);
            match decompressor.join() {
                Err(_) => {
                    return Err(Failure::Io(io::Error::other(
                        "the decompressing thread panicked",
                    )));
                }
                Ok(true) => {
                    return Err(Failure::Bound(io::Error::other(format!(
                        "the layer decompresses to more than {limit} bytes (the bound set by \
                         --max-layer-size)"
                    ))));
                }
                Ok(false) => {}
            }
            let imported = imported.map_err(|e| match e {
                // Errors reading the decompressed stream come from the decoder (or the
                // channel, handled below).
                TarError::Read(e) if e.kind() != io::ErrorKind::InvalidData => {
                    Failure::Decompress(e)
                }
                e => Failure::Tar(e),
            })?;
            Ok((imported.stream, Some(imported.diff_id)))
        }),
        None => (|| {
            let mut w = repo.object_writer().map_err(Failure::Repo)?;
            io::copy(&mut comp, &mut w).map_err(Failure::Io)?;
            let id = w.finish().map_err(Failure::Repo)?;
            let mut s = repo
                .create_stream("application/octet-stream")
                .map_err(Failure::Repo)?;
            s.write_reference(id, job.size).map_err(Failure::Repo)?;
            Ok((s.finish().map_err(Failure::Repo)?, None))
        })(),
    };
    let outcome = match outcome {
        // Past the bound: stop here, rather than read the rest of a blob that may not end.
        Err(Failure::Bound(source)) => {
            return Err(PullError::Decompress {
                image: image.clone(),
                layer: job.index,
                digest: job.hex.clone(),
                source,
            });
        }
        other => other,
    };
    // Read what the consumer left, so the digest covers the whole blob.
    let _ = io::copy(&mut comp, &mut io::sink());
    let state = comp.get_ref().state.clone();
    let (actual, count) = comp.finish();
    let fetch = |message: String| PullError::Fetch {
        image: image.clone(),
        layer: job.label.clone(),
        digest: job.hex.clone(),
        message,
    };
    match state {
        ChannelState::Ended => {}
        ChannelState::Short => {
            return Err(fetch(format!(
                "the blob ended after {count} of {} bytes",
                job.size
            )));
        }
        ChannelState::Failed(m) => return Err(fetch(m)),
        ChannelState::Aborted | ChannelState::Open => return Err(fetch("aborted".into())),
    }
    if actual != job.hex {
        return Err(PullError::BlobDigest {
            image: image.clone(),
            layer: job.label.clone(),
            expected: job.hex.clone(),
            actual,
        });
    }
    let (stream, diff_id) = outcome.map_err(|f| match f {
        Failure::Bound(source) | Failure::Decompress(source) => PullError::Decompress {
            image: image.clone(),
            layer: job.index,
            digest: job.hex.clone(),
            source,
        },
        Failure::Tar(source) => PullError::Tar {
            image: image.clone(),
            layer: job.index,
            digest: job.hex.clone(),
            source: Box::new(source),
        },
        Failure::Repo(source) => PullError::Repository {
            image: image.clone(),
            source,
        },
        Failure::Io(source) => PullError::Io {
            image: image.clone(),
            what: "storing a blob",
            source,
        },
    })?;
    let content_id = match (&job.diff_id, diff_id) {
        (Some(expected), Some(actual)) => {
            if *expected != actual {
                return Err(PullError::DiffId {
                    image: image.clone(),
                    layer: job.index,
                    digest: job.hex.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
            layer_content_id(expected)
        }
        _ => blob_content_id(&job.hex),
    };
    ctx.progress.blob_done(job.index);
    Ok(Done {
        index: job.index,
        content_id,
        stream,
        bytes: count,
    })
}

/// The sizes of an image's layers as containers-storage serves them (`None`: not known).
///
/// containers-storage keeps layers unpacked: it serves a layer only by its *uncompressed*
/// digest (the diff_id), as an uncompressed tar, and cannot re-create the compressed blob the
/// manifest names (c/image's storage source says as much; `skopeo copy` asks for
/// `LayerInfosForCopy` for the same reason). So each layer is fetched by its diff_id and
/// checked against it (both as the blob's digest and as the tar's), which is all such a
/// source can prove. The proxy's `GetLayerInfo` (skopeo 1.10+) gives the sizes; each of its
/// layers must be the config's diff_id at its position. Older proxies lack it: then the
/// sizes are unknown and each blob is read to its end.
async fn uncompressed_layers(
    ctx: &Ctx<'_>,
    proxy: &ImageProxy,
    oimg: &OpenedImage,
    diff_ids: &[String],
) -> Result<Vec<Option<u64>>, PullError> {
    // A size the store does not know comes as -1, which the proxy crate cannot parse: then
    // the sizes are unknown, as without GetLayerInfo (the digests decide either way).
    let Ok(Some(infos)) = proxy.get_layer_info(oimg).await else {
        return Ok(vec![None; diff_ids.len()]);
    };
    if infos.len() != diff_ids.len() {
        return Err(PullError::LayerCount {
            image: ctx.image.clone(),
            layers: infos.len(),
            diff_ids: diff_ids.len(),
        });
    }
    infos
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(index, (info, diff_id))| {
            if info.digest.to_string() == *diff_id {
                Ok(Some(info.size))
            } else {
                Err(PullError::Fetch {
                    image: ctx.image.clone(),
                    layer: format!("layer {index}"),
                    digest: diff_id.clone(),
                    message: format!(
                        "containers-storage has layer {} here, not the config's diff_id",
                        info.digest
                    ),
                })
            }
        })
        .collect()
}

/// Fetches, verifies and registers every job; at most `parallel` at a time.
///
/// Nothing is registered here: the caller registers every stream at once. On failure it gets
/// the error and the blobs that were verified before it.
async fn fetch_blobs<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    ctx: &'env Ctx<'env>,
    pool: &'env ObjectPool,
    proxy: &ImageProxy,
    oimg: &OpenedImage,
    jobs: Vec<Job>,
    parallel: usize,
) -> Result<Vec<Done>, (PullError, Vec<Done>)> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    // Blobs of unknown size: the proxy, told 0 bytes, always complains at FinishPipe. Their
    // bytes are verified here by digest, which is what decides (the complaint still explains
    // a failure).
    let size_unknown: HashSet<usize> = jobs
        .iter()
        .filter(|j| !j.exact_size)
        .map(|j| j.index)
        .collect();
    // Request every blob before the first FinishPipe (see the module docs).
    let mut queue = VecDeque::new();
    let mut labels: BTreeMap<usize, (String, String)> = BTreeMap::new();
    for job in jobs {
        let digest: oci_spec::image::Digest = match job.digest.parse() {
            Ok(d) => d,
            Err(e) => {
                let e: oci_spec::OciSpecError = e;
                return Err((
                    PullError::Fetch {
                        image: ctx.image.clone(),
                        layer: job.label.clone(),
                        digest: job.hex.clone(),
                        message: e.to_string(),
                    },
                    done,
                ));
            }
        };
        let (reader, finish) = match proxy.get_blob(oimg, &digest, job.size).await {
            Ok(r) => r,
            Err(e) => {
                let e = ctx.proxy_err(format!("requesting {} ({})", job.label, job.digest))(e);
                return Err((e, done));
            }
        };
        labels.insert(job.index, (job.label.clone(), job.hex.clone()));
        queue.push_back((job, reader, finish));
    }

    let mut running = FuturesUnordered::new();
    let mut finishing = FuturesUnordered::new();
    let mut finish_errors: BTreeMap<usize, String> = BTreeMap::new();
    let mut first_error: Option<PullError> = None;
    loop {
        while running.len() < parallel
            && first_error.is_none()
            && let Some((job, reader, finish)) = queue.pop_front()
        {
            let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_DEPTH);
            let (res_tx, res_rx) = oneshot::channel();
            let (reader_tx, reader_rx) = oneshot::channel();
            ctx.progress.blob_started(job.index, &job.digest, job.size);
            let worker_job = job.clone();
            scope.spawn(move || {
                let r = process(ctx, pool, &worker_job, rx);
                let _ = res_tx.send(r);
            });
            let index = job.index;
            running.push(async move {
                let reader = pump(reader, &job, tx, ctx.progress).await;
                let _ = reader_tx.send(reader);
                let r = res_rx.await.unwrap_or_else(|_| {
                    Err(PullError::Fetch {
                        image: ctx.image.clone(),
                        layer: job.label.clone(),
                        digest: job.hex.clone(),
                        message: "the worker thread died".into(),
                    })
                });
                (job.index, r)
            });
            finishing.push(async move {
                let drain = async {
                    match reader_rx.await {
                        Ok(mut r) => tokio::io::copy(&mut r, &mut tokio::io::sink()).await.ok(),
                        Err(_) => None,
                    }
                };
                let (extra, fin) = futures_util::future::join(drain, finish).await;
                let r = match (fin, extra) {
                    (Err(e), _) => Err(e.to_string()),
                    (Ok(()), Some(n)) if n > 0 => {
                        Err(format!("{n} bytes more than the manifest's size"))
                    }
                    (Ok(()), _) => Ok(()),
                };
                (index, r)
            });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, r)) = running.next() => match r {
                Ok(d) => done.push(d),
                Err(e) => {
                    // A fetch failure is better explained by the proxy's own error.
                    let e = match e {
                        PullError::Fetch { image, layer, digest, message } => {
                            let mut message = message;
                            if let Some(m) = finish_errors.get(&index) {
                                message = format!("{message}: {m}");
                            } else {
                                while let Some((i, r)) = finishing.next().await {
                                    if let Err(m) = r {
                                        finish_errors.insert(i, m);
                                    }
                                    if i == index {
                                        break;
                                    }
                                }
                                if let Some(m) = finish_errors.get(&index) {
                                    message = format!("{message}: {m}");
                                }
                            }
                            PullError::Fetch { image, layer, digest, message }
                        }
                        e => e,
                    };
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                    // Stop at once: dropping the readers makes skopeo give up on the rest.
                    break;
                }
            },
            Some((index, r)) = finishing.next(), if !finishing.is_empty() => {
                if let Err(m) = r {
                    finish_errors.insert(index, m);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err((e, done));
    }
    while let Some((index, r)) = finishing.next().await {
        if let Err(m) = r {
            finish_errors.insert(index, m);
        }
    }
    if let Some((index, m)) = finish_errors
        .into_iter()
        .find(|(index, _)| !size_unknown.contains(index))
    {
        let (layer, digest) = labels.remove(&index).unwrap_or_default();
        // The proxy's verdict on a blob we verified ourselves is odd but decisive: keep only
        // the others.
        done.retain(|d: &Done| d.index != index);
        return Err((
            PullError::Fetch {
                image: ctx.image.clone(),
                layer,
                digest,
                message: m,
            },
            done,
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
