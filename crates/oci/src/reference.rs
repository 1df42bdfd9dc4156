//! Image references in skopeo's syntax (`TRANSPORT:DETAILS`), checked before anything is
//! fetched, and the default local name an image gets when pulled without one.
//!
//! The transport decides how the rest is read, as in containers/image:
//! `docker://[HOST/]REPO[:TAG][@DIGEST]`, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`, `dir:DIR`,
//! `docker-archive:FILE[:NAME:TAG|:@INDEX]`, `containers-storage:[[STORE]]NAME`,
//! `docker-daemon:NAME`. For the path transports the first `:` after the transport ends the path.

use std::fmt;

/// A reference that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// No `TRANSPORT:` prefix (e.g. `debian:12`).
    #[error("image {0:?} names no transport; did you mean docker://{0}?")]
    NoTransport(String),
    /// Something after the transport that cannot be right.
    #[error("image {image:?}: {why}")]
    Invalid {
        /// The reference as given.
        image: String,
        /// What is wrong.
        why: String,
    },
    /// No name could be derived; the caller must give one.
    #[error("cannot derive a local name from {0:?}; give one: cfsctl oci pull IMAGE NAME")]
    NoDefaultName(String),
}

/// A skopeo transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `docker://`: a registry.
    Docker,
    /// `oci:`: an OCI image layout directory.
    Oci,
    /// `oci-archive:`: a tar of an OCI image layout.
    OciArchive,
    /// `dir:`: skopeo's directory format.
    Dir,
    /// `docker-archive:`: `docker save` output.
    DockerArchive,
    /// `containers-storage:`: podman's local storage.
    ContainersStorage,
    /// `docker-daemon:`: a Docker daemon.
    DockerDaemon,
}

impl Transport {
    const ALL: [(Transport, &'static str); 7] = [
        (Transport::Docker, "docker"),
        (Transport::Oci, "oci"),
        (Transport::OciArchive, "oci-archive"),
        (Transport::Dir, "dir"),
        (Transport::DockerArchive, "docker-archive"),
        (Transport::ContainersStorage, "containers-storage"),
        (Transport::DockerDaemon, "docker-daemon"),
    ];

    /// The transport's name as skopeo spells it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("docker")
    }
}

/// A parsed registry reference: `domain/path[:tag][@digest]`, normalised as podman does
/// (`debian` → `docker.io/library/debian`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/debian`.
    pub path: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest (`sha256:<hex>`), if given.
    pub digest: Option<String>,
}

impl DockerRef {
    /// Parses `[HOST/]REPO[:TAG][@DIGEST]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' of the last path component.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(t[1..].to_owned()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(format!("invalid tag {t:?}"));
            }
        }
        if name.is_empty() {
            return Err("no repository name".into());
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let path_ok = path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !path_ok {
            return Err(format!(
                "invalid repository name {path:?} (lowercase letters, digits, '.', '_', '-' and '/')"
            ));
        }
        if domain.is_empty() || domain.contains(['@', ' ']) {
            return Err(format!("invalid registry {domain:?}"));
        }
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path:tag`, `domain/path@digest`, or `domain/path:latest`.
    pub fn default_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}/{}:{t}", self.domain, self.path),
            (None, Some(d)) => format!("{}/{}@{d}", self.domain, self.path),
            (None, None) => format!("{}/{}:latest", self.domain, self.path),
        }
    }

    /// `domain/path@digest` (the same repository, pinned to a digest).
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.domain, self.path)
    }
}

fn check_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(()),
        _ => Err(format!(
            "unsupported digest {d:?} (expected sha256:<64 lowercase hex digits>)"
        )),
    }
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An image reference, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The transport.
    pub transport: Transport,
    /// Everything after `TRANSPORT:` (after `docker://` for docker).
    pub details: String,
    /// For `docker://` (and a `docker-archive:` name): the parsed registry reference.
    pub docker: Option<DockerRef>,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Docker => write!(f, "docker://{}", self.details),
            t => write!(f, "{}:{}", t.name(), self.details),
        }
    }
}

impl ImageRef {
    /// Parses a skopeo image reference.
    pub fn parse(image: &str) -> Result<Self, ReferenceError> {
        let invalid = |why: String| ReferenceError::Invalid {
            image: image.to_owned(),
            why,
        };
        let Some((prefix, details)) = image.split_once(':') else {
            return Err(ReferenceError::NoTransport(image.to_owned()));
        };
        let Some(&(transport, _)) = Transport::ALL.iter().find(|(_, n)| *n == prefix) else {
            return Err(ReferenceError::NoTransport(image.to_owned()));
        };
        let mut docker = None;
        let details = match transport {
            Transport::Docker => {
                let Some(rest) = details.strip_prefix("//") else {
                    return Err(invalid(
                        "docker references are written docker://NAME".into(),
                    ));
                };
                docker = Some(DockerRef::parse(rest).map_err(invalid)?);
                rest.to_owned()
            }
            Transport::DockerArchive => {
                if let Some((_, name)) = details.split_once(':')
                    && !name.starts_with('@')
                    && !name.is_empty()
                {
                    docker = Some(DockerRef::parse(name).map_err(invalid)?);
                }
                details.to_owned()
            }
            _ => details.to_owned(),
        };
        if details.is_empty() {
            return Err(invalid("nothing after the transport".into()));
        }
        Ok(Self {
            transport,
            details,
            docker,
        })
    }

    /// The digest a `docker://…@sha256:…` reference is pinned to.
    pub fn pinned_digest(&self) -> Option<&str> {
        match self.transport {
            Transport::Docker => self.docker.as_ref().and_then(|d| d.digest.as_deref()),
            _ => None,
        }
    }

    /// The registry host, for `--creds`.
    pub fn registry(&self) -> Option<&str> {
        match self.transport {
            Transport::Docker => self.docker.as_ref().map(|d| d.domain.as_str()),
            _ => None,
        }
    }

    /// The same image pinned to another manifest digest, where the transport can say so
    /// (`docker://` only).
    pub fn pinned_to(&self, digest: &str) -> Option<String> {
        match (self.transport, &self.docker) {
            (Transport::Docker, Some(d)) => Some(format!("docker://{}", d.with_digest(digest))),
            _ => None,
        }
    }

    /// The local name the image gets when none is given: the registry reference
    /// (`docker.io/library/debian:12`), the tag of an `oci:`/`oci-archive:` reference, or the
    /// last component of the path.
    pub fn default_name(&self) -> Result<String, ReferenceError> {
        let none = || ReferenceError::NoDefaultName(self.to_string());
        let basename = |path: &str| -> Result<String, ReferenceError> {
            let trimmed = path.trim_end_matches('/');
            let base = trimmed.rsplit('/').next().unwrap_or(trimmed);
            let base = base
                .strip_suffix(".tar")
                .or_else(|| base.strip_suffix(".tgz"))
                .or_else(|| base.strip_suffix(".tar.gz"))
                .unwrap_or(base);
            if base.is_empty() || base.starts_with('.') {
                return Err(none());
            }
            Ok(base.to_owned())
        };
        let name = match self.transport {
            Transport::Docker => self
                .docker
                .as_ref()
                .map(DockerRef::default_name)
                .ok_or_else(none)?,
            Transport::Oci | Transport::OciArchive => match self.details.split_once(':') {
                Some((_, r)) if !r.is_empty() => r.to_owned(),
                Some((p, _)) => basename(p)?,
                None => basename(&self.details)?,
            },
            Transport::Dir => basename(&self.details)?,
            Transport::DockerArchive => match &self.docker {
                Some(d) => d.default_name(),
                None => basename(self.details.split(':').next().unwrap_or(&self.details))?,
            },
            Transport::ContainersStorage => {
                let s = match self.details.strip_prefix('[') {
                    Some(r) => r.split_once(']').map(|(_, n)| n).unwrap_or(r),
                    None => &self.details,
                };
                match DockerRef::parse(s) {
                    Ok(d) => d.default_name(),
                    Err(_) => s.to_owned(),
                }
            }
            Transport::DockerDaemon => match DockerRef::parse(&self.details) {
                Ok(d) => d.default_name(),
                Err(_) => self.details.clone(),
            },
        };
        if cfs_repository::names::check_ref_name(&name).is_err() {
            return Err(none());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        assert!(matches!(
            ImageRef::parse("debian:12"),
            Err(ReferenceError::NoTransport(_))
        ));
        assert!(matches!(
            ImageRef::parse("localhost:5000/x"),
            Err(ReferenceError::NoTransport(_))
        ));
        let msg = ImageRef::parse("debian").expect_err("error").to_string();
        assert!(msg.contains("docker://debian"), "{msg}");
        assert!(ImageRef::parse("docker:debian").is_err());
        let r = ImageRef::parse("oci:/a/b:tag").expect("ok");
        assert_eq!(r.transport, Transport::Oci);
        assert_eq!(r.to_string(), "oci:/a/b:tag");
        assert_eq!(r.default_name().expect("ok"), "tag");
        assert_eq!(
            ImageRef::parse("oci:/a/layout")
                .expect("ok")
                .default_name()
                .expect("ok"),
            "layout"
        );
        assert_eq!(
            ImageRef::parse("oci-archive:/a/img.tar")
                .expect("ok")
                .default_name()
                .expect("ok"),
            "img"
        );
        assert_eq!(
            ImageRef::parse("dir:/a/d/")
                .expect("ok")
                .default_name()
                .expect("ok"),
            "d"
        );
        assert_eq!(
            ImageRef::parse("docker-archive:/x/a.tar:foo/bar:1")
                .expect("ok")
                .default_name()
                .expect("ok"),
            "docker.io/foo/bar:1"
        );
        assert!(
            ImageRef::parse("dir:/")
                .expect("ok")
                .default_name()
                .is_err()
        );
    }

    #[test]
    fn docker_refs() {
        let r = ImageRef::parse("docker://debian").expect("ok");
        assert_eq!(
            r.default_name().expect("ok"),
            "docker.io/library/debian:latest"
        );
        let r = ImageRef::parse("docker://localhost:5000/a/b:v1").expect("ok");
        assert_eq!(r.registry(), Some("localhost:5000"));
        assert_eq!(r.default_name().expect("ok"), "localhost:5000/a/b:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("docker://quay.io/x/y@{d}")).expect("ok");
        assert_eq!(r.pinned_digest(), Some(d.as_str()));
        assert_eq!(r.default_name().expect("ok"), format!("quay.io/x/y@{d}"));
        assert_eq!(
            r.pinned_to("sha256:00").expect("ok"),
            "docker://quay.io/x/y@sha256:00"
        );
        assert!(ImageRef::parse("docker://x@sha256:abc").is_err());
        assert!(ImageRef::parse("docker://UPPER/case").is_err());
        assert!(ImageRef::parse("docker://x:bad tag").is_err());
    }
}
