//! Planning the root mount, without I/O: the kernel command line and what the repository is
//! (algorithm, verity mode) decide which image is mounted and whether the kernel must verify
//! it. Every refusal that needs no file is made here.

use std::path::{Path, PathBuf};

use cfs_repository::{HashAlgorithm, ObjectId, VerityMode};

use crate::karg::{self, ComposefsKarg, KargError};

/// What planning needs to know about the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoFacts {
    /// The repository's hash algorithm: it picks which `composefs.digest=` is used.
    pub algorithm: HashAlgorithm,
    /// Whether the repository's objects have fs-verity.
    pub verity: VerityMode,
}

/// The decided root mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The kernel argument used.
    pub karg: ComposefsKarg,
    /// Mount with `verity=require`: always for an enforced repository (its objects all have
    /// fs-verity, so also a `?` argument gets the stronger check), never for an insecure one
    /// (only reached with a `?` argument).
    pub require_verity: bool,
}

impl Plan {
    /// The image to mount.
    pub fn image(&self) -> ObjectId {
        self.karg.id
    }
}

/// Why no root can be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No usable composefs argument (missing, or malformed).
    #[error(transparent)]
    Karg(#[from] KargError),
    /// The argument demands verity but the repository cannot give it.
    #[error(
        "the kernel argument {karg} requires fs-verity, but the repository {repo} is insecure \
         (its objects have no fs-verity): refusing to mount it unverified (an insecure \
         repository boots only with `?` after `=`, e.g. {insecure})"
    )]
    InsecureRepository {
        /// The argument, as found.
        karg: String,
        /// The repository.
        repo: PathBuf,
        /// The same argument with `?`.
        insecure: String,
    },
}

/// Plans the root mount of the repository `repo` (for messages) described by `facts`, from
/// the kernel command line `cmdline`.
pub fn plan(cmdline: &str, repo: &Path, facts: RepoFacts) -> Result<Plan, PlanError> {
    let karg = karg::find(cmdline, facts.algorithm)?;
    match facts.verity {
        VerityMode::Enforced => Ok(Plan {
            karg,
            require_verity: true,
        }),
        VerityMode::Insecure if karg.insecure => Ok(Plan {
            karg,
            require_verity: false,
        }),
        VerityMode::Insecure => Err(PlanError::InsecureRepository {
            karg: karg.to_string(),
            repo: repo.to_owned(),
            insecure: ComposefsKarg {
                insecure: true,
                ..karg
            }
            .to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::karg::ErofsFormat;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn facts(verity: VerityMode) -> RepoFacts {
        RepoFacts {
            algorithm: HashAlgorithm::Sha256,
            verity,
        }
    }

    fn id() -> ObjectId {
        ObjectId::parse_for(HashAlgorithm::Sha256, HEX).expect("id")
    }

    fn repo() -> &'static Path {
        Path::new("/sysroot/composefs")
    }

    #[test]
    fn enforced_repository_requires_verity_with_or_without_question_mark() {
        for cmdline in [
            format!("root=/dev/vda rw composefs.digest=v1-sha256-12:{HEX} quiet"),
            format!("composefs.digest=?v1-sha256-12:{HEX}"),
            format!("composefs={HEX}"),
        ] {
            let p = plan(&cmdline, repo(), facts(VerityMode::Enforced)).expect(&cmdline);
            assert!(p.require_verity, "{cmdline}");
            assert_eq!(p.image(), id());
        }
    }

    #[test]
    fn the_repository_algorithm_picks_the_argument() {
        let hex512 = "ab".repeat(64);
        let cmdline =
            format!("composefs.digest=v1-sha256-12:{HEX} composefs.digest=v1-sha512-12:{hex512}");
        let p = plan(
            &cmdline,
            repo(),
            RepoFacts {
                algorithm: HashAlgorithm::Sha512,
                verity: VerityMode::Enforced,
            },
        )
        .expect("sha512");
        assert_eq!(p.image().to_hex(), hex512);
        let p = plan(&cmdline, repo(), facts(VerityMode::Enforced)).expect("sha256");
        assert_eq!(p.image(), id());
    }

    #[test]
    fn insecure_repository_needs_the_question_mark() {
        let p = plan(
            &format!("rw composefs.digest=?v1-sha256-12:{HEX}"),
            repo(),
            facts(VerityMode::Insecure),
        )
        .expect("insecure karg");
        assert!(!p.require_verity);
        assert_eq!(p.karg.format, ErofsFormat::V1);
        let p = plan(
            &format!("composefs=?{HEX}"),
            repo(),
            facts(VerityMode::Insecure),
        )
        .expect("insecure shorthand");
        assert!(!p.require_verity);

        for cmdline in [
            format!("composefs.digest=v1-sha256-12:{HEX}"),
            format!("composefs={HEX}"),
        ] {
            let err = plan(&cmdline, repo(), facts(VerityMode::Insecure)).expect_err(&cmdline);
            let msg = err.to_string();
            assert!(
                matches!(err, PlanError::InsecureRepository { .. }),
                "{cmdline}: {msg}"
            );
            assert!(msg.contains("/sysroot/composefs is insecure"), "{msg}");
            assert!(msg.contains(&format!("={HEX}")) || msg.contains(&format!(":{HEX}")));
            assert!(msg.contains("=?"), "{msg}");
        }
    }

    #[test]
    fn refuses_missing_and_malformed_arguments() {
        let cases = [
            ("root=/dev/vda rw quiet", "no composefs argument"),
            ("", "no composefs argument"),
            // Only a sha512 argument on a sha256 repository: none for this repository.
            (
                "composefs.digest=v1-sha512-12:00",
                "no composefs argument for a sha256",
            ),
            (
                "composefs.digest=v1-sha256-12:zz",
                "invalid composefs.digest",
            ),
            (
                "composefs.digest=v1-sha256-12:0123",
                "invalid composefs.digest",
            ),
            (
                "composefs.digest=v3-sha256-12:00",
                "unsupported format version",
            ),
            ("composefs.digest=v1-sha256-16:00", "block size"),
            ("composefs.digest=v1-md5-12:00", "invalid composefs.digest"),
            ("composefs.digest=sha256:00", "invalid composefs.digest"),
            ("composefs=nothex", "invalid composefs="),
            ("composefs=", "invalid composefs="),
        ];
        for (cmdline, expected) in cases {
            for verity in [VerityMode::Enforced, VerityMode::Insecure] {
                let err = plan(cmdline, repo(), facts(verity)).expect_err(cmdline);
                assert!(matches!(err, PlanError::Karg(_)), "{cmdline}: {err}");
                let msg = err.to_string();
                assert!(msg.contains(expected), "{cmdline}: {msg}");
                assert!(!msg.contains('\n'), "one line: {msg}");
            }
        }
    }
}
