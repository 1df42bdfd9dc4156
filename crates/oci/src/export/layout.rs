//! `oci:DIR[:TAG]` as a destination: an OCI image layout created or added to. Other images of
//! an existing layout are kept; blobs already there (regular files of the right size) are not
//! rewritten. Durable and kill-safe: each blob is written to a temporary file in
//! `blobs/sha256/`, hashed as written, fsynced and renamed to its digest; `index.json` is
//! replaced atomically (temporary file, fsync, rename, directory fsync) only after every blob
//! it names is durable. The layout is `flock`ed while it is changed (two cfs exports into one
//! layout do not lose each other's index entries). Nothing inside DIR is followed: `blobs/`
//! and `blobs/sha256/` are opened beneath DIR without symlinks, files `O_NOFOLLOW`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::{
    Blob, Compress, ExportError, ExportResult, Fill, Hashing, IndexEntry, Sink, add_to_index,
    check_written, new_index,
};
use crate::local::MAX_MANIFEST;
use crate::local::fsutil::{Root, open_dir_beneath, read_whole};
use crate::local::index::check_layout_file;

/// Temporary files of an export start with this (removed by the next export into the layout).
const TMP_PREFIX: &str = ".cfs-tmp-";

fn io_at(path: &Path) -> impl Fn(Errno) -> ExportError + '_ {
    move |e| ExportError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn io_std(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `name` in `dir` if missing and opens it (never through a symlink).
fn subdir(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<(OwnedFd, bool), ExportError> {
    let created = match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(io_at(path)(e)),
    };
    match open_dir_beneath(dir, name) {
        Ok(fd) => Ok((fd, created)),
        Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR) => Err(ExportError::BadLayout {
            path: path.to_owned(),
            why: "is not a directory (a symlink is not followed)".into(),
        }),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Writes `data` as `name` in `dir` atomically (temporary file, fsync, rename).
fn replace_file(
    dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
    path: &Path,
) -> Result<(), ExportError> {
    let tmp = format!("{TMP_PREFIX}{}-{name}", std::process::id());
    let mut f = create_tmp(dir, &tmp, path)?;
    let res = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_std(path))
        .and_then(|()| rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(io_at(path)));
    if res.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    res
}

fn create_tmp(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<File, ExportError> {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(io_at(path))?;
    Ok(File::from(fd))
}

/// Blobs written into `blobs/sha256/`.
struct LayoutSink {
    blobs: OwnedFd,
    path: PathBuf,
    n: u64,
}

impl LayoutSink {
    fn blob_path(&self, hex: &str) -> PathBuf {
        self.path.join(hex)
    }

    fn tmp_name(&mut self) -> String {
        self.n += 1;
        format!("{TMP_PREFIX}{}-{}", std::process::id(), self.n)
    }

    /// Writes a temporary file with `fill` and returns it with what was hashed.
    fn write_tmp(&mut self, fill: &mut Fill<'_>) -> Result<(String, String, u64), ExportError> {
        let tmp = self.tmp_name();
        let tmp_path = self.path.join(&tmp);
        let file = create_tmp(self.blobs.as_fd(), &tmp, &tmp_path)?;
        let mut w = Hashing::new(BufWriter::with_capacity(1 << 20, file));
        let res = fill(&mut w);
        let (hex, count) = (w.hex(), w.count);
        let res = res.and_then(|()| {
            let file = w
                .inner
                .into_inner()
                .map_err(|e| io_std(&tmp_path)(e.into_error()))?;
            file.sync_all().map_err(io_std(&tmp_path))
        });
        if let Err(e) = res {
            let _ = rustix::fs::unlinkat(&self.blobs, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok((tmp, hex, count))
    }

    fn rename(&self, tmp: &str, hex: &str) -> Result<(), ExportError> {
        rustix::fs::renameat(&self.blobs, tmp, &self.blobs, hex).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.blobs, tmp, AtFlags::empty());
            io_at(&self.blob_path(hex))(e)
        })
    }

    /// Removes temporary files left by an export that was killed (we hold the layout's lock).
    fn clean(&self) -> Result<(), ExportError> {
        let dir = rustix::fs::Dir::read_from(&self.blobs).map_err(io_at(&self.path))?;
        for entry in dir {
            let entry = entry.map_err(io_at(&self.path))?;
            let name = entry.file_name().to_bytes();
            if name.starts_with(TMP_PREFIX.as_bytes()) {
                // Best effort: a leftover that cannot be removed is never named, only wasted.
                let _ = rustix::fs::unlinkat(&self.blobs, entry.file_name(), AtFlags::empty());
            }
        }
        Ok(())
    }
}

impl Sink for LayoutSink {
    fn has(&mut self, blob: &Blob) -> Result<bool, ExportError> {
        match rustix::fs::statat(&self.blobs, blob.hex.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && u64::try_from(st.st_size).is_ok_and(|s| s == blob.size)),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_at(&self.blob_path(&blob.hex))(e)),
        }
    }

    fn put(&mut self, blob: &Blob, what: &str, fill: &mut Fill<'_>) -> Result<(), ExportError> {
        let (tmp, hex, count) = self.write_tmp(fill)?;
        if let Err(e) = check_written(what, blob, hex, count) {
            let _ = rustix::fs::unlinkat(&self.blobs, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        self.rename(&tmp, &blob.hex)
    }

    fn put_new(&mut self, _what: &str, fill: &mut Fill<'_>) -> Result<(Blob, bool), ExportError> {
        let (tmp, hex, size) = self.write_tmp(fill)?;
        let blob = Blob { hex, size };
        let existed = self.has(&blob)?;
        if existed {
            let _ = rustix::fs::unlinkat(&self.blobs, tmp.as_str(), AtFlags::empty());
        } else {
            self.rename(&tmp, &blob.hex)?;
        }
        Ok((blob, existed))
    }
}

/// Exports `name` into the layout `dir` (created if missing), tagged `tag`.
pub fn export_to_layout(
    repo: &cfs_repository::Repository,
    name: &str,
    dir: &Path,
    tag: Option<&str>,
    compress: Compress,
) -> Result<ExportResult, ExportError> {
    std::fs::create_dir_all(dir).map_err(io_std(dir))?;
    let root = Root::open(dir).map_err(|e| ExportError::BadLayout {
        path: dir.to_owned(),
        why: e.to_string(),
    })?;
    let root_fd = crate::local::fsutil::open_root_dir(dir).map_err(|e| ExportError::BadLayout {
        path: dir.to_owned(),
        why: e.to_string(),
    })?;
    rustix::fs::flock(&root_fd, FlockOperation::LockExclusive).map_err(io_at(dir))?;
    let local = |e: crate::local::LocalError| ExportError::BadLayout {
        path: dir.to_owned(),
        why: e.to_string(),
    };
    let layout_file = match root.open_file("oci-layout").map_err(local)? {
        Some((f, len)) => Some(read_whole(f, len, 4096, &dir.join("oci-layout")).map_err(local)?),
        None => None,
    };
    match &layout_file {
        Some(bytes) => check_layout_file(bytes, &dir.join("oci-layout")).map_err(local)?,
        None => replace_file(
            root_fd.as_fd(),
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
            &dir.join("oci-layout"),
        )?,
    }
    let index_path = dir.join("index.json");
    let mut index = match root.open_file("index.json").map_err(local)? {
        Some((f, len)) => {
            let raw = read_whole(f, len, MAX_MANIFEST, &index_path).map_err(local)?;
            let v: serde_json::Value =
                serde_json::from_slice(&raw).map_err(|e| ExportError::BadLayout {
                    path: index_path.clone(),
                    why: format!("not JSON: {e}"),
                })?;
            v
        }
        None => new_index(),
    };
    let (blobs, created_blobs) = subdir(root_fd.as_fd(), "blobs", &dir.join("blobs"))?;
    let (sha, created_sha) = subdir(blobs.as_fd(), "sha256", &dir.join("blobs/sha256"))?;
    let mut sink = LayoutSink {
        blobs: sha,
        path: dir.join("blobs/sha256"),
        n: 0,
    };
    sink.clean()?;
    let (result, entry) = super::write_image(repo, name, tag, compress, &mut sink)?;
    // The blobs' names are durable before the index names them.
    rustix::fs::fsync(&sink.blobs).map_err(io_at(&sink.path))?;
    if created_sha {
        rustix::fs::fsync(&blobs).map_err(io_at(&dir.join("blobs")))?;
    }
    if created_blobs {
        rustix::fs::fsync(&root_fd).map_err(io_at(dir))?;
    }
    update_index(&mut index, &entry, &index_path)?;
    let bytes = serde_json::to_vec(&index).map_err(|e| ExportError::BadLayout {
        path: index_path.clone(),
        why: e.to_string(),
    })?;
    replace_file(root_fd.as_fd(), "index.json", &bytes, &index_path)?;
    rustix::fs::fsync(&root_fd).map_err(io_at(dir))?;
    Ok(result)
}

fn update_index(
    index: &mut serde_json::Value,
    entry: &IndexEntry,
    path: &Path,
) -> Result<(), ExportError> {
    add_to_index(index, entry).map_err(|why| ExportError::BadLayout {
        path: path.to_owned(),
        why,
    })
}
