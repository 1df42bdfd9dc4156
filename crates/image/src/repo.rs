//! Images in a repository: storing a tree as an image, computing an image ID without a
//! repository, opening an image object after checking its digest, and the [`ImageObjects`]
//! reader gc and fsck use to find the objects an image needs.
//!
//! An image ID is the fs-verity digest (with the repository's algorithm) of the EROFS image the
//! writer produces for a tree, so the same tree always has the same ID, whatever built it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use cfs_repository::{
    FsVerityHasher, HashAlgorithm, ImageObjects, ObjectId, Repository, VerityMode,
};

use crate::erofs::{self, FormatOptions, ReadError, WriteError};
use crate::tree::FileSystem;

/// Why an image could not be stored, opened or checked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The tree cannot be written as an image.
    #[error("writing the image: {0}")]
    Write(#[from] WriteError),
    /// The image cannot be read.
    #[error("reading image {id}: {source}")]
    Read {
        /// The image.
        id: Box<ObjectId>,
        /// Why.
        source: ReadError,
    },
    /// A repository operation failed.
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
    /// Reading the image object failed.
    #[error("reading image {id}: {source}")]
    Io {
        /// The image.
        id: Box<ObjectId>,
        /// The error.
        source: std::io::Error,
    },
    /// The image object's content does not have the digest it is named by.
    #[error("image {expected} is corrupt: its content has digest {actual}")]
    DigestMismatch {
        /// The image ID asked for.
        expected: Box<ObjectId>,
        /// The digest of what is stored under that name.
        actual: Box<ObjectId>,
    },
}

/// The image ID of a tree: the fs-verity digest of its EROFS image.
pub fn image_id(
    fs: &FileSystem,
    algorithm: HashAlgorithm,
    options: FormatOptions,
) -> Result<ObjectId, WriteError> {
    let image = erofs::write(fs, options)?;
    Ok(FsVerityHasher::digest(algorithm, &image))
}

/// Writes the tree's EROFS image into the repository as an object and registers it as an
/// image; returns the image ID. The tree's external files must already be stored.
pub fn store_image(
    repo: &Repository,
    fs: &FileSystem,
    options: FormatOptions,
) -> Result<ObjectId, ImageError> {
    let image = erofs::write(fs, options)?;
    let id = repo.ensure_object(&image)?;
    repo.register_image(&id)?;
    Ok(id)
}

/// Opens a registered image (by ID or image ref name) after checking that its content has the
/// digest it is named by: measured by the kernel where verity is enforced (the repository
/// already does that when opening), re-hashed in userspace otherwise. Returns the ID and the
/// open file, positioned at the start.
pub fn open_verified_image(repo: &Repository, name: &str) -> Result<(ObjectId, File), ImageError> {
    let id = repo.resolve_image(name)?;
    let mut file = repo.open_object(&id)?;
    if repo.verity() == VerityMode::Insecure {
        let io = |source| ImageError::Io {
            id: Box::new(id),
            source,
        };
        let actual = FsVerityHasher::digest_reader(repo.algorithm(), &mut file).map_err(io)?;
        if actual != id {
            return Err(ImageError::DigestMismatch {
                expected: Box::new(id),
                actual: Box::new(actual),
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
    }
    Ok((id, file))
}

/// Reads a whole image file into memory.
pub fn read_image_file(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Finds the objects an image references by reading its EROFS, and the images mounted right
/// now (for `Repository::gc` and `Repository::fsck`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErofsImageObjects;

impl ImageObjects for ErofsImageObjects {
    fn referenced_objects(&self, image: &mut File) -> Result<Vec<ObjectId>, String> {
        let bytes = read_image_file(image).map_err(|e| format!("reading the image: {e}"))?;
        erofs::referenced_objects(&bytes).map_err(|e| e.to_string())
    }

    fn mounted_images(&self, algorithm: HashAlgorithm) -> Result<Vec<ObjectId>, String> {
        let mounted = crate::mounts::mounted_images(algorithm).map_err(|e| e.to_string())?;
        Ok(mounted.into_iter().map(|m| m.image).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cfs_repository::InitVerity;

    use super::*;
    use crate::tree::*;

    #[test]
    fn store_open_and_find_objects() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(
            &tmp.path().join("repo"),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init");
        let data = vec![9u8; 5000];
        let obj = repo.ensure_object(&data).expect("object");
        let mut fs = FileSystem::new(Stat::with_mode(0o755));
        fs.root
            .insert(
                "f",
                Inode::Leaf(Arc::new(Leaf {
                    stat: Stat::with_mode(0o644),
                    content: LeafContent::Regular(RegularFile::External(Box::new(
                        ExternalFile::object(obj, 5000),
                    ))),
                })),
            )
            .expect("insert");
        let id = store_image(&repo, &fs, FormatOptions::default()).expect("store");
        assert_eq!(
            id,
            image_id(&fs, HashAlgorithm::Sha256, FormatOptions::default()).expect("id")
        );
        repo.set_image_ref("x", &id).expect("ref");
        let (got, mut f) = open_verified_image(&repo, "x").expect("open");
        assert_eq!(got, id);
        assert_eq!(
            ErofsImageObjects
                .referenced_objects(&mut f)
                .expect("objects"),
            vec![obj]
        );
        // gc keeps the file's object because the image needs it.
        let report = repo.gc(Some(&ErofsImageObjects), false).expect("gc");
        assert!(report.objects.is_empty(), "{report:?}");
        assert!(repo.fsck(Some(&ErofsImageObjects), 1).expect("fsck").ok());

        // Replace the image object's bytes behind the repository's back.
        let path = repo.object_path(&id);
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, b"something else").expect("write");
        assert!(matches!(
            open_verified_image(&repo, &id.to_hex()),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(open_verified_image(&repo, &"00".repeat(32)).is_err());
    }
}
