//! The OCI image layout's own files, shared by `oci:` and `oci-archive:`: `oci-layout` (its
//! `imageLayoutVersion`) and `index.json`, and which index entry a reference selects, with
//! containers/image 5.23's rules (what skopeo 1.9.3 uses):
//!
//! - with a REF, the first entry whose media type is an OCI manifest or index and whose
//!   `org.opencontainers.image.ref.name` annotation is REF (entries with other media types are
//!   passed over, as c/image does);
//! - without one, the sole entry, whatever its media type; more or none is an error.
//!
//! Every error lists the refs the index has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LocalError;
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::reference::is_sha256_hex;

/// The annotation naming an index entry.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The only `imageLayoutVersion` the OCI image spec defines.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";

#[derive(Deserialize)]
struct LayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    version: Option<String>,
}

#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The index entry a reference selected: what the top-level manifest must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its media type as the index gives it (may be empty).
    pub media_type: String,
    /// The sha256 hex of its digest.
    pub hex: String,
    /// Its size.
    pub size: u64,
}

/// Checks the bytes of `oci-layout` (`path`, for messages).
pub(crate) fn check_layout_file(bytes: &[u8], path: &Path) -> Result<(), LocalError> {
    let parsed: LayoutFile = serde_json::from_slice(bytes).map_err(|e| LocalError::BadLayout {
        path: path.to_owned(),
        why: format!("not JSON: {e}"),
    })?;
    match parsed.version.as_deref() {
        Some(LAYOUT_VERSION) => Ok(()),
        Some(v) => Err(LocalError::BadLayout {
            path: path.to_owned(),
            why: format!("imageLayoutVersion {v:?} is not the supported {LAYOUT_VERSION:?}"),
        }),
        None => Err(LocalError::BadLayout {
            path: path.to_owned(),
            why: "no imageLayoutVersion".into(),
        }),
    }
}

/// Selects the entry of `index.json` (bytes; `path` for messages) that `reference` names
/// (`None`: the sole entry).
pub(crate) fn select(
    bytes: &[u8],
    path: &Path,
    reference: Option<&str>,
) -> Result<Selected, LocalError> {
    let index: IndexFile = serde_json::from_slice(bytes).map_err(|e| LocalError::BadLayout {
        path: path.to_owned(),
        why: format!("not an image index: {e}"),
    })?;
    let refs = || -> Vec<String> {
        index
            .manifests
            .iter()
            .map(|m| {
                m.annotations
                    .get(REF_NAME)
                    .map_or_else(|| format!("(unnamed {})", m.digest), Clone::clone)
            })
            .collect()
    };
    let entry = match reference {
        None => match index.manifests.as_slice() {
            [only] => only,
            _ => {
                return Err(LocalError::NotOneImage {
                    path: path.to_owned(),
                    count: index.manifests.len(),
                    refs: refs(),
                });
            }
        },
        Some(r) => {
            let named =
                |m: &&IndexEntry| m.annotations.get(REF_NAME).map(String::as_str) == Some(r);
            match index
                .manifests
                .iter()
                .filter(named)
                .find(|m| m.media_type == OCI_MANIFEST || m.media_type == OCI_INDEX)
            {
                Some(m) => m,
                None => {
                    let passed_over: Vec<String> = index
                        .manifests
                        .iter()
                        .filter(named)
                        .map(|m| m.media_type.clone())
                        .collect();
                    return Err(LocalError::RefNotFound {
                        path: path.to_owned(),
                        reference: r.to_owned(),
                        refs: refs(),
                        passed_over,
                    });
                }
            }
        }
    };
    let hex = descriptor_hex(&entry.digest, path)?;
    let size = u64::try_from(entry.size).map_err(|_| LocalError::BadLayout {
        path: path.to_owned(),
        why: format!("entry {}: negative size {}", entry.digest, entry.size),
    })?;
    Ok(Selected {
        media_type: entry.media_type.clone(),
        hex: hex.to_owned(),
        size,
    })
}

/// The hex of a `sha256:<hex>` digest found in `path`; another algorithm or a malformed digest
/// is [`LocalError::UnsupportedDigest`].
pub(crate) fn descriptor_hex<'a>(digest: &'a str, path: &Path) -> Result<&'a str, LocalError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_sha256_hex(h) => Ok(h),
        _ => Err(LocalError::UnsupportedDigest {
            path: path.to_owned(),
            digest: digest.to_owned(),
        }),
    }
}

/// Splits `DIR[:REF]` as containers/image does on Linux: at the *first* `:` (so a path cannot
/// contain one); an empty REF is no REF. REF must match c/image's reference grammar.
pub(crate) fn split_reference(details: &str) -> Result<(PathBuf, Option<String>), LocalError> {
    let (path, reference) = match details.split_once(':') {
        Some((p, r)) => (p, (!r.is_empty()).then(|| r.to_owned())),
        None => (details, None),
    };
    if path.is_empty() {
        return Err(LocalError::BadReference {
            details: details.to_owned(),
            why: "no path before the ':'".into(),
        });
    }
    if let Some(r) = &reference
        && !valid_ref_name(r)
    {
        return Err(LocalError::BadReference {
            details: details.to_owned(),
            why: format!(
                "invalid image reference {r:?} (components of letters and digits joined by \
                 one of - . _ : @ + or --, separated by /)"
            ),
        });
    }
    Ok((PathBuf::from(path), reference))
}

/// containers/image's `oci/internal` grammar for a REF: `/`-separated components, each runs of
/// ASCII letters/digits joined by a single `-._:@+` or by `--`.
pub(crate) fn valid_ref_name(r: &str) -> bool {
    r.split('/').all(|component| {
        let b = component.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let run = b[i..]
                .iter()
                .take_while(|c| !c.is_ascii_alphanumeric())
                .count();
            let sep = &b[i..i + run];
            if !(sep == b"--" || (run == 1 && b"-._:@+".contains(&sep[0]))) {
                return false;
            }
            i += run;
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_the_c_image_grammar() {
        for ok in [
            "latest",
            "debian-small",
            "a--b",
            "a:b",
            "x/y.z",
            "v1.0@x+y",
            "A_b",
        ] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a---b", "a//b", "/a", "a b", "a..b", "ä", "a/",
        ] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_first_colon_splits_path_and_ref() {
        let (p, r) = split_reference("/a/b:c:d").expect("ok");
        assert_eq!(p, Path::new("/a/b"));
        assert_eq!(r.as_deref(), Some("c:d"));
        let (p, r) = split_reference("/a/b:").expect("ok");
        assert_eq!((p.as_path(), r), (Path::new("/a/b"), None));
        assert!(split_reference(":x").is_err());
        assert!(split_reference("/a:bad ref").is_err());
    }

    #[test]
    fn selection_rules() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let idx = serde_json::json!({"manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": d('1'), "size": 1, "annotations": {REF_NAME: "a"}},
            {"mediaType": OCI_MANIFEST, "digest": d('2'), "size": 2,
             "annotations": {REF_NAME: "a"}},
            {"mediaType": OCI_INDEX, "digest": d('3'), "size": 3,
             "annotations": {REF_NAME: "a"}},
            {"mediaType": OCI_MANIFEST, "digest": d('4'), "size": 4,
             "annotations": {REF_NAME: "docker"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": d('5'), "size": 5, "annotations": {REF_NAME: "only-docker"}},
        ]});
        let bytes = serde_json::to_vec(&idx).expect("json");
        let p = Path::new("index.json");
        // The first OCI-typed entry named REF wins; the Docker-typed one before it is skipped.
        assert_eq!(select(&bytes, p, Some("a")).expect("a").hex, "2".repeat(64));
        let e = select(&bytes, p, Some("only-docker")).expect_err("skipped");
        let msg = e.to_string();
        assert!(
            msg.contains("only-docker") && msg.contains("docker.distribution"),
            "{msg}"
        );
        let msg = select(&bytes, p, Some("nope"))
            .expect_err("missing")
            .to_string();
        assert!(msg.contains("\"nope\"") && msg.contains("docker"), "{msg}");
        let msg = select(&bytes, p, None).expect_err("5 entries").to_string();
        assert!(
            msg.contains("5 entries") && msg.contains("only-docker"),
            "{msg}"
        );
    }
}
