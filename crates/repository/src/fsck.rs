//! Consistency check: every object re-hashed against its name, every splitstream decoded and
//! its references checked, every ref and image link resolved. Problems are collected, not
//! fatal, so one run reports all of them.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::os::fd::AsFd;

use rustix::fs::FileType;
use rustix::io::Errno;
use serde::Serialize;

use crate::digest::ObjectId;
use crate::error::{IoContext, Result};
use crate::fsverity::{self, FsVerityHasher};
use crate::gc::ImageObjects;
use crate::layout;
use crate::links::RefWalk;
use crate::repository::{Repository, VerityMode};
use crate::splitstream::SplitStreamReader;

/// One thing fsck found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The path, relative to the repository, of what is wrong.
    pub path: String,
    /// A short machine-readable kind: `corrupt-object`, `bad-stream`, `missing-object`,
    /// `missing-stream`, `dangling-ref`, `bad-link`, `bad-image`, `stray-file`,
    /// `damaged-layout`, `not-regular-object`, `stray-entry`, `bad-ref`.
    pub kind: &'static str,
    /// What is wrong, for humans.
    pub message: String,
}

/// The result of [`Repository::fsck`].
#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    /// Objects re-hashed.
    pub objects: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Streams decoded.
    pub streams: usize,
    /// Refs resolved.
    pub refs: usize,
    /// Images checked.
    pub images: usize,
    /// Everything found wrong (empty when the repository is sound).
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Whether no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(
        &mut self,
        path: impl Into<String>,
        kind: &'static str,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path: path.into(),
            kind,
            message: message.into(),
        });
    }
}

impl Repository {
    /// Checks the whole repository; `threads` hash objects in parallel (0 = all cores).
    pub fn fsck(&self, images: Option<&dyn ImageObjects>, threads: usize) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let objects = self.all_objects()?;
        self.check_stray_files(&mut report)?;
        self.check_objects(&objects, threads, &mut report);
        let present: HashSet<ObjectId> = objects.iter().map(|(id, _)| *id).collect();
        let corrupt: HashSet<String> = report.problems.iter().map(|p| p.path.clone()).collect();
        let exists = |id: &ObjectId| {
            present.contains(id) && !corrupt.contains(&format!("objects/{}", id.object_path()))
        };

        // Streams: link → object, then full decode. Entries that are not links are strays.
        let mut stream_names = Vec::new();
        for e in self.list_dir(self.streams_dir())? {
            if e.name == "refs" && e.kind == FileType::Directory || e.name.starts_with('.') {
                continue;
            }
            if !e.utf8 || e.kind != FileType::Symlink {
                report.problem(
                    format!("streams/{}", e.name),
                    "stray-entry",
                    format!("{} among the stream links", layout::describe(e.kind)),
                );
                continue;
            }
            stream_names.push(e.name);
        }
        for cid in &stream_names {
            report.streams += 1;
            let path = format!("streams/{cid}");
            let id = match self.read_link(self.streams_dir(), cid) {
                Ok(Some(t)) => match self.object_from_link(&t, "streams", cid) {
                    Ok(id) => id,
                    Err(e) => {
                        report.problem(&path, "bad-link", e.to_string());
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    report.problem(&path, "bad-link", e.to_string());
                    continue;
                }
            };
            if !present.contains(&id) {
                report.problem(
                    &path,
                    "missing-object",
                    format!("stream object {id} is missing"),
                );
                continue;
            }
            self.check_stream(cid, &id, &exists, &mut report);
        }

        // Refs.
        let walk = self.walk_refs(self.streams_dir())?;
        self.report_ref_strays(&walk, &mut report);
        for r in walk.refs {
            report.refs += 1;
            if !stream_names.contains(&r.target) || self.stream_object(&r.target)?.is_none() {
                report.problem(
                    format!("streams/refs/{}", r.name),
                    "dangling-ref",
                    format!(
                        "ref {} points to stream {}, which does not exist",
                        r.name, r.target
                    ),
                );
            }
        }

        // Images.
        for e in self.list_dir(self.images_dir())? {
            if e.name == "refs" && e.kind == FileType::Directory || e.name.starts_with('.') {
                continue;
            }
            if !e.utf8 || e.kind != FileType::Symlink {
                report.problem(
                    format!("images/{}", e.name),
                    "stray-entry",
                    format!("{} among the image links", layout::describe(e.kind)),
                );
            } else if ObjectId::parse_for(self.algorithm(), &e.name).is_err() {
                report.problem(
                    format!("images/{}", e.name),
                    "stray-entry",
                    "a link whose name is not an image id of the repository's algorithm",
                );
            }
        }
        let image_ids = self.list_images()?;
        for id in &image_ids {
            report.images += 1;
            let path = format!("images/{}", id.to_hex());
            match self.read_link(self.images_dir(), &id.to_hex()) {
                Ok(Some(t)) => match self.object_from_link(&t, "images", &id.to_hex()) {
                    Ok(target) if target == *id => {}
                    Ok(target) => {
                        report.problem(
                            &path,
                            "bad-link",
                            format!("points to object {target}, not {id}"),
                        );
                        continue;
                    }
                    Err(e) => {
                        report.problem(&path, "bad-link", e.to_string());
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    report.problem(&path, "bad-link", e.to_string());
                    continue;
                }
            }
            if !exists(id) {
                report.problem(
                    &path,
                    "missing-object",
                    format!("image object {id} is missing or corrupt"),
                );
                continue;
            }
            if let Some(reader) = images {
                let refs = self
                    .open_object(id)
                    .map_err(|e| e.to_string())
                    .and_then(|mut f| reader.referenced_objects(&mut f));
                match refs {
                    Ok(objs) => {
                        for o in objs {
                            if !exists(&o) {
                                report.problem(
                                    &path,
                                    "missing-object",
                                    format!("image needs object {o}, which is missing or corrupt"),
                                );
                            }
                        }
                    }
                    Err(m) => report.problem(&path, "bad-image", m),
                }
            }
        }
        let walk = self.walk_refs(self.images_dir())?;
        self.report_ref_strays(&walk, &mut report);
        for r in walk.refs {
            report.refs += 1;
            let ok = ObjectId::parse_for(self.algorithm(), &r.target)
                .map(|id| image_ids.contains(&id))
                .unwrap_or(false);
            if !ok {
                report.problem(
                    format!("images/refs/{}", r.name),
                    "dangling-ref",
                    format!(
                        "ref {} points to image {}, which does not exist",
                        r.name, r.target
                    ),
                );
            }
        }
        report
            .problems
            .sort_by(|a, b| a.path.cmp(&b.path).then(a.kind.cmp(b.kind)));
        Ok(report)
    }

    fn report_ref_strays(&self, walk: &RefWalk, report: &mut FsckReport) {
        for (path, what) in &walk.strays {
            report.problem(path, "stray-entry", format!("{what} among the refs"));
        }
        for (path, target) in &walk.bad {
            report.problem(
                path,
                "bad-ref",
                format!(
                    "points to {target:?}: a ref must point straight at a stream or image \
                     (not at another ref, itself, or out of its directory)"
                ),
            );
        }
    }

    /// Everything in `objects/` that is not an object: names that are not digests,
    /// `objects/XX` that are symlinks or not directories, object paths that are not regular
    /// files. Read through descriptors: nothing is followed.
    fn check_stray_files(&self, report: &mut FsckReport) -> Result<()> {
        for d in self.list_dir(&self.objects)? {
            let dname = d.name.as_str();
            if d.kind == FileType::Symlink || (d.kind != FileType::Directory && is_xx(dname)) {
                report.problem(
                    format!("objects/{dname}"),
                    "damaged-layout",
                    format!(
                        "{}, not an object directory (not followed)",
                        layout::describe(d.kind)
                    ),
                );
                continue;
            }
            if !d.utf8 || d.kind != FileType::Directory || !is_xx(dname) {
                report.problem(
                    format!("objects/{dname}"),
                    "stray-file",
                    "not an object directory",
                );
                continue;
            }
            let path = self.path().join("objects").join(dname);
            let fd = match layout::open_dir_beneath(self.objects.fd.as_fd(), dname) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e).ctx("opening", path),
            };
            for e in layout::list(fd.as_fd()).ctx("reading", &path)? {
                let rest = e.name.as_str();
                let valid = e.utf8
                    && ObjectId::from_object_path(dname, rest)
                        .map(|id| id.algorithm() == self.algorithm())
                        .unwrap_or(false);
                if !valid {
                    report.problem(
                        format!("objects/{dname}/{rest}"),
                        "stray-file",
                        "name is not a digest of the repository's algorithm",
                    );
                } else if e.kind != FileType::RegularFile {
                    report.problem(
                        format!("objects/{dname}/{rest}"),
                        "not-regular-object",
                        format!(
                            "{}, not a regular file (not opened)",
                            layout::describe(e.kind)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_objects(&self, objects: &[(ObjectId, u64)], threads: usize, report: &mut FsckReport) {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let next = AtomicUsize::new(0);
        let found = Mutex::new(Vec::new());
        let bytes = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads.min(objects.len().max(1)) {
                s.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((id, _)) = objects.get(i) else { break };
                        let path = format!("objects/{}", id.object_path());
                        match self.rehash(id, &mut buf) {
                            Ok((actual, n)) => {
                                bytes.fetch_add(n, Ordering::Relaxed);
                                if actual != *id {
                                    let p = (
                                        path,
                                        "corrupt-object",
                                        format!("content hashes to {actual}"),
                                    );
                                    found.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                                }
                            }
                            Err(m) => {
                                found.lock().unwrap_or_else(|e| e.into_inner()).push((
                                    path,
                                    "corrupt-object",
                                    m,
                                ));
                            }
                        }
                    }
                });
            }
        });
        report.objects = objects.len();
        report.bytes = bytes.into_inner();
        for (p, k, m) in found.into_inner().unwrap_or_else(|e| e.into_inner()) {
            report.problem(p, k, m);
        }
    }

    /// Re-hashes an object's content (and, when enforced, compares the kernel's measurement).
    fn rehash(
        &self,
        id: &ObjectId,
        buf: &mut [u8],
    ) -> std::result::Result<(ObjectId, u64), String> {
        let mut f = std::fs::File::from(self.open_object_fd(id).map_err(|e| e.to_string())?);
        if self.verity() == VerityMode::Enforced {
            match fsverity::measure_verity(&f, self.algorithm()) {
                Ok(m) if m == *id => {}
                Ok(m) => return Err(format!("kernel measures {m}")),
                Err(e) => return Err(format!("fs-verity: {e}")),
            }
        }
        let mut h = FsVerityHasher::new(self.algorithm());
        loop {
            match f.read(buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
        let n = h.size();
        Ok((h.finalize(), n))
    }

    fn check_stream(
        &self,
        cid: &str,
        id: &ObjectId,
        exists: &dyn Fn(&ObjectId) -> bool,
        report: &mut FsckReport,
    ) {
        let path = format!("streams/{cid}");
        let file = match self.open_object_fd(id) {
            Ok(f) => std::fs::File::from(f),
            Err(e) => {
                report.problem(&path, "bad-stream", format!("opening object {id}: {e}"));
                return;
            }
        };
        let mut reader =
            match SplitStreamReader::new(std::io::BufReader::new(file), self.algorithm(), cid) {
                Ok(r) => r,
                Err(e) => {
                    report.problem(&path, "bad-stream", e.to_string());
                    return;
                }
            };
        for o in &reader.header().objects {
            if !exists(o) {
                report.problem(
                    &path,
                    "missing-object",
                    format!("references object {o}, which is missing or corrupt"),
                );
            }
        }
        for s in &reader.header().streams {
            let ok = matches!(self.stream_object(&s.content_id), Ok(Some(_))) && exists(&s.object);
            if !ok {
                report.problem(
                    &path,
                    "missing-stream",
                    format!(
                        "names stream {} ({}), which is missing",
                        s.name, s.content_id
                    ),
                );
            }
        }
        let mut buf = Vec::new();
        loop {
            match reader.next_chunk(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    report.problem(&path, "bad-stream", e.to_string());
                    break;
                }
            }
        }
    }
}

/// Whether `name` is a two-hex-digit object directory name.
fn is_xx(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
