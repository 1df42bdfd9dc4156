//! The skopeo source: `docker://`, `containers-storage:` and the other transports cfs does not
//! read itself, through `skopeo inspect --raw` (the top-level manifest exactly as stored) and
//! skopeo's image proxy (`containers-image-proxy`: manifests chosen from lists, blobs).
//!
//! Every `GetBlob` of a pull is issued before the first `FinishPipe` ([`OpenedSource::blobs`]):
//! skopeo handles requests one at a time and `FinishPipe` blocks until its blob has been read
//! to the end, so a `GetBlob` queued behind it would wait for that whole blob.

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::{BlobInput, BlobRequest, OpenedSource, SmallBlob, Source, SourceError, SourceOptions};
use crate::manifest::Platform;
use crate::reference::{ImageRef, Transport};

/// A private temporary auth file for `--creds`, removed on drop.
pub(crate) struct TempAuth(pub(crate) PathBuf);

impl Drop for TempAuth {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `USER:PASS` for `registry` into a new private (0600) auth file.
pub(crate) fn write_temp_auth(
    registry: &str,
    user: &str,
    pass: &str,
) -> Result<TempAuth, SourceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("cfs-auth-{}-{nanos}.json", std::process::id()));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let body = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    let io_err = |source| SourceError::Io {
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

/// A reference read through skopeo.
pub struct Skopeo {
    image: String,
    iref: ImageRef,
    tls_verify: bool,
    authfile: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    /// Kept for as long as skopeo may read it.
    _temp_auth: Option<TempAuth>,
}

impl Skopeo {
    /// Prepares to read `iref` (starts nothing yet).
    pub fn new(iref: &ImageRef, opts: &SourceOptions) -> Result<Self, SourceError> {
        let temp_auth = match (&opts.creds, iref.registry()) {
            (Some((user, pass)), Some(registry)) => Some(write_temp_auth(registry, user, pass)?),
            (Some(_), None) => {
                return Err(SourceError::Inspect(
                    "--creds applies to docker:// references only".into(),
                ));
            }
            (None, _) => None,
        };
        let authfile = match &temp_auth {
            Some(t) => Some(t.0.clone()),
            None => opts.authfile.clone(),
        };
        Ok(Self {
            image: iref.to_string(),
            iref: iref.clone(),
            tls_verify: !opts.insecure_skip_tls_verification,
            authfile,
            cert_dir: opts.cert_dir.clone(),
            _temp_auth: temp_auth,
        })
    }

    fn command(platform: Option<&Platform>) -> Command {
        let mut c = Command::new("skopeo");
        if let Some(p) = platform {
            c.args(["--override-os", &p.os, "--override-arch", &p.arch]);
            if let Some(v) = &p.variant {
                c.args(["--override-variant", v]);
            }
        }
        c
    }

    /// The raw manifest `image` names, as stored (lists stay lists).
    async fn inspect_raw(&self, image: &str) -> Result<Vec<u8>, SourceError> {
        let mut c = tokio::process::Command::from(Self::command(None));
        c.args(["inspect", "--raw"]);
        if !self.tls_verify {
            c.arg("--tls-verify=false");
        }
        if let Some(a) = &self.authfile {
            c.arg("--authfile").arg(a);
        }
        if let Some(d) = &self.cert_dir {
            c.arg("--cert-dir").arg(d);
        }
        c.arg(image);
        c.kill_on_drop(true);
        let out = c.output().await.map_err(|e| {
            SourceError::Inspect(format!(
                "cannot run skopeo: {e} (install the skopeo package)"
            ))
        })?;
        if !out.status.success() {
            let msg = super::skopeo_msg::message(&String::from_utf8_lossy(&out.stderr));
            return Err(SourceError::Inspect(if msg.is_empty() {
                format!("skopeo exited with {}", out.status)
            } else {
                msg
            }));
        }
        Ok(out.stdout)
    }

    fn proxy_config(&self, platform: Option<&Platform>) -> ImageProxyConfig {
        let mut cfg = ImageProxyConfig::default();
        cfg.authfile = self.authfile.clone();
        cfg.certificate_directory = self.cert_dir.clone();
        if !self.tls_verify {
            cfg.insecure_skip_tls_verification = Some(true);
        }
        let mut c = Self::command(platform);
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

fn proxy_err(what: impl Into<String>) -> impl FnOnce(containers_image_proxy::Error) -> SourceError {
    let what = what.into();
    move |source| SourceError::Proxy { what, source }
}

impl Source for Skopeo {
    fn top_manifest(&self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        Box::pin(self.inspect_raw(&self.image))
    }

    fn open<'a>(
        &'a self,
        platform: Option<&'a Platform>,
    ) -> BoxFuture<'a, Result<Box<dyn OpenedSource + 'a>, SourceError>> {
        Box::pin(async move {
            let proxy = ImageProxy::new_with_config(self.proxy_config(platform))
                .await
                .map_err(proxy_err("starting the skopeo proxy"))?;
            let img = proxy
                .open_image(&self.image)
                .await
                .map_err(proxy_err("opening the image"))?;
            Ok(Box::new(Opened {
                source: self,
                proxy,
                img,
            }) as Box<dyn OpenedSource + 'a>)
        })
    }
}

/// An image opened in the proxy.
struct Opened<'a> {
    source: &'a Skopeo,
    proxy: ImageProxy,
    img: OpenedImage,
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, String> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| e.to_string())
}

impl OpenedSource for Opened<'_> {
    fn manifest<'a>(&'a self, hex: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            let (digest, bytes) = self
                .proxy
                .fetch_manifest_raw_oci(&self.img)
                .await
                .map_err(proxy_err("fetching the manifest"))?;
            let got = digest.strip_prefix("sha256:").unwrap_or(&digest);
            // Another manifest than the one chosen: the pull's own check reports it.
            if got != hex || hex::encode(Sha256::digest(&bytes)) == hex {
                return Ok(bytes);
            }
            // A Docker schema 2 manifest, converted by the proxy: fetch the original.
            match self.source.iref.pinned_to(&format!("sha256:{hex}")) {
                Some(pinned) => self.source.inspect_raw(&pinned).await,
                None => Err(SourceError::ManifestUnavailable {
                    digest: hex.to_owned(),
                }),
            }
        })
    }

    fn small_blob<'a>(
        &'a self,
        req: &'a BlobRequest,
    ) -> BoxFuture<'a, Result<SmallBlob, SourceError>> {
        Box::pin(async move {
            let digest = parse_digest(&req.digest).map_err(|message| SourceError::Request {
                what: format!("fetching the config {}", req.digest),
                message,
            })?;
            let (mut reader, finish) = self
                .proxy
                .get_blob(&self.img, &digest, req.size)
                .await
                .map_err(proxy_err(format!("fetching the config {}", req.digest)))?;
            let read = async {
                let mut buf = Vec::new();
                let r = (&mut reader)
                    .take(req.size.saturating_add(1))
                    .read_to_end(&mut buf)
                    .await;
                // Drain what a too-long blob has left, so the proxy can finish.
                let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                r.map(|_| buf)
            };
            let (data, fin) = futures_util::future::join(read, finish).await;
            let data = data.map_err(|source| SourceError::Io {
                what: "reading the config from skopeo",
                source,
            })?;
            Ok(SmallBlob {
                data,
                complaint: fin.err().map(|e| e.to_string()),
            })
        })
    }

    /// containers-storage keeps layers unpacked: it serves a layer only by its *uncompressed*
    /// digest (the diff_id), as an uncompressed tar, and cannot re-create the compressed blob
    /// the manifest names (c/image's storage source says as much; `skopeo copy` asks for
    /// `LayerInfosForCopy` for the same reason). So each layer is fetched by its diff_id and
    /// checked against it (both as the blob's digest and as the tar's), which is all such a
    /// source can prove. The proxy's `GetLayerInfo` (skopeo 1.10+) gives the sizes; each of its
    /// layers must be the config's diff_id at its position. Older proxies lack it: then the
    /// sizes are unknown and each blob is read to its end.
    fn uncompressed_layers<'a>(
        &'a self,
        diff_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Option<u64>>>, String>> {
        Box::pin(async move {
            if self.source.iref.transport != Transport::ContainersStorage {
                return Ok(None);
            }
            // A size the store does not know comes as -1, which the proxy crate cannot parse:
            // then the sizes are unknown, as without GetLayerInfo.
            let Ok(Some(infos)) = self.proxy.get_layer_info(&self.img).await else {
                return Ok(Some(vec![None; diff_ids.len()]));
            };
            if infos.len() != diff_ids.len() {
                return Err(format!(
                    "containers-storage lists {} layers, the config {} diff_ids",
                    infos.len(),
                    diff_ids.len()
                ));
            }
            infos
                .iter()
                .zip(diff_ids)
                .enumerate()
                .map(|(index, (info, diff_id))| {
                    if info.digest.to_string() == *diff_id {
                        Ok(Some(info.size))
                    } else {
                        Err(format!(
                            "layer {index}: containers-storage has layer {} here, not the \
                             config's diff_id {diff_id}",
                            info.digest
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        })
    }

    fn blobs<'a>(
        &'a self,
        reqs: &'a [BlobRequest],
    ) -> BoxFuture<'a, Result<Vec<BlobInput<'a>>, (usize, SourceError)>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(reqs.len());
            for (i, req) in reqs.iter().enumerate() {
                let digest = parse_digest(&req.digest).map_err(|message| {
                    let what = format!("requesting {}", req.digest);
                    (i, SourceError::Request { what, message })
                })?;
                let (reader, finish) = self
                    .proxy
                    .get_blob(&self.img, &digest, req.size)
                    .await
                    .map_err(|e| (i, proxy_err(format!("requesting {}", req.digest))(e)))?;
                out.push(BlobInput::Remote {
                    reader: Box::new(reader),
                    finish: finish.map(|r| r.map_err(|e| e.to_string())).boxed(),
                });
            }
            Ok(out)
        })
    }

    fn close<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), SourceError>>
    where
        Self: 'a,
    {
        Box::pin(async move {
            let _ = self.proxy.close_image(&self.img).await;
            self.proxy
                .finalize()
                .await
                .map_err(proxy_err("shutting down the skopeo proxy"))
        })
    }
}
