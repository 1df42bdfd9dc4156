//! `cfsctl oci push NAME docker://…`: the image exported as an OCI layout into a private
//! temporary directory (`$TMPDIR`, else `/var/tmp`), then `skopeo copy oci:TMP:push
//! docker://…` with the same TLS and credential options as the pull. The layers must be
//! re-created as tar bytes for skopeo to read (the objects are file contents, not the tar),
//! so the temporary layout holds one copy of the image (uncompressed, or as compressed with
//! `--compress`); it is removed when the push ends, however it ends.

use std::path::PathBuf;
use std::process::Command;

use cfs_repository::Repository;

use super::{Compress, ExportError, ExportResult, layout::export_to_layout};
use crate::reference::ImageRef;

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// `--tls-verify=false`.
    pub insecure_skip_tls_verification: bool,
    /// Registry credentials file (skopeo's `--dest-authfile`).
    pub authfile: Option<PathBuf>,
    /// `USER`, `PASSWORD` (written to a private temporary auth file, never on a command line).
    pub creds: Option<(String, String)>,
    /// Certificates for the registry (skopeo's `--dest-cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// How cfs writes the layers into the temporary layout; `None` leaves them uncompressed,
    /// and skopeo then compresses them with gzip, as it does for every registry.
    pub compress: Compress,
    /// Where the temporary layout goes [default: `$TMPDIR`, else `/var/tmp`].
    pub tmpdir: Option<PathBuf>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushResult {
    /// The layout written for skopeo.
    pub export: ExportResult,
    /// The manifest digest the registry stored (skopeo's `--digestfile`).
    pub pushed_digest: String,
}

/// The directory temporary layouts go in.
fn tmp_base(opts: &PushOptions) -> PathBuf {
    opts.tmpdir
        .clone()
        .or_else(|| std::env::var_os("TMPDIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// Pushes the stored image `name` to `dest` (`docker://HOST/REPO[:TAG]`).
pub fn push(
    repo: &Repository,
    name: &str,
    dest: &str,
    opts: &PushOptions,
) -> Result<PushResult, ExportError> {
    let bad = |why: String| ExportError::BadDestination {
        dest: dest.to_owned(),
        why,
    };
    if !dest.starts_with("docker://") {
        return Err(bad(
            "a push goes to docker://HOST/REPO[:TAG] (for oci: and oci-archive: use `cfsctl oci export`)"
                .into(),
        ));
    }
    let iref = ImageRef::parse(dest).map_err(|e| bad(e.to_string()))?;
    let base = tmp_base(opts);
    let tmp = tempfile::Builder::new()
        .prefix("cfs-push-")
        .tempdir_in(&base)
        .map_err(|source| ExportError::Io { path: base, source })?;
    let layout = tmp.path().join("layout");
    let export = export_to_layout(repo, name, &layout, Some("push"), opts.compress)?;
    let temp_auth = match (&opts.creds, iref.registry()) {
        (Some((user, pass)), Some(registry)) => Some(
            crate::source::skopeo::write_temp_auth(registry, user, pass)
                .map_err(|e| ExportError::Skopeo(e.to_string()))?,
        ),
        (Some(_), None) => return Err(bad("--creds needs a registry in the reference".into())),
        (None, _) => None,
    };
    let digest_file = tmp.path().join("digest");
    let mut c = Command::new("skopeo");
    c.arg("copy").arg("--quiet");
    if opts.insecure_skip_tls_verification {
        c.arg("--dest-tls-verify=false");
    }
    match (&temp_auth, &opts.authfile) {
        (Some(t), _) => {
            c.arg("--dest-authfile").arg(&t.0);
        }
        (None, Some(a)) => {
            c.arg("--dest-authfile").arg(a);
        }
        (None, None) => {}
    }
    if let Some(d) = &opts.cert_dir {
        c.arg("--dest-cert-dir").arg(d);
    }
    c.arg("--digestfile").arg(&digest_file);
    let mut src = std::ffi::OsString::from("oci:");
    src.push(&layout);
    src.push(":push");
    c.arg(src).arg(dest);
    let out = c.output().map_err(|e| {
        ExportError::Skopeo(format!(
            "cannot run skopeo: {e} (install the skopeo package)"
        ))
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim();
        let msg = msg
            .strip_prefix("time=")
            .and_then(|m| m.split_once("msg=\"").map(|(_, r)| r.trim_end_matches('"')))
            .unwrap_or(msg);
        return Err(ExportError::Skopeo(format!(
            "pushing {name} to {dest}: {}",
            if msg.is_empty() {
                format!("skopeo exited with {}", out.status)
            } else {
                msg.replace("\\\"", "\"")
            }
        )));
    }
    let pushed_digest = std::fs::read_to_string(&digest_file)
        .map_err(|source| ExportError::Io {
            path: digest_file.clone(),
            source,
        })?
        .trim()
        .to_owned();
    drop(temp_auth);
    Ok(PushResult {
        export,
        pushed_digest,
    })
}
