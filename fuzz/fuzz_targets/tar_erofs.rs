//! Fuzz target: the whole path from a layer to a mounted image's metadata. Arbitrary tar bytes
//! are split into a repository, read back as entries, merged into a tree (the OCI layer
//! merge), written as a composefs EROFS image and read back. Every step may refuse its input
//! with an error; but once the writer returns an image, the reader must give back exactly the
//! tree that was written: the same files, contents, metadata and xattrs (so no xattr can be
//! forged, lost or truncated on the way), and the objects the tree's files are stored in.

#![no_main]

use std::sync::OnceLock;

use cfs_image::{FormatOptions, Inode, LeafContent, RegularFile, erofs, tree::FileSystem};
use cfs_oci::{tar, tree};
use cfs_repository::{HashAlgorithm, InitVerity, ObjectId, Repository};
use libfuzzer_sys::fuzz_target;

/// One insecure repository for the whole run: under `$CFS_FUZZ_TMP` (set by `cargo xtask
/// fuzz`, which removes it afterwards), else on tmpfs when there is one.
fn repo() -> &'static Repository {
    static REPO: OnceLock<Repository> = OnceLock::new();
    REPO.get_or_init(|| {
        let base = if let Some(dir) = std::env::var_os("CFS_FUZZ_TMP") {
            std::path::PathBuf::from(dir)
        } else if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("cfs-fuzz-tar-erofs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Repository::init(&dir, HashAlgorithm::Sha256, InitVerity::Insecure).expect("init repo")
    })
}

/// The xattrs the reader interprets when undoing the overlayfs rewrite: a layer's own
/// `trusted.overlay.whiteout(s)`/`opaque` or `user.overlay.whiteout(s)`/`opaque` are stored
/// escaped (as mkcomposefs does) and mount as the layer said, but the reader cannot tell them
/// from the markers the writer adds for a whiteout. Trees holding them are compared through
/// the writer's own parse-back check only.
fn reader_ambiguous(fs: &FileSystem) -> bool {
    const NAMES: &[&[u8]] = &[
        b"trusted.overlay.whiteout",
        b"trusted.overlay.whiteouts",
        b"trusted.overlay.opaque",
        b"user.overlay.whiteout",
        b"user.overlay.whiteouts",
        b"user.overlay.opaque",
    ];
    let mut found = fs.root.stat.xattrs.keys().any(|k| NAMES.contains(&&k[..]));
    fs.walk(|_, inode| {
        let stat = match inode {
            Inode::Directory(d) => &d.stat,
            Inode::Leaf(l) => &l.stat,
        };
        found |= stat.xattrs.keys().any(|k| NAMES.contains(&&k[..]));
    });
    found
}

/// The objects the tree's external files are stored in.
fn tree_objects(fs: &FileSystem) -> Vec<ObjectId> {
    let mut out = Vec::new();
    fs.walk(|_, inode| {
        if let Inode::Leaf(l) = inode
            && let LeafContent::Regular(RegularFile::External(ext)) = &l.content
            && let Some(d) = ext.digest
        {
            out.push(d);
        }
    });
    out.sort();
    out.dedup();
    out
}

fuzz_target!(|data: &[u8]| {
    let repo = repo();
    let Ok(id) = tar::split(repo, data) else {
        return;
    };
    let stream = repo.open_stream_object(&id).expect("open the new stream");
    let Ok(entries) = tar::entries(repo, stream) else {
        return;
    };
    let Ok(layer) = entries.collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let mut fs = tree::empty_tree();
    if tree::merge_layer(repo, &mut fs, &layer).is_err() {
        return;
    }
    for options in [FormatOptions::default(), FormatOptions::exactly(0)] {
        let Ok(image) = erofs::write(&fs, options) else {
            continue;
        };
        let back = erofs::read(&image).expect("the reader reads what the writer wrote");
        if !reader_ambiguous(&fs) {
            assert!(back == fs, "the image does not read back as the tree");
        }
        let objects = erofs::referenced_objects(&image).expect("objects of a written image");
        assert_eq!(objects, tree_objects(&fs), "the image's objects are the tree's");
    }
});
