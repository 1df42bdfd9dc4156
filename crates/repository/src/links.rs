//! Streams, images and refs: the symlinks in `streams/` and `images/` that name objects, and
//! the refs that name them. Read through the layout's descriptors ([`crate::layout`]): an entry
//! that is not a link, a link that does not point at an object, and a ref that does not point
//! straight at a stream or image are strays that listings skip and fsck reports.

use std::fs::File;
use std::os::fd::AsFd;

use rustix::fs::FileType;
use rustix::io::Errno;
use serde::Serialize;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::layout;
use crate::names::{check_content_id, check_ref_name};
use crate::repository::{Dir, DirtyDirs, Repository};
use crate::splitstream::{SplitStreamReader, SplitStreamWriter};

/// Where a reference points, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefEntry {
    /// The ref's name.
    pub name: String,
    /// The content id (stream refs) or image id hex (image refs) it points to.
    pub target: String,
}

impl Repository {
    // ----- streams -----

    /// Starts writing a splitstream of the given content type (e.g. `application/x-tar`).
    pub fn create_stream(&self, content_type: &str) -> Result<SplitStreamWriter<'_>> {
        SplitStreamWriter::new(self, content_type)
    }

    /// Names already-written stream objects by their content ids, after making all data
    /// durable: the stream becomes visible only once everything it references is on disk, and
    /// this returns only once the names are durable too (one fsync of `streams/` for all).
    pub fn register_streams(&self, streams: &[(&str, ObjectId)]) -> Result<()> {
        for (cid, id) in streams {
            check_content_id(cid)?;
            self.check_alg(id)?;
        }
        self.sync()?;
        let mut dirty = DirtyDirs::new();
        for (cid, id) in streams {
            let target = format!("../objects/{}", id.object_path());
            self.link_at(&self.streams, cid, &target, &mut dirty)?;
        }
        self.sync_dirs(&self.streams, &dirty)
    }

    /// [`Repository::register_streams`] for one stream.
    pub fn register_stream(&self, content_id: &str, id: &ObjectId) -> Result<()> {
        self.register_streams(&[(content_id, *id)])
    }

    /// The stream object a content id names, if it exists and its object is present.
    pub fn stream_object(&self, content_id: &str) -> Result<Option<ObjectId>> {
        check_content_id(content_id)?;
        let Some(target) = self.read_link(&self.streams, content_id)? else {
            return Ok(None);
        };
        // A link to anything but an object is a stray (fsck reports it): as if absent, so
        // a pull re-creates it.
        let Ok(id) = self.object_from_link(&target, "streams", content_id) else {
            return Ok(None);
        };
        Ok(self.has_object(&id)?.then_some(id))
    }

    /// [`Repository::stream_object`], but only if every object the stream's header lists is
    /// present too (a regular file; verity-checked where enforced). A stream with a missing or
    /// damaged object counts as absent, so the next pull writes it again and so heals the
    /// damaged paths (see `link_object`) without a `fsck --repair` first.
    pub fn complete_stream_object(&self, content_id: &str) -> Result<Option<ObjectId>> {
        let Some(id) = self.stream_object(content_id)? else {
            return Ok(None);
        };
        let header = self.open_stream_object(&id)?.header().clone();
        for object in &header.objects {
            if !self.has_object(object)? {
                return Ok(None);
            }
        }
        Ok(Some(id))
    }

    /// Resolves a content id or a stream ref name to `(content id, stream object)`.
    pub fn resolve_stream(&self, name: &str) -> Result<(String, ObjectId)> {
        if check_content_id(name).is_ok()
            && let Some(id) = self.stream_object(name)?
        {
            return Ok((name.to_owned(), id));
        }
        if check_ref_name(name).is_ok()
            && let Some(cid) = self.stream_ref(name)?
            && let Some(id) = self.stream_object(&cid)?
        {
            return Ok((cid, id));
        }
        Err(Error::NotFound {
            kind: "stream",
            name: name.to_owned(),
        })
    }

    /// Opens a splitstream by content id or ref name.
    pub fn open_stream(&self, name: &str) -> Result<SplitStreamReader<File>> {
        let (cid, id) = self.resolve_stream(name)?;
        let file = self.open_object(&id)?;
        SplitStreamReader::new(file, self.meta.hash, &cid)
    }

    /// Opens a splitstream by its object id.
    pub fn open_stream_object(&self, id: &ObjectId) -> Result<SplitStreamReader<File>> {
        let file = self.open_object(id)?;
        SplitStreamReader::new(file, self.meta.hash, &id.to_string())
    }

    /// Lists the content ids in `streams/` with their objects (entries that are not links to
    /// objects are reported by fsck, not here).
    pub fn list_streams(&self) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        for e in self.list_dir(&self.streams)? {
            if e.name == "refs" || e.name.starts_with('.') || !e.utf8 || e.kind != FileType::Symlink
            {
                continue;
            }
            if let Some(target) = self.read_link(&self.streams, &e.name)?
                && let Ok(id) = self.object_from_link(&target, "streams", &e.name)
            {
                out.push((e.name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    // ----- refs -----

    /// Points stream ref `name` at `content_id` (atomically replacing an existing ref).
    pub fn set_stream_ref(&self, name: &str, content_id: &str) -> Result<()> {
        check_ref_name(name)?;
        check_content_id(content_id)?;
        let rel = format!("refs/{name}");
        let up = "../".repeat(rel.matches('/').count());
        self.replace_symlink(&self.streams, &rel, &format!("{up}{content_id}"))
    }

    /// The content id a stream ref points to.
    pub fn stream_ref(&self, name: &str) -> Result<Option<String>> {
        check_ref_name(name)?;
        let rel = format!("refs/{name}");
        let Some(target) = self.read_link(&self.streams, &rel)? else {
            return Ok(None);
        };
        // Only `../<content id>` at the right depth is a ref; anything else (a ref to a ref,
        // a cycle, a path out of streams/) is a stray that fsck reports.
        Ok(ref_target(&rel, &target)
            .filter(|t| check_content_id(t).is_ok())
            .map(str::to_owned))
    }

    /// Removes a stream ref; `false` if it did not exist.
    pub fn remove_stream_ref(&self, name: &str) -> Result<bool> {
        check_ref_name(name)?;
        self.remove_link(&self.streams, &format!("refs/{name}"))
    }

    /// Every stream ref, sorted by name.
    pub fn list_stream_refs(&self) -> Result<Vec<RefEntry>> {
        self.list_refs(&self.streams)
    }

    // ----- images -----

    /// Names an existing object as an image (`images/<id>`). The caller stores the EROFS bytes
    /// with [`Repository::ensure_object`] first; this syncs before publishing.
    pub fn register_image(&self, id: &ObjectId) -> Result<()> {
        if !self.has_object(id)? {
            return Err(Error::NotFound {
                kind: "object",
                name: id.to_string(),
            });
        }
        self.sync()?;
        let target = format!("../objects/{}", id.object_path());
        self.replace_symlink(&self.images, &id.to_hex(), &target)
    }

    /// Points image ref `name` at a registered image.
    pub fn set_image_ref(&self, name: &str, id: &ObjectId) -> Result<()> {
        check_ref_name(name)?;
        self.check_alg(id)?;
        let rel = format!("refs/{name}");
        let up = "../".repeat(rel.matches('/').count());
        self.replace_symlink(&self.images, &rel, &format!("{up}{}", id.to_hex()))
    }

    /// Removes an image ref; `false` if it did not exist.
    pub fn remove_image_ref(&self, name: &str) -> Result<bool> {
        check_ref_name(name)?;
        self.remove_link(&self.images, &format!("refs/{name}"))
    }

    /// Every image ref, sorted by name.
    pub fn list_image_refs(&self) -> Result<Vec<RefEntry>> {
        self.list_refs(&self.images)
    }

    /// Every registered image id (links in `images/` named by an id; strays are left to fsck).
    pub fn list_images(&self) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for e in self.list_dir(&self.images)? {
            if e.kind != FileType::Symlink || !e.utf8 {
                continue;
            }
            if let Ok(id) = ObjectId::parse_for(self.meta.hash, &e.name) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The target of the link `images/<id>` as written (never followed); `None` if there is
    /// no link (nothing, or something that is not a link).
    pub fn image_link_target(&self, id: &ObjectId) -> Result<Option<String>> {
        self.check_alg(id)?;
        self.read_link(&self.images, &id.to_hex())
    }

    /// Resolves an image id (hex, optionally `sha256:`-prefixed) or image ref name.
    pub fn resolve_image(&self, name: &str) -> Result<ObjectId> {
        let id = if let Ok(id) = ObjectId::parse_for(self.meta.hash, name) {
            id
        } else if check_ref_name(name).is_ok()
            && let rel = format!("refs/{name}")
            && let Some(target) = self.read_link(&self.images, &rel)?
        {
            ref_target(&rel, &target)
                .and_then(|t| ObjectId::parse_for(self.meta.hash, t).ok())
                .ok_or_else(|| Error::NotFound {
                    kind: "image",
                    name: name.to_owned(),
                })?
        } else if name.len() >= 4
            && name.len() < self.meta.hash.digest_len() * 2
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            // A unique prefix of a registered image's ID, as podman takes short IDs.
            let mut matches: Vec<ObjectId> = self
                .list_images()?
                .into_iter()
                .filter(|id| id.to_hex().starts_with(name))
                .collect();
            match matches.len() {
                1 => matches.remove(0),
                0 => {
                    return Err(Error::NotFound {
                        kind: "image",
                        name: name.to_owned(),
                    });
                }
                _ => {
                    return Err(Error::AmbiguousImage {
                        prefix: name.to_owned(),
                        matches: matches.iter().map(ObjectId::to_hex).collect(),
                    });
                }
            }
        } else {
            return Err(Error::NotFound {
                kind: "image",
                name: name.to_owned(),
            });
        };
        match self.read_link(&self.images, &id.to_hex())? {
            Some(_) => Ok(id),
            None => Err(Error::NotFound {
                kind: "image",
                name: name.to_owned(),
            }),
        }
    }

    // ----- link helpers -----

    /// The target of the link `dir/rel`; `None` if there is none, or if what is there is not
    /// a link (a stray: fsck reports it, see [`Repository::link_state`]).
    pub(crate) fn read_link(&self, dir: &Dir, rel: &str) -> Result<Option<String>> {
        match self.link_state(dir, rel)? {
            LinkState::Link(t) => Ok(Some(t)),
            LinkState::Missing | LinkState::NotALink => Ok(None),
        }
    }

    /// What `dir/rel` is, read through descriptors (its parent opened without following a
    /// symlink; a parent that is not a directory counts as missing).
    pub(crate) fn link_state(&self, dir: &Dir, rel: &str) -> Result<LinkState> {
        let full = || self.path.join(dir.rel).join(rel);
        let (parent, name) = match layout::open_parent(dir.fd.as_fd(), rel) {
            Ok(p) => p,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(LinkState::Missing),
            Err(e) => return Err(e).ctx("opening", full()),
        };
        match rustix::fs::readlinkat(&parent, name, Vec::new()) {
            Ok(t) => Ok(LinkState::Link(t.to_string_lossy().into_owned())),
            Err(Errno::NOENT) => Ok(LinkState::Missing),
            Err(Errno::INVAL) => {
                let t = layout::entry_type(parent.as_fd(), name).ctx("checking", full())?;
                Ok(t.map_or(LinkState::Missing, |_| LinkState::NotALink))
            }
            Err(e) => Err(e).ctx("reading link", full()),
        }
    }

    /// Parses a link target `../objects/XX/<rest>` into an object id (exactly one `../`: the
    /// links in `streams/` and `images/` point into this repository's `objects/`).
    pub(crate) fn object_from_link(&self, target: &str, dir: &str, name: &str) -> Result<ObjectId> {
        let parsed = target
            .strip_prefix("../objects/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(a, b)| ObjectId::from_object_path(a, b).ok());
        match parsed {
            Some(id) if id.algorithm() == self.meta.hash => Ok(id),
            _ => Err(Error::BadSplitStream {
                name: name.to_owned(),
                message: format!("{dir}/{name} points to {target:?}, not to an object"),
            }),
        }
    }

    /// The entries of a layout directory, through its descriptor.
    pub(crate) fn list_dir(&self, dir: &Dir) -> Result<Vec<layout::Entry>> {
        layout::list(dir.fd.as_fd()).ctx("reading", self.path.join(dir.rel))
    }

    /// All well-formed refs under `dir/refs`, recursively, as (name, target).
    fn list_refs(&self, dir: &Dir) -> Result<Vec<RefEntry>> {
        Ok(self.walk_refs(dir)?.refs)
    }
}

/// What is at a link's path.
pub(crate) enum LinkState {
    /// Nothing.
    Missing,
    /// A symlink, with its target.
    Link(String),
    /// Something else.
    NotALink,
}

/// The name a ref at `rel` (`refs/a/b`) points to, if its target has the one form cfs writes:
/// one `../` per level up to `streams/` or `images/`, then a single component. Targets through
/// other refs (`../refs/x`, a cycle), out of the directory, or absolute are `None`.
pub(crate) fn ref_target<'t>(rel: &str, target: &'t str) -> Option<&'t str> {
    let mut rest = target;
    for _ in 0..rel.matches('/').count() {
        rest = rest.strip_prefix("../")?;
    }
    (!rest.is_empty() && !rest.contains('/') && rest != "." && rest != "..").then_some(rest)
}

/// The refs found under a `refs/` directory, and what was found there that is not a ref.
#[derive(Default)]
pub(crate) struct RefWalk {
    /// Well-formed refs, sorted by name.
    pub refs: Vec<RefEntry>,
    /// Entries that are not refs (path relative to the repository, what it is): a regular
    /// file, FIFO, device ...
    pub strays: Vec<(String, String)>,
    /// Symlinks whose target is not `../<name>` at the right depth (path, target).
    pub bad: Vec<(String, String)>,
}

impl Repository {
    /// Walks `dir/refs` through descriptors (each level opened without following a symlink),
    /// sorting what is there into refs, strays and malformed refs. Never follows a ref, so a
    /// ref cycle cannot loop.
    pub(crate) fn walk_refs(&self, dir: &Dir) -> Result<RefWalk> {
        let mut out = RefWalk::default();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let rel = if prefix.is_empty() {
                "refs".to_owned()
            } else {
                format!("refs/{prefix}")
            };
            let fd = match layout::open_dir_beneath(dir.fd.as_fd(), &rel) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e).ctx("opening", self.path().join(dir.rel).join(&rel)),
            };
            let entries =
                layout::list(fd.as_fd()).ctx("reading", self.path().join(dir.rel).join(&rel))?;
            for e in entries {
                if e.name.starts_with('.') {
                    // Our own temporary links (`.tmp-link-…`), left by a crash.
                    continue;
                }
                let child = if prefix.is_empty() {
                    e.name.clone()
                } else {
                    format!("{prefix}/{}", e.name)
                };
                let shown = format!("{}/refs/{child}", dir.rel);
                if !e.utf8 {
                    out.strays.push((shown, "a name that is not UTF-8".into()));
                    continue;
                }
                match e.kind {
                    FileType::Directory => stack.push(child),
                    FileType::Symlink => {
                        let child_rel = format!("refs/{child}");
                        let LinkState::Link(target) = self.link_state(dir, &child_rel)? else {
                            continue;
                        };
                        let valid = ref_target(&child_rel, &target).filter(|t| {
                            if dir.rel == "streams" {
                                check_content_id(t).is_ok()
                            } else {
                                ObjectId::parse_for(self.algorithm(), t).is_ok()
                            }
                        });
                        match valid {
                            Some(t) => out.refs.push(RefEntry {
                                name: child,
                                target: t.to_owned(),
                            }),
                            None => out.bad.push((shown, target)),
                        }
                    }
                    other => out.strays.push((shown, layout::describe(other).into())),
                }
            }
        }
        out.refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
