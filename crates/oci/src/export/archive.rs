//! `oci-archive:FILE[:TAG]` as a destination: a tar of an OCI image layout (`oci-layout`,
//! `blobs/sha256/…`, `index.json` last), as skopeo writes it. The archive is written to a
//! temporary file next to FILE and renamed over it once complete and fsynced (an existing FILE
//! is replaced, as skopeo does; a killed export leaves FILE as it was). Uncompressed layers
//! stream from the splitstream straight into the archive (their size is known up front);
//! a recompressed layer's size is known only once compressed, so it is compressed into an
//! anonymous temporary file next to FILE first, then copied in.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    Blob, Compress, ExportError, ExportResult, Fill, Hashing, add_to_index, check_written,
    new_index,
};

fn io_std(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A tar being written.
struct ArchiveSink {
    out: BufWriter<File>,
    /// The temporary archive (for messages).
    path: PathBuf,
    /// Where spooled layers go.
    dir: PathBuf,
    written: HashSet<String>,
}

impl ArchiveSink {
    fn header(&mut self, name: &str, size: u64, dir: bool) -> Result<(), ExportError> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).map_err(io_std(&self.path))?;
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(io_std(&self.path))
    }

    fn pad(&mut self, size: u64) -> Result<(), ExportError> {
        let rem = usize::try_from(size % 512).unwrap_or(0);
        if rem != 0 {
            self.out
                .write_all(&[0u8; 512][rem..])
                .map_err(io_std(&self.path))?;
        }
        Ok(())
    }

    fn file(&mut self, name: &str, data: &[u8]) -> Result<(), ExportError> {
        self.header(name, data.len() as u64, false)?;
        self.out.write_all(data).map_err(io_std(&self.path))?;
        self.pad(data.len() as u64)
    }
}

impl super::Sink for ArchiveSink {
    fn has(&mut self, blob: &Blob) -> Result<bool, ExportError> {
        Ok(self.written.contains(&blob.hex))
    }

    fn put(&mut self, blob: &Blob, what: &str, fill: &mut Fill<'_>) -> Result<(), ExportError> {
        self.header(&format!("blobs/sha256/{}", blob.hex), blob.size, false)?;
        let mut w = Hashing::new(&mut self.out);
        fill(&mut w)?;
        let (hex, count) = (w.hex(), w.count);
        // A wrong size would make the rest of the archive unreadable: refuse it whole.
        check_written(what, blob, hex, count)?;
        self.pad(blob.size)?;
        self.written.insert(blob.hex.clone());
        Ok(())
    }

    fn put_new(&mut self, what: &str, fill: &mut Fill<'_>) -> Result<(Blob, bool), ExportError> {
        let spool = tempfile::tempfile_in(&self.dir).map_err(io_std(&self.dir))?;
        let mut w = Hashing::new(BufWriter::with_capacity(1 << 20, spool));
        fill(&mut w)?;
        let blob = Blob {
            hex: w.hex(),
            size: w.count,
        };
        let mut spool = w
            .inner
            .into_inner()
            .map_err(|e| io_std(&self.dir)(e.into_error()))?;
        if self.written.contains(&blob.hex) {
            return Ok((blob, true));
        }
        spool.seek(SeekFrom::Start(0)).map_err(io_std(&self.dir))?;
        self.header(&format!("blobs/sha256/{}", blob.hex), blob.size, false)?;
        let n = std::io::copy(&mut (&mut spool).take(blob.size), &mut self.out)
            .map_err(io_std(&self.path))?;
        if n != blob.size {
            return Err(ExportError::Size {
                what: what.to_owned(),
                expected: blob.size,
                actual: n,
            });
        }
        self.pad(blob.size)?;
        self.written.insert(blob.hex.clone());
        Ok((blob, false))
    }
}

/// Removes the temporary archive unless it was renamed into place.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Exports `name` as the archive `file` (replaced if it exists), tagged `tag`.
pub fn export_to_archive(
    repo: &cfs_repository::Repository,
    name: &str,
    file: &Path,
    tag: Option<&str>,
    compress: Compress,
) -> Result<ExportResult, ExportError> {
    let file_name = file
        .file_name()
        .ok_or_else(|| ExportError::BadDestination {
            dest: file.display().to_string(),
            why: "no file name".into(),
        })?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.cfs-tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_std(&tmp))?;
    let mut guard = Cleanup(Some(tmp.clone()));
    let mut sink = ArchiveSink {
        out: BufWriter::with_capacity(1 << 20, out),
        path: tmp.clone(),
        dir: dir.clone(),
        written: HashSet::new(),
    };
    sink.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    sink.header("blobs/", 0, true)?;
    sink.header("blobs/sha256/", 0, true)?;
    let (result, entry) = super::write_image(repo, name, tag, compress, &mut sink)?;
    let mut index = new_index();
    add_to_index(&mut index, &entry).map_err(|why| ExportError::BadLayout {
        path: tmp.clone(),
        why,
    })?;
    let index = serde_json::to_vec(&index).map_err(|e| ExportError::BadLayout {
        path: tmp.clone(),
        why: e.to_string(),
    })?;
    sink.file("index.json", &index)?;
    sink.out.write_all(&[0u8; 1024]).map_err(io_std(&tmp))?;
    let out = sink
        .out
        .into_inner()
        .map_err(|e| io_std(&tmp)(e.into_error()))?;
    out.sync_all().map_err(io_std(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, file).map_err(io_std(file))?;
    guard.0 = None;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_std(&dir))?;
    Ok(result)
}
