//! Consistency check: every object re-hashed against its name, every splitstream decoded and
//! its references checked, every ref and image link resolved. Problems are collected, not
//! fatal, so one run reports all of them.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::digest::ObjectId;
use crate::error::{IoContext, Result};
use crate::fsverity::{self, FsVerityHasher};
use crate::gc::ImageObjects;
use crate::repository::{Repository, VerityMode};
use crate::splitstream::SplitStreamReader;

/// One thing fsck found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The path, relative to the repository, of what is wrong.
    pub path: String,
    /// A short machine-readable kind: `corrupt-object`, `bad-stream`, `missing-object`,
    /// `missing-stream`, `dangling-ref`, `bad-link`, `bad-image`, `stray-file`.
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

    fn problem(&mut self, path: impl Into<String>, kind: &'static str, message: impl Into<String>) {
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

        // Streams: link → object, then full decode.
        let mut stream_names = Vec::new();
        for name in std::fs::read_dir(self.path().join("streams"))
            .ctx("reading", self.path().join("streams"))?
        {
            let name = name.ctx("reading", self.path().join("streams"))?;
            let n = name.file_name().to_string_lossy().into_owned();
            if n != "refs" && !n.starts_with('.') {
                stream_names.push(n);
            }
        }
        stream_names.sort();
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
        for r in self.list_stream_refs()? {
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
        for r in self.list_image_refs()? {
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

    fn check_stray_files(&self, report: &mut FsckReport) -> Result<()> {
        let base = self.path().join("objects");
        for d in std::fs::read_dir(&base).ctx("reading", &base)? {
            let d = d.ctx("reading", &base)?;
            let dname = d.file_name().to_string_lossy().into_owned();
            let is_dir = d.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if dname.len() != 2 || !is_dir || !dname.bytes().all(|b| b.is_ascii_hexdigit()) {
                report.problem(
                    format!("objects/{dname}"),
                    "stray-file",
                    "not an object directory",
                );
                continue;
            }
            for e in std::fs::read_dir(d.path()).ctx("reading", d.path())? {
                let e = e.ctx("reading", d.path())?;
                let rest = e.file_name().to_string_lossy().into_owned();
                let valid = ObjectId::from_object_path(&dname, &rest)
                    .map(|id| id.algorithm() == self.algorithm())
                    .unwrap_or(false);
                if !valid {
                    report.problem(
                        format!("objects/{dname}/{rest}"),
                        "stray-file",
                        "name is not a digest of the repository's algorithm",
                    );
                } else if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    report.problem(
                        format!("objects/{dname}/{rest}"),
                        "stray-file",
                        "not a regular file",
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
        let path = self.object_path(id);
        let mut f = std::fs::File::open(&path).map_err(|e| format!("opening: {e}"))?;
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
        let file = match std::fs::File::open(self.object_path(id)) {
            Ok(f) => f,
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
