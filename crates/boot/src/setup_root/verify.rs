//! Checking, before anything is mounted, that the repository on the physical root holds the
//! image the kernel command line names, as a regular file with exactly that fs-verity digest.
//!
//! - The repository is cfs's (`meta.json`), opened without following symlinks in its layout.
//! - `images/<hex>` must exist and be the link cfs writes, `../objects/XX/<rest>`; anything
//!   else (a link pointing elsewhere, e.g. out of the repository) is refused. The link is never
//!   followed: the image is opened as `objects/XX/<rest>` (no symlink, a regular file).
//! - Its digest is measured: by the kernel (`FS_IOC_MEASURE_VERITY`) in an enforced repository,
//!   by hashing the file in userspace in an insecure one, so that a replaced EROFS image is
//!   refused there too. The descriptor measured is the one mounted.

use std::fs::File;
use std::path::{Path, PathBuf};

use cfs_image::repo::{ImageError, open_verified_image};
use cfs_repository::{Error as RepoError, ObjectId, Repository};

/// Why the image cannot be mounted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No usable repository at the path.
    #[error("cannot open the repository {path}: {source}")]
    Repository {
        /// `<sysroot>/composefs`.
        path: PathBuf,
        /// Why.
        source: RepoError,
    },
    /// The repository has no image of that ID.
    #[error(
        "image {id} (named on the kernel command line) is not in the repository {repo}: \
         there is no images/{id}"
    )]
    UnknownImage {
        /// The image ID (hex).
        id: String,
        /// The repository.
        repo: PathBuf,
    },
    /// `images/<hex>` does not point at the object of that ID.
    #[error(
        "{repo}/images/{id} points to {target:?}, not to its object {expected:?}: refusing \
         (the link is never followed)"
    )]
    BadLink {
        /// The image ID (hex).
        id: String,
        /// The repository.
        repo: PathBuf,
        /// The link's target.
        target: String,
        /// The target cfs writes.
        expected: String,
    },
    /// The image file's digest is not the ID.
    #[error(
        "the image file of {id} in {repo} has fs-verity digest {actual}, not the {id} the \
         kernel command line names: refusing a replaced or corrupt image"
    )]
    DigestMismatch {
        /// The image ID (hex).
        id: String,
        /// The repository.
        repo: PathBuf,
        /// What its content measures to (hex).
        actual: String,
    },
    /// The image file cannot be opened or measured (not a regular file, no fs-verity in an
    /// enforced repository, an I/O error).
    #[error("cannot use the image file of {id} in {repo}: {source}")]
    Image {
        /// The image ID (hex).
        id: String,
        /// The repository.
        repo: PathBuf,
        /// Why.
        source: ImageError,
    },
}

/// Opens the repository at `path` (`<sysroot>/composefs`).
pub fn open_repository(path: &Path) -> Result<Repository, VerifyError> {
    Repository::open(path).map_err(|source| VerifyError::Repository {
        path: path.to_owned(),
        source,
    })
}

/// Opens image `id` of `repo` after the checks above; returns the file, positioned at 0.
pub fn open_image(repo: &Repository, id: &ObjectId) -> Result<File, VerifyError> {
    let hex = id.to_hex();
    let repo_path = || repo.path().to_owned();
    let target = repo
        .image_link_target(id)
        .map_err(|source| VerifyError::Image {
            id: hex.clone(),
            repo: repo_path(),
            source: source.into(),
        })?
        .ok_or_else(|| VerifyError::UnknownImage {
            id: hex.clone(),
            repo: repo_path(),
        })?;
    let expected = format!("../objects/{}", id.object_path());
    if target != expected {
        return Err(VerifyError::BadLink {
            id: hex,
            repo: repo_path(),
            target,
            expected,
        });
    }
    match open_verified_image(repo, &hex) {
        Ok((_, file)) => Ok(file),
        Err(ImageError::DigestMismatch { actual, .. })
        | Err(ImageError::Repository(RepoError::CorruptObject { actual, .. })) => {
            Err(VerifyError::DigestMismatch {
                id: hex,
                repo: repo_path(),
                actual: actual.to_hex(),
            })
        }
        Err(ImageError::Repository(RepoError::NotFound { .. })) => Err(VerifyError::UnknownImage {
            id: hex,
            repo: repo_path(),
        }),
        Err(source) => Err(VerifyError::Image {
            id: hex,
            repo: repo_path(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use cfs_repository::{HashAlgorithm, InitVerity};

    use super::*;

    fn repo_with_image() -> (tempfile::TempDir, Repository, ObjectId) {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(
            &tmp.path().join("composefs"),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init");
        // Any bytes do: nothing here parses the image.
        let id = repo.ensure_object(&[7u8; 10000]).expect("object");
        repo.register_image(&id).expect("register");
        (tmp, repo, id)
    }

    fn object_file(repo: &Repository, id: &ObjectId) -> PathBuf {
        repo.path().join("objects").join(id.object_path())
    }

    fn replace(path: &Path, with: impl FnOnce(&Path)) {
        std::fs::remove_file(path).expect("rm");
        with(path);
    }

    #[test]
    fn opens_a_registered_image() {
        let (_tmp, repo, id) = repo_with_image();
        let file = open_image(&repo, &id).expect("open");
        assert_eq!(file.metadata().expect("stat").len(), 10000);
    }

    #[test]
    fn refuses_a_missing_repository() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("composefs");
        let Err(err) = open_repository(&path) else {
            panic!("opened a missing repository");
        };
        assert!(
            err.to_string()
                .starts_with(&format!("cannot open the repository {}", path.display())),
            "{err}"
        );
        std::fs::create_dir(&path).expect("mkdir");
        let Err(err) = open_repository(&path) else {
            panic!("opened an empty directory as a repository");
        };
        assert!(err.to_string().contains("not a cfs repository"), "{err}");
    }

    #[test]
    fn refuses_an_unknown_image() {
        let (_tmp, repo, _) = repo_with_image();
        let other = ObjectId::from_bytes(HashAlgorithm::Sha256, &[3; 32]).expect("id");
        let err = open_image(&repo, &other).expect_err("unknown");
        assert!(matches!(err, VerifyError::UnknownImage { .. }), "{err}");
        assert!(err.to_string().contains(&other.to_hex()), "{err}");
        // An object that is not registered as an image is not an image either.
        let object = repo.ensure_object(&[8u8; 5000]).expect("object");
        let err = open_image(&repo, &object).expect_err("not an image");
        assert!(matches!(err, VerifyError::UnknownImage { .. }), "{err}");
        // An image link whose object is gone.
        let (_tmp, repo, id) = repo_with_image();
        std::fs::remove_file(object_file(&repo, &id)).expect("rm");
        let err = open_image(&repo, &id).expect_err("object gone");
        assert!(matches!(err, VerifyError::UnknownImage { .. }), "{err}");
    }

    #[test]
    fn refuses_a_link_that_leaves_the_object_store() {
        for target in [
            "/etc/passwd".to_owned(),
            "../../outside".to_owned(),
            "../objects/../meta.json".to_owned(),
        ] {
            let (_tmp, repo, id) = repo_with_image();
            replace(&repo.path().join("images").join(id.to_hex()), |p| {
                symlink(&target, p).expect("symlink")
            });
            let err = open_image(&repo, &id).expect_err(&target);
            assert!(
                matches!(err, VerifyError::BadLink { .. }),
                "{target}: {err}"
            );
            assert!(err.to_string().contains(&target), "{err}");
        }
        // Not a link at all: a regular file or directory named like the image.
        let (_tmp, repo, id) = repo_with_image();
        replace(&repo.path().join("images").join(id.to_hex()), |p| {
            std::fs::write(p, b"x").expect("write")
        });
        let err = open_image(&repo, &id).expect_err("file");
        assert!(matches!(err, VerifyError::UnknownImage { .. }), "{err}");
    }

    #[test]
    fn refuses_an_image_that_is_not_a_regular_file() {
        let (tmp, repo, id) = repo_with_image();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, [7u8; 10000]).expect("write");
        let object = object_file(&repo, &id);
        type Make<'a> = Box<dyn Fn(&Path) + 'a>;
        let cases: [(&str, Make); 3] = [
            (
                "symlink",
                Box::new(|p: &Path| symlink(&outside, p).expect("symlink")),
            ),
            (
                "directory",
                Box::new(|p: &Path| std::fs::create_dir(p).expect("mkdir")),
            ),
            (
                "fifo",
                Box::new(|p: &Path| {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        p,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o644),
                        0,
                    )
                    .expect("mkfifo")
                }),
            ),
        ];
        for (what, make) in cases {
            if object.is_dir() {
                std::fs::remove_dir(&object).expect("rmdir");
            } else {
                std::fs::remove_file(&object).expect("rm");
            }
            make(&object);
            let err = open_image(&repo, &id).expect_err(what);
            assert!(matches!(err, VerifyError::Image { .. }), "{what}: {err}");
            assert!(
                err.to_string().contains("not a regular file"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_replaced_image_in_an_insecure_repository() {
        let (_tmp, repo, id) = repo_with_image();
        let object = object_file(&repo, &id);
        replace(&object, |p| std::fs::write(p, [9u8; 10000]).expect("write"));
        let err = open_image(&repo, &id).expect_err("replaced");
        let VerifyError::DigestMismatch { actual, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            *actual,
            cfs_repository::FsVerityHasher::digest(HashAlgorithm::Sha256, &[9u8; 10000]).to_hex()
        );
        assert!(err.to_string().contains("replaced or corrupt"), "{err}");
    }
}
