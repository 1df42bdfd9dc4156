//! `oci-archive:FILE[:REF]`: a tar of an OCI image layout, read without extracting it.
//!
//! The archive's members are indexed once with cfs's own tar parser (the one that splits
//! layers, so PAX/ustar disagreements are read one way, or refused): each member's name is
//! normalised (empty and `.` components dropped, `..` applied; a name climbing above the
//! top is not part of the layout and is skipped), and only the names a layout needs are kept
//! (`oci-layout`, `index.json`, `blobs`, `blobs/<alg>`, `blobs/sha256/<hex>`); the last
//! member of a name wins, as extraction would leave it. A member that the layout needs must
//! be a plain regular file (not a symlink, hardlink, sparse file, directory, device or FIFO);
//! `blobs` and `blobs/sha256` must not be anything but directories. No name is ever used as
//! a path, so nothing can be read from outside the archive. Blobs are read in place with
//! `pread` at their data offset.
//!
//! containers/image extracts archives with containers/storage's untar, which decompresses
//! gzip, zstd, bzip2 and xz; cfs decompresses gzip and zstd (windows bounded as for layers,
//! [`crate::decompress`]) once into an anonymous temporary file in `$TMPDIR` and indexes
//! that; bzip2 and xz are refused by name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fsutil::open_user_file;
use super::index::{Selected, check_layout_file, select, split_reference};
use super::{BlobInner, LocalError, MAX_MANIFEST};
use crate::decompress::{Decompressor, sniff};
use crate::manifest::Compression;
use crate::reference::is_sha256_hex;
use crate::tar::parser::{BlockInput, Parser, lossy, padding};
use crate::tar::{EntryKind, TarEntry, TarError};

/// Most distinct layout names indexed: far more blobs than any image has; bounds the memory
/// an archive of millions of tiny members could make us use.
pub(crate) const MAX_MEMBERS: usize = 1 << 16;

/// What an indexed member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain regular file, whose data can be read in place.
    Regular,
    /// A directory member, or a directory implied by a later member below it.
    Directory,
    /// Anything else, described ("a symlink", "a hardlink", "a sparse file", ...).
    Refused(&'static str),
}

/// One indexed member (the last of its name).
#[derive(Debug, Clone)]
struct Member {
    kind: Kind,
    /// The name as stored, for messages.
    raw: String,
    /// Offset of its data in the (decompressed) archive.
    offset: u64,
    /// Bytes of data.
    size: u64,
}

/// An opened, indexed archive.
pub(crate) struct Archive {
    /// The archive's bytes: the file itself, or its decompressed temporary copy.
    file: Arc<File>,
    /// The archive as the user named it.
    path: PathBuf,
    members: HashMap<String, Member>,
    selected: Selected,
}

/// Reads the archive sequentially for the parser, counting the offset.
struct Input<'a> {
    reader: BufReader<&'a File>,
    offset: u64,
}

impl BlockInput for Input<'_> {
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Read(e)),
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The layout name a member's path stands for, or `None` if it climbs above the top or is
/// not UTF-8 (then it is no name a layout has).
fn normalise(path: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(path).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Whether the layout could need `name`; `blob_dir` is set for `blobs/sha256/<hex>/...`
/// (a member below a blob's name makes that name a directory).
fn wanted(name: &str) -> (bool, Option<String>) {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["oci-layout"] | ["index.json"] | ["blobs"] | ["blobs", _] => (true, None),
        ["blobs", "sha256", hex] if is_sha256_hex(hex) => (true, None),
        ["blobs", "sha256", hex, _, ..] if is_sha256_hex(hex) => {
            (false, Some(format!("blobs/sha256/{hex}")))
        }
        _ => (false, None),
    }
}

fn kind_of(entry: &TarEntry) -> Kind {
    match entry.kind {
        EntryKind::Regular
            if entry.sparse.is_none() && matches!(entry.typeflag, b'0' | b'\0' | b'7') =>
        {
            Kind::Regular
        }
        EntryKind::Regular => Kind::Refused("a sparse file"),
        EntryKind::Directory => Kind::Directory,
        EntryKind::Symlink => Kind::Refused("a symlink"),
        EntryKind::Hardlink => Kind::Refused("a hardlink"),
        EntryKind::CharDevice => Kind::Refused("a character device"),
        EntryKind::BlockDevice => Kind::Refused("a block device"),
        EntryKind::Fifo => Kind::Refused("a FIFO"),
        EntryKind::Other(_) => Kind::Refused("a member of an unknown type"),
    }
}

impl Archive {
    pub(crate) fn open(details: &str, max_decompressed: u64) -> Result<Self, LocalError> {
        let (path, reference) = split_reference(details)?;
        let original = open_user_file(&path)?;
        let file = decompressed(original, &path, max_decompressed)?;
        let members = index_members(&file, &path)?;
        let mut archive = Self {
            file: Arc::new(file),
            path,
            members,
            selected: Selected {
                media_type: String::new(),
                hex: String::new(),
                size: 0,
            },
        };
        let layout = archive.read_member("oci-layout", MAX_MANIFEST)?;
        check_layout_file(&layout, &archive.location("oci-layout"))?;
        let index = archive.read_member("index.json", MAX_MANIFEST)?;
        archive.selected = select(
            &index,
            &archive.location("index.json"),
            reference.as_deref(),
        )?;
        Ok(archive)
    }

    pub(crate) fn selected(&self) -> &Selected {
        &self.selected
    }

    /// `ARCHIVE:NAME`, for messages.
    fn location(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}:{name}", self.path.display()))
    }

    pub(crate) fn blob_location(&self, hex: &str) -> PathBuf {
        self.location(&format!("blobs/sha256/{hex}"))
    }

    /// The regular member `name`, checking that the directories above it are directories.
    fn member(&self, name: &str) -> Result<&Member, LocalError> {
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |p| p.1)
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if let Some(m) = self.members.get(&prefix)
                && m.kind != Kind::Directory
            {
                return Err(self.refused(m, "where the layout needs a directory"));
            }
        }
        let m = self.members.get(name).ok_or_else(|| LocalError::Missing {
            path: self.location(name),
        })?;
        match m.kind {
            Kind::Regular => Ok(m),
            Kind::Directory => Err(self.refused_what(m, "a directory")),
            Kind::Refused(what) => Err(self.refused_what(m, what)),
        }
    }

    fn refused(&self, m: &Member, why: &str) -> LocalError {
        let what = match m.kind {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Refused(w) => w,
        };
        LocalError::Member {
            path: self.path.clone(),
            member: m.raw.clone(),
            why: format!("is {what} {why}; refused"),
        }
    }

    fn refused_what(&self, m: &Member, what: &str) -> LocalError {
        LocalError::Member {
            path: self.path.clone(),
            member: m.raw.clone(),
            why: format!("is {what}, not a regular file; refused"),
        }
    }

    fn read_member(&self, name: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        let m = self.member(name)?;
        if m.size > max {
            return Err(LocalError::TooLarge {
                path: self.location(name),
                size: m.size,
                max,
            });
        }
        let len = usize::try_from(m.size).map_err(|_| LocalError::TooLarge {
            path: self.location(name),
            size: m.size,
            max,
        })?;
        let mut buf = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let n = self
                .file
                .read_at(&mut buf[done..], m.offset + done as u64)
                .map_err(|e| LocalError::Io {
                    path: self.location(name),
                    source: e,
                })?;
            if n == 0 {
                return Err(LocalError::Changed {
                    path: self.location(name),
                    expected: m.size,
                    read: done as u64,
                });
            }
            done += n;
        }
        Ok(buf)
    }

    pub(crate) fn read_blob(&self, hex: &str, max: u64) -> Result<Vec<u8>, LocalError> {
        self.read_member(&format!("blobs/sha256/{hex}"), max)
    }

    pub(crate) fn open_blob(&self, hex: &str, size: u64) -> Result<BlobInner, LocalError> {
        let name = format!("blobs/sha256/{hex}");
        let m = self.member(&name)?;
        if m.size != size {
            return Err(LocalError::SizeMismatch {
                path: self.location(&name),
                expected: size,
                actual: m.size,
            });
        }
        Ok(BlobInner::Range {
            file: Arc::clone(&self.file),
            offset: m.offset,
            remaining: size,
            path: self.location(&name),
        })
    }
}

/// The archive itself if it is not compressed, else its decompressed copy in an anonymous
/// temporary file, refused once it passes `max` bytes.
fn decompressed(file: File, path: &Path, max: u64) -> Result<File, LocalError> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        let k = file
            .read_at(&mut head[n..], n as u64)
            .map_err(|e| LocalError::Io {
                path: path.to_owned(),
                source: e,
            })?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = &head[..n];
    if head.starts_with(b"BZh") {
        return Err(LocalError::Compression {
            path: path.to_owned(),
            what: "bzip2",
        });
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(LocalError::Compression {
            path: path.to_owned(),
            what: "xz",
        });
    }
    if sniff(head) == Compression::None {
        return Ok(file);
    }
    let tmp_dir = std::env::temp_dir();
    let fail = |source: std::io::Error| LocalError::Decompress {
        path: path.to_owned(),
        tmp: tmp_dir.clone(),
        source,
    };
    let mut tmp = tempfile::tempfile_in(&tmp_dir).map_err(fail)?;
    let (mut decoder, _) = Decompressor::new(&file).map_err(fail)?;
    let copied =
        std::io::copy(&mut (&mut decoder).take(max.saturating_add(1)), &mut tmp).map_err(fail)?;
    if copied > max {
        return Err(LocalError::ArchiveTooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(tmp)
}

/// Indexes the members of the tar in `file` (see the module doc).
fn index_members(file: &File, path: &Path) -> Result<HashMap<String, Member>, LocalError> {
    let tar_err = |source: TarError| LocalError::Tar {
        path: path.to_owned(),
        source,
    };
    let len = file
        .metadata()
        .map_err(|e| LocalError::Io {
            path: path.to_owned(),
            source: e,
        })?
        .len();
    let mut start = file;
    start.seek(SeekFrom::Start(0)).map_err(|e| LocalError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let mut input = Input {
        reader: BufReader::with_capacity(64 * 1024, file),
        offset: 0,
    };
    let mut parser = Parser::new();
    let mut members: HashMap<String, Member> = HashMap::new();
    let mut sink = |_: &[u8]| Ok(());
    while let Some(entry) = parser.next_entry(&mut input, &mut sink).map_err(tar_err)? {
        let offset = input.offset;
        let stored = entry.data_size + padding(entry.data_size);
        let end = offset.saturating_add(stored);
        if end > len {
            return Err(tar_err(TarError::Truncated {
                offset: entry.offset,
                entry: lossy(&entry.path),
                missing: end - len,
            }));
        }
        if let Some(name) = normalise(&entry.path) {
            let (keep, implied_dir) = wanted(&name);
            let new = if keep {
                Some((
                    name,
                    Member {
                        kind: kind_of(&entry),
                        raw: lossy(&entry.path),
                        offset,
                        size: entry.data_size,
                    },
                ))
            } else {
                implied_dir.map(|dir| {
                    (
                        dir,
                        Member {
                            kind: Kind::Directory,
                            raw: lossy(&entry.path),
                            offset,
                            size: 0,
                        },
                    )
                })
            };
            if let Some((name, member)) = new {
                if members.len() >= MAX_MEMBERS && !members.contains_key(&name) {
                    return Err(LocalError::Member {
                        path: path.to_owned(),
                        member: member.raw,
                        why: format!(
                            "more than {MAX_MEMBERS} layout members; refused (no image has so \
                             many blobs)"
                        ),
                    });
                }
                members.insert(name, member);
            }
        }
        let skip = i64::try_from(stored).map_err(|_| {
            tar_err(TarError::Truncated {
                offset: entry.offset,
                entry: lossy(&entry.path),
                missing: stored,
            })
        })?;
        input
            .reader
            .seek_relative(skip)
            .map_err(|e| LocalError::Io {
                path: path.to_owned(),
                source: e,
            })?;
        input.offset = end;
        parser.advance(stored);
    }
    Ok(members)
}
