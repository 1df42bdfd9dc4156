//! `oci:DIR[:REF]`: an OCI image layout directory. `oci-layout` must say version 1.0.0,
//! `index.json` selects the entry ([`super::index`]), blobs are `blobs/sha256/<hex>`, all
//! opened beneath DIR without following a symlink ([`super::fsutil`]).

use std::path::PathBuf;

use super::fsutil::{Root, read_whole};
use super::index::{Selected, check_layout_file, select, split_reference};
use super::{BlobInner, LocalError, MAX_MANIFEST};

/// An opened layout.
pub(crate) struct Layout {
    root: Root,
    selected: Selected,
}

impl Layout {
    pub(crate) fn open(details: &str) -> Result<Self, LocalError> {
        let (path, reference) = split_reference(details)?;
        let root = Root::open(&path)?;
        let layout = read_small(&root, "oci-layout")?;
        check_layout_file(&layout, &root.display("oci-layout"))?;
        let index = read_small(&root, "index.json")?;
        let selected = select(&index, &root.display("index.json"), reference.as_deref())?;
        Ok(Self { root, selected })
    }

    pub(crate) fn selected(&self) -> &Selected {
        &self.selected
    }

    fn rel(hex: &str) -> String {
        format!("blobs/sha256/{hex}")
    }

    pub(crate) fn blob_location(&self, hex: &str) -> PathBuf {
        self.root.display(&Self::rel(hex))
    }

    pub(crate) fn read_blob(&self, hex: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        let rel = Self::rel(hex);
        let (file, len) = self
            .root
            .open_file(&rel)?
            .ok_or_else(|| LocalError::Missing {
                path: self.root.display(&rel),
            })?;
        read_whole(file, len, max, &self.root.display(&rel))
    }

    pub(crate) fn open_blob(&self, hex: &str, size: u64) -> Result<BlobInner, LocalError> {
        open_exact(&self.root, &Self::rel(hex), size)
    }
}

/// Reads one of the layout's own small files (`oci-layout`, `index.json`; also `dir:`'s).
pub(crate) fn read_small(root: &Root, name: &str) -> Result<Vec<u8>, LocalError> {
    let path = root.display(name);
    let (file, len) = root
        .open_file(name)?
        .ok_or_else(|| LocalError::Missing { path: path.clone() })?;
    read_whole(file, len, MAX_MANIFEST, &path)
}

/// Opens the regular file `rel` below `root` for streaming, checking that it holds exactly
/// `size` bytes (a missing file and a size mismatch are errors naming the path).
pub(super) fn open_exact(root: &Root, rel: &str, size: u64) -> Result<BlobInner, LocalError> {
    let path = root.display(rel);
    let (file, len) = root
        .open_file(rel)?
        .ok_or_else(|| LocalError::Missing { path: path.clone() })?;
    if len != size {
        return Err(LocalError::SizeMismatch {
            path,
            expected: size,
            actual: len,
        });
    }
    Ok(BlobInner::File {
        file,
        remaining: size,
        path,
    })
}
