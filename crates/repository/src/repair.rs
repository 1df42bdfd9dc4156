//! `fsck --repair`: makes a damaged repository consistent again so that the next pull restores
//! what was lost. Corrupt objects are removed (an insecure repository trusts names on reuse, so
//! a corrupt object left in place would be reused by the next pull), then every stream and
//! image link that needs a removed, missing or corrupt object — directly or through another
//! stream — is removed too. A pull whose config stream is gone fetches the image again and
//! re-creates exactly those objects and streams. Refs are kept: they say what to re-pull; until
//! then fsck reports them as dangling.
//!
//! What is not part of the repository's shape is taken out, never followed: a layout
//! directory that is a symlink or not a directory is unlinked (the link or file itself) and
//! recreated empty ([`Repository::repair_layout`], before the repository can be opened);
//! strays among the links and refs, refs that do not point straight at a stream or image,
//! object paths that are not regular files and `objects/XX` that are not directories are moved
//! into `tmp/` and removed there through descriptors.

use std::collections::BTreeSet;

use serde::Serialize;

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::fsck::{FsckReport, Problem};
use crate::gc::ImageObjects;
use crate::layout::{self, LAYOUT_DIRS};
use crate::lock::{LockMode, RepoLock};
use crate::repository::Repository;

/// What [`Repository::repair`] did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// The fsck report before repairing.
    pub before: FsckReport,
    /// Corrupt objects removed (paths relative to the repository).
    pub objects: Vec<String>,
    /// Stream links removed (content ids).
    pub streams: Vec<String>,
    /// Image links removed.
    pub images: Vec<String>,
    /// Refs whose stream or image is now gone: re-pull (or re-create) these.
    pub refs: Vec<String>,
    /// Layout directories replaced by empty ones (a symlink or non-directory was there).
    pub layout: Vec<String>,
    /// Stray entries, malformed refs, non-regular object paths and damaged object
    /// directories removed (paths relative to the repository).
    pub strays: Vec<String>,
}

/// Problem kinds whose entry is removed as it is.
const STRAY: &[&str] = &[
    "stray-entry",
    "bad-ref",
    "not-regular-object",
    "damaged-layout",
];

/// Problem kinds that make a stream or image unusable.
const BROKEN: &[&str] = &[
    "missing-object",
    "missing-stream",
    "bad-stream",
    "bad-link",
    "bad-image",
];

impl Repository {
    /// Checks the repository like [`Repository::fsck`], then removes corrupt objects and every
    /// stream and image link that depends on something missing or corrupt. Holds the
    /// repository exclusively (waits for writers, as gc does).
    pub fn repair(
        &self,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<RepairReport> {
        self.lock_exclusive()?;
        let result = self.repair_locked(images, threads);
        self.lock_shared()?;
        result
    }

    fn repair_locked(
        &self,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<RepairReport> {
        let before = self.fsck(images, threads)?;
        let mut out = RepairReport::default();
        let mut broken_streams = BTreeSet::new();
        let mut broken_images = BTreeSet::new();
        for p in &before.problems {
            if STRAY.contains(&p.kind) {
                out.strays.push(p.path.clone());
            } else if p.kind == "corrupt-object" {
                out.objects.push(p.path.clone());
            } else if BROKEN.contains(&p.kind) {
                if let Some(cid) = p.path.strip_prefix("streams/")
                    && !cid.starts_with("refs/")
                {
                    broken_streams.insert(cid.to_owned());
                } else if let Some(id) = p.path.strip_prefix("images/")
                    && !id.starts_with("refs/")
                {
                    broken_images.insert(id.to_owned());
                }
            }
        }
        // Streams that name a broken stream are broken too (a config stream whose layer is
        // gone would let the next pull take the warm path): propagate to a fixed point.
        let streams = self.list_streams()?;
        loop {
            let mut grew = false;
            for (cid, id) in &streams {
                if broken_streams.contains(cid) {
                    continue;
                }
                let Ok(reader) = self.open_stream_object(id) else {
                    broken_streams.insert(cid.clone());
                    grew = true;
                    continue;
                };
                if reader
                    .header()
                    .streams
                    .iter()
                    .any(|s| broken_streams.contains(&s.content_id))
                {
                    broken_streams.insert(cid.clone());
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        // Names first, then objects: no name ever points at a removed object. Strays in
        // objects/ are no object anyone can use, so they go first too.
        for rel in &out.strays {
            self.remove_entry(rel)?;
        }
        // Strays whose names are not UTF-8 are reported under a lossy name that finds nothing:
        // they are removed by their raw names.
        self.remove_non_utf8_strays()?;
        for cid in &broken_streams {
            if self.remove_stream_link(cid)? {
                out.streams.push(cid.clone());
            }
        }
        for id in &broken_images {
            if self.remove_image_link(id)? {
                out.images.push(id.clone());
            }
        }
        // The links' removal is durable before the corrupt objects go.
        self.sync_link_dirs()?;
        for rel in &out.objects {
            crate::fault::point();
            self.remove_entry(rel)?;
        }
        if !out.objects.is_empty() {
            self.sync()?;
        }
        for r in self.list_stream_refs()? {
            if broken_streams.contains(&r.target) {
                out.refs.push(format!("streams/refs/{}", r.name));
            }
        }
        for r in self.list_image_refs()? {
            if broken_images.contains(&r.target) {
                out.refs.push(format!("images/refs/{}", r.name));
            }
        }
        out.before = before;
        Ok(out)
    }

    /// Removes every entry whose name is not UTF-8 from `streams/` and `images/` (with their
    /// `refs/` trees) and `objects/` with each `objects/XX`: cfs never writes such a name, so
    /// each is a stray. Walked through descriptors, never following a symlink.
    fn remove_non_utf8_strays(&self) -> Result<()> {
        for (top, recurse) in [
            (&self.streams, true),
            (&self.images, true),
            (&self.objects, false),
        ] {
            let base = self.path().join(top.rel);
            layout::walk(top.fd.as_fd(), &base, |fd, rel, entries| {
                let mut subdirs = Vec::new();
                for e in entries {
                    if !e.utf8 {
                        self.move_aside_raw(fd, &e.raw, &base.join(rel).join(&e.name))?;
                    } else if e.kind == FileType::Directory
                        && (recurse || (rel.is_empty() && e.name.len() == 2))
                    {
                        subdirs.push(e.name);
                    }
                }
                Ok(subdirs)
            })?;
        }
        Ok(())
    }

    /// Takes `rel` (`objects/ab/cd…`, `streams/x`, `images/refs/a/b`) out of the repository:
    /// its parent opened without following a symlink, the entry moved into `tmp/` and removed
    /// there. Gone already is fine.
    fn remove_entry(&self, rel: &str) -> Result<()> {
        let Some((top, rest)) = rel.split_once('/') else {
            return Ok(());
        };
        let dir = match top {
            "objects" => &self.objects,
            "streams" => &self.streams,
            "images" => &self.images,
            _ => return Ok(()),
        };
        let (parent, name) = match layout::open_parent(dir.fd.as_fd(), rest) {
            Ok(p) => p,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e).ctx("opening", self.path().join(rel)),
        };
        self.move_aside(parent.as_fd(), name, rel)
    }

    /// fsck of the repository at `path`. If its layout is damaged (see
    /// [`Error::DamagedLayout`]) it cannot be opened: the report lists the damaged entries.
    pub fn fsck_path(
        path: &Path,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<FsckReport> {
        match Self::open(path) {
            Ok(repo) => repo.fsck(images, threads),
            Err(Error::DamagedLayout { .. }) => {
                let mut report = FsckReport::default();
                for (problem, _) in layout_damage(path, false)? {
                    report.problems.push(problem);
                }
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    /// `fsck --repair` of the repository at `path`: first [`Repository::repair_layout`], then
    /// [`Repository::repair`]; the layout problems are part of the report.
    pub fn repair_path(
        path: &Path,
        images: Option<&dyn ImageObjects>,
        threads: usize,
    ) -> Result<RepairReport> {
        let fixed = layout_damage(path, true)?;
        let repo = Self::open(path)?;
        let mut report = repo.repair(images, threads)?;
        let mut problems = Vec::new();
        for (problem, done) in fixed {
            report.layout.push(format!("{}: {done}", problem.path));
            problems.push(problem);
        }
        problems.append(&mut report.before.problems);
        report.before.problems = problems;
        Ok(report)
    }

    /// Replaces every layout directory that is a symlink or not a directory by an empty
    /// directory (the symlink or file itself is unlinked, never followed) and creates missing
    /// ones, holding the lock exclusively; returns what it did, one line per entry.
    pub fn repair_layout(path: &Path) -> Result<Vec<String>> {
        Ok(layout_damage(path, true)?
            .into_iter()
            .map(|(p, done)| format!("{}: {done}", p.path))
            .collect())
    }
}

/// The layout directories of the repository at `path` that are not directories, as fsck
/// problems (`damaged-layout`); with `fix`, each is replaced by an empty directory under the
/// exclusive lock, and the second element says what was done.
fn layout_damage(path: &Path, fix: bool) -> Result<Vec<(Problem, String)>> {
    let root = crate::repository::open_root(path)?;
    crate::meta::read_meta(root.as_fd(), path)?;
    let lock = RepoLock::open(root.as_fd(), path)?;
    lock.lock(if fix {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    })?;
    let mut out: Vec<(Problem, String)> = Vec::new();
    for d in LAYOUT_DIRS {
        // Below a damaged directory there is nothing to check until it is replaced.
        if !fix
            && out.iter().any(|(p, _)| {
                d.strip_prefix(p.path.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            })
        {
            continue;
        }
        let what = match layout::open_dir_beneath(root.as_fd(), d) {
            Ok(_) => continue,
            Err(Errno::NOENT) => "missing",
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let (parent, name) =
                    layout::open_parent(root.as_fd(), d).ctx("opening", path.join(d))?;
                match layout::entry_type(parent.as_fd(), name).ctx("checking", path.join(d))? {
                    Some(t) => layout::describe(t),
                    None => "missing",
                }
            }
            Err(e) => return Err(e).ctx("opening", path.join(d)),
        };
        let problem = Problem {
            path: d.to_owned(),
            kind: "damaged-layout",
            message: format!("{what}, not a directory (not followed)"),
        };
        let mut done = String::new();
        if fix {
            let (parent, name) =
                layout::open_parent(root.as_fd(), d).ctx("opening", path.join(d))?;
            if what != "missing" {
                layout::unlink_if_present(parent.as_fd(), name, AtFlags::empty())
                    .ctx("removing", path.join(d))?;
            }
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e).ctx("creating", path.join(d)),
            }
            done = format!("{what} replaced by an empty directory");
        }
        out.push((problem, done));
    }
    Ok(out)
}
