//! Reads composefs EROFS images back into trees, undoing the overlayfs rewrite the writer did.
//!
//! Every offset and length is checked against the image; each directory is visited once, so a
//! corrupt image yields an error, never a panic, an endless loop or unbounded memory use.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_repository::{HashAlgorithm, ObjectId};

use super::format::*;
use crate::tree::*;

/// Why an image could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Not a composefs image (bad magic or header version).
    #[error("not a composefs image: {0}")]
    NotComposefs(String),
    /// Corrupt or unsupported structure.
    #[error("corrupt composefs image: {0}")]
    Corrupt(String),
    /// A redirect that is not an object path (`XX/<rest of hex>`).
    #[error("{path}: redirect {redirect:?} is not an object path")]
    NotAnObject {
        /// The file.
        path: String,
        /// Its redirect.
        redirect: String,
    },
}

fn corrupt<T>(msg: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError::Corrupt(msg.into()))
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(super) struct Image<'a> {
    data: &'a [u8],
    meta_start: u64,
    xattr_start: u64,
    build_time: Mtime,
    version: u32,
    /// Check each inode's xattr name filter (the kernel hides a name whose filter bit is set).
    filter: bool,
}

/// A parsed inode, before interpretation.
pub(super) struct RawInode<'a> {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Mtime,
    pub(super) size: u64,
    pub(super) layout: u16,
    pub(super) i_u: u32,
    /// Every xattr as stored (inline ones, then shared ones), names with their prefix.
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes after the inode and its xattrs, up to the end of its block.
    inline: &'a [u8],
}

impl<'a> Image<'a> {
    pub(super) fn parse(data: &'a [u8]) -> Result<Self, ReadError> {
        if data.len() < (SUPER_OFFSET + SUPER_SIZE) as usize {
            return Err(ReadError::NotComposefs("too short".into()));
        }
        if le32(data, 0) != COMPOSEFS_MAGIC {
            return Err(ReadError::NotComposefs("bad composefs magic".into()));
        }
        if le32(data, 4) != COMPOSEFS_HEADER_VERSION {
            return Err(ReadError::NotComposefs(format!(
                "unsupported composefs header version {}",
                le32(data, 4)
            )));
        }
        let version = le32(data, 12);
        let sb = SUPER_OFFSET as usize;
        if le32(data, sb) != EROFS_MAGIC {
            return corrupt("bad EROFS superblock magic");
        }
        if u32::from(data[sb + 12]) != BLOCK_BITS {
            return corrupt(format!("unsupported block size 2^{}", data[sb + 12]));
        }
        let filter = le32(data, sb + 8) & FEATURE_COMPAT_XATTR_FILTER != 0;
        Ok(Self {
            filter,
            data,
            meta_start: u64::from(le32(data, sb + 40)) * BLOCK_SIZE,
            xattr_start: u64::from(le32(data, sb + 44)) * BLOCK_SIZE,
            build_time: Mtime {
                sec: le64(data, sb + 24) as i64,
                nsec: le32(data, sb + 32),
            },
            version,
        })
    }

    fn root_nid(&self) -> u64 {
        u64::from(le16(self.data, SUPER_OFFSET as usize + 14))
    }

    fn slice(&self, start: u64, len: u64) -> Result<&'a [u8], ReadError> {
        let end = start.checked_add(len);
        match end {
            Some(end) if end <= self.data.len() as u64 => {
                Ok(&self.data[start as usize..end as usize])
            }
            _ => corrupt(format!("range {start}+{len} beyond the image end")),
        }
    }

    /// One xattr entry at `at` of `b`: (full name, value, offset of the next entry, filter bit).
    fn xattr_entry(
        &self,
        b: &[u8],
        at: usize,
    ) -> Result<(Vec<u8>, Vec<u8>, usize, u32), ReadError> {
        if at + 4 > b.len() {
            return corrupt("xattr entry truncated");
        }
        let name_len = usize::from(b[at]);
        let index = b[at + 1];
        let value_len = usize::from(le16(b, at + 2));
        let end = at + 4 + name_len + value_len;
        if end > b.len() {
            return corrupt("xattr entry truncated");
        }
        let Some(prefix) = xattr_prefix(index) else {
            return corrupt(format!("unknown xattr name index {index}"));
        };
        let suffix = &b[at + 4..at + 4 + name_len];
        if index == 0 && suffix.is_empty() {
            return corrupt("xattr entry with an empty name");
        }
        let bit = xxh32(suffix, XATTR_FILTER_SEED.wrapping_add(u32::from(index))) & 31;
        let mut name = prefix.to_vec();
        name.extend_from_slice(suffix);
        let value = b[at + 4 + name_len..end].to_vec();
        Ok((name, value, round_up(end as u64, 4) as usize, bit))
    }

    pub(super) fn inode(&self, nid: u64) -> Result<RawInode<'a>, ReadError> {
        let off = nid
            .checked_mul(SLOT_SIZE)
            .and_then(|o| o.checked_add(self.meta_start))
            .ok_or_else(|| ReadError::Corrupt(format!("inode {nid} out of range")))?;
        let head = self.slice(off, INODE_COMPACT_SIZE)?;
        let format = le16(head, 0);
        let extended = (format >> I_VERSION_BIT) & 1 == 1;
        let layout = (format >> I_DATALAYOUT_BIT) & 7;
        let icount = u64::from(le16(head, 2));
        let mode = u32::from(le16(head, 4));
        let (isize, raw) = if extended {
            (INODE_EXTENDED_SIZE, self.slice(off, INODE_EXTENDED_SIZE)?)
        } else {
            (INODE_COMPACT_SIZE, head)
        };
        let (size, i_u, uid, gid, mtime) = if extended {
            (
                le64(raw, 8),
                le32(raw, 16),
                le32(raw, 24),
                le32(raw, 28),
                Mtime {
                    sec: le64(raw, 32) as i64,
                    nsec: le32(raw, 40),
                },
            )
        } else {
            (
                u64::from(le32(raw, 8)),
                le32(raw, 16),
                u32::from(le16(raw, 24)),
                u32::from(le16(raw, 26)),
                self.build_time,
            )
        };
        let xattr_size = if icount == 0 {
            0
        } else {
            XATTR_IBODY_HEADER_SIZE + (icount - 1) * 4
        };
        let body = self.slice(off + isize, xattr_size)?;
        let mut xattrs = Vec::new();
        if xattr_size > 0 {
            let shared = usize::from(body[4]);
            let mut at = XATTR_IBODY_HEADER_SIZE as usize;
            if at + 4 * shared > body.len() {
                return corrupt(format!("inode {nid}: shared xattr list truncated"));
            }
            let mut shared_ids = Vec::with_capacity(shared);
            for _ in 0..shared {
                shared_ids.push(u64::from(le32(body, at)));
                at += 4;
            }
            let mut absent = 0u32;
            while at + 4 <= body.len() {
                let (k, v, next, bit) = self.xattr_entry(body, at)?;
                xattrs.push((k, v));
                absent |= 1 << bit;
                at = next;
            }
            for id in shared_ids {
                let start = self.xattr_start + id * 4;
                let limit = (self.data.len() as u64).min(start + 4 + 255 + 65535);
                let region = self.slice(start, limit.saturating_sub(start))?;
                let (k, v, _, bit) = self.xattr_entry(region, 0)?;
                xattrs.push((k, v));
                absent |= 1 << bit;
            }
            // The stored filter has a bit set for names that are certainly absent: the kernel
            // would hide a present name whose bit is set.
            if self.filter && le32(body, 0) & absent != 0 {
                return corrupt(format!(
                    "inode {nid}: xattr name filter {:#010x} hides stored names",
                    le32(body, 0)
                ));
            }
            let mut names: Vec<&[u8]> = xattrs.iter().map(|(k, _)| &k[..]).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return corrupt(format!(
                    "inode {nid}: xattr {} stored twice",
                    String::from_utf8_lossy(w[0])
                ));
            }
        }
        let inline_start = off + isize + xattr_size;
        let block_end = round_up(inline_start + 1, BLOCK_SIZE).min(self.data.len() as u64);
        let inline = self.slice(inline_start, block_end.saturating_sub(inline_start))?;
        Ok(RawInode {
            mode,
            uid,
            gid,
            mtime,
            size,
            layout,
            i_u,
            xattrs,
            inline,
        })
    }

    /// The data of a flat (plain or inline) inode, bounded by `max`.
    pub(super) fn flat_data(&self, ino: &RawInode<'a>, max: u64) -> Result<Vec<u8>, ReadError> {
        if ino.size > max {
            return corrupt(format!("{} bytes of data, more than {max}", ino.size));
        }
        let size = ino.size;
        match ino.layout {
            LAYOUT_FLAT_PLAIN => {
                if size == 0 {
                    return Ok(Vec::new());
                }
                let start = u64::from(ino.i_u) * BLOCK_SIZE;
                Ok(self.slice(start, size)?.to_vec())
            }
            LAYOUT_FLAT_INLINE => {
                let blocks = size.div_ceil(BLOCK_SIZE).saturating_sub(1);
                let mut out = Vec::with_capacity(size as usize);
                if blocks > 0 {
                    let start = u64::from(ino.i_u) * BLOCK_SIZE;
                    out.extend_from_slice(self.slice(start, blocks * BLOCK_SIZE)?);
                }
                let tail = (size - blocks * BLOCK_SIZE) as usize;
                if tail > ino.inline.len() {
                    return corrupt("inline tail crosses a block boundary");
                }
                out.extend_from_slice(&ino.inline[..tail]);
                Ok(out)
            }
            other => corrupt(format!("unexpected data layout {other}")),
        }
    }
}

/// One block of directory entries: (name, nid).
pub(super) fn parse_dirents(block: &[u8]) -> Result<Vec<(&[u8], u64)>, ReadError> {
    if block.len() < DIRENT_SIZE as usize {
        return corrupt("directory block too short");
    }
    let first = usize::from(le16(block, 8));
    if first == 0 || first % DIRENT_SIZE as usize != 0 || first > block.len() {
        return corrupt("bad directory entry table");
    }
    let n = first / DIRENT_SIZE as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = i * DIRENT_SIZE as usize;
        let nid = le64(block, at);
        let start = usize::from(le16(block, at + 8));
        let end = if i + 1 < n {
            usize::from(le16(block, at + DIRENT_SIZE as usize + 8))
        } else {
            let rest = block.get(start..).unwrap_or(&[]);
            start + rest.iter().position(|&c| c == 0).unwrap_or(rest.len())
        };
        if start < first || end < start || end > block.len() {
            return corrupt("bad directory entry name offset");
        }
        out.push((&block[start..end], nid));
    }
    Ok(out)
}

/// A directory discovered while reading: its metadata and entries.
struct DirInfo {
    parent: usize,
    name: Vec<u8>,
    dir: Option<Directory>,
    children: Vec<(Vec<u8>, Child)>,
}

enum Child {
    Dir(usize),
    Leaf(Arc<Leaf>),
}

/// Applies the inverse of the writer's overlayfs rewrite to an inode's xattrs. Returns the
/// user-visible xattrs, the redirect, the metacopy digest and whether the file is an escaped
/// whiteout.
struct Decoded {
    xattrs: Xattrs,
    redirect: Option<Vec<u8>>,
    digest: Option<ObjectId>,
    whiteout: bool,
}

/// Decodes an inode's xattrs (see [`Decoded`]).
///
/// Only an empty, non-external regular file (`empty_file`) is taken for an escaped whiteout,
/// as the writer makes them: a file with data whose layer gave it its own
/// `trusted.overlay.whiteout` xattr stays a file (with that xattr), so the object it is
/// redirected to is still found (gc must never lose it).
fn decode_xattrs(
    raw: Vec<(Vec<u8>, Vec<u8>)>,
    is_dir: bool,
    empty_file: bool,
    version: u32,
) -> Decoded {
    let has = |name: &[u8]| raw.iter().any(|(k, _)| k == name);
    let whiteout = !is_dir && empty_file && has(overlay::ESCAPED_WHITEOUT);
    let holds_whiteouts = is_dir && has(overlay::ESCAPED_WHITEOUTS);
    let mut d = Decoded {
        xattrs: BTreeMap::new(),
        redirect: None,
        digest: None,
        whiteout,
    };
    for (k, v) in raw {
        let k = k.as_slice();
        if k == overlay::REDIRECT {
            if !is_dir {
                d.redirect = Some(v.strip_prefix(b"/").unwrap_or(&v).to_vec());
            }
            continue;
        }
        if k == overlay::METACOPY {
            if v.len() >= 4
                && let Some(alg) = HashAlgorithm::from_kernel_id(v[3])
            {
                d.digest = ObjectId::from_bytes(alg, &v[4..]);
            }
            continue;
        }
        if (whiteout && (k == overlay::ESCAPED_WHITEOUT || k == overlay::USER_WHITEOUT))
            || (holds_whiteouts
                && (k == overlay::ESCAPED_WHITEOUTS || k == overlay::USER_WHITEOUTS))
            || (holds_whiteouts
                && version >= 1
                && (k == overlay::ESCAPED_OPAQUE || k == overlay::USER_OPAQUE)
                && v == b"x")
        {
            continue;
        }
        let name = if let Some(rest) = k.strip_prefix(overlay::ESCAPED_PREFIX) {
            let mut n = overlay::PREFIX.to_vec();
            n.extend_from_slice(rest);
            n
        } else if k.starts_with(overlay::PREFIX) {
            continue; // the writer's own (root opaque, …)
        } else {
            k.to_vec()
        };
        d.xattrs
            .insert(name.into_boxed_slice(), v.into_boxed_slice());
    }
    d
}

/// Reads an image into a tree.
pub fn read(image: &[u8]) -> Result<FileSystem, ReadError> {
    let img = Image::parse(image)?;
    let mut leaves: HashMap<u64, Arc<Leaf>> = HashMap::new();
    let mut seen_dirs: HashMap<u64, ()> = HashMap::new();
    let mut dirs: Vec<DirInfo> = Vec::new();
    // (nid, parent dir index, name, depth)
    let mut todo: Vec<(u64, usize, Vec<u8>, usize)> = vec![(img.root_nid(), 0, Vec::new(), 0)];
    while let Some((nid, parent, name, depth)) = todo.pop() {
        if seen_dirs.insert(nid, ()).is_some() {
            return corrupt(format!("directory inode {nid} appears twice"));
        }
        if depth > MAX_DEPTH {
            return corrupt(format!("directories nested deeper than {MAX_DEPTH}"));
        }
        let ino = img.inode(nid)?;
        if ino.mode & S_IFMT != S_IFDIR {
            return corrupt(format!("inode {nid} is not a directory"));
        }
        let decoded = decode_xattrs(ino.xattrs.clone(), true, false, img.version);
        let stat = Stat {
            mode: ino.mode & 0o7777,
            uid: ino.uid,
            gid: ino.gid,
            mtime: ino.mtime,
            xattrs: decoded.xattrs,
        };
        let idx = dirs.len();
        dirs.push(DirInfo {
            parent,
            name,
            dir: Some(Directory::new(stat)),
            children: Vec::new(),
        });
        let data = img.flat_data(&ino, image.len() as u64)?;
        for block in data.chunks(BLOCK_SIZE as usize) {
            for (child_name, child_nid) in parse_dirents(block)? {
                if child_name == b"." || child_name == b".." {
                    continue;
                }
                let child = img.inode(child_nid)?;
                match child.mode & S_IFMT {
                    S_IFDIR => todo.push((child_nid, idx, child_name.to_vec(), depth + 1)),
                    S_IFCHR if child.i_u == 0 => {} // an overlay whiteout (00-ff at the root)
                    _ => {
                        let leaf = match leaves.get(&child_nid) {
                            Some(l) => l.clone(),
                            None => {
                                let l = Arc::new(read_leaf(&img, child, child_name)?);
                                leaves.insert(child_nid, l.clone());
                                l
                            }
                        };
                        dirs[idx]
                            .children
                            .push((child_name.to_vec(), Child::Leaf(leaf)));
                    }
                }
            }
        }
        // Subdirectories are recorded when visited (below), in the parent's children.
        if idx > 0 {
            let (p, n) = (dirs[idx].parent, dirs[idx].name.clone());
            dirs[p].children.push((n, Child::Dir(idx)));
        }
    }
    // Assemble bottom-up: children always have larger indexes than their parents.
    for i in (0..dirs.len()).rev() {
        let children = std::mem::take(&mut dirs[i].children);
        for (name, child) in children {
            let inode = match child {
                Child::Leaf(l) => Inode::Leaf(l),
                Child::Dir(j) => match dirs[j].dir.take() {
                    Some(d) => Inode::Directory(Box::new(d)),
                    None => return corrupt("directory assembled twice"),
                },
            };
            let Some(dir) = dirs[i].dir.as_mut() else {
                return corrupt("directory assembled twice");
            };
            dir.insert(OsStr::from_bytes(&name), inode)
                .map_err(|e| ReadError::Corrupt(e.to_string()))?;
        }
    }
    let root = dirs
        .first_mut()
        .and_then(|d| d.dir.take())
        .ok_or_else(|| ReadError::Corrupt("no root directory".into()))?;
    Ok(FileSystem { root })
}

fn read_leaf(img: &Image<'_>, ino: RawInode<'_>, name: &[u8]) -> Result<Leaf, ReadError> {
    let ftype = ino.mode & S_IFMT;
    let empty_file = ftype == S_IFREG && ino.size == 0 && ino.layout != LAYOUT_CHUNK_BASED;
    let decoded = decode_xattrs(ino.xattrs.clone(), false, empty_file, img.version);
    let stat = Stat {
        mode: ino.mode & 0o7777,
        uid: ino.uid,
        gid: ino.gid,
        mtime: ino.mtime,
        xattrs: decoded.xattrs,
    };
    let content = match ftype {
        S_IFREG if decoded.whiteout => LeafContent::CharDevice(0),
        S_IFREG if ino.layout == LAYOUT_CHUNK_BASED => {
            LeafContent::Regular(RegularFile::External(Box::new(ExternalFile {
                size: ino.size,
                digest: decoded.digest,
                path: decoded.redirect.map(Vec::into_boxed_slice),
            })))
        }
        S_IFREG => {
            let data = img.flat_data(&ino, INLINE_CONTENT_MAX as u64)?;
            LeafContent::Regular(RegularFile::Inline(data.into_boxed_slice()))
        }
        S_IFLNK => {
            let target = img.flat_data(&ino, PATH_MAX as u64)?;
            if target.is_empty() {
                return corrupt(format!("empty symlink {}", String::from_utf8_lossy(name)));
            }
            LeafContent::Symlink(OsStr::from_bytes(&target).into())
        }
        S_IFCHR => LeafContent::CharDevice(u64::from(ino.i_u)),
        S_IFBLK => LeafContent::BlockDevice(u64::from(ino.i_u)),
        S_IFIFO => LeafContent::Fifo,
        S_IFSOCK => LeafContent::Socket,
        other => return corrupt(format!("unknown file type {other:o}")),
    };
    Ok(Leaf { stat, content })
}

/// The objects an image's files are redirected to, sorted and without duplicates.
///
/// Files with a digest but no redirect contribute their digest. A redirect that is not an
/// object path (`XX/<rest of hex>`) is an error: such an image was not made by cfs.
pub fn referenced_objects(image: &[u8]) -> Result<Vec<ObjectId>, ReadError> {
    // Walks the directories as `read` does (each once, depth-bounded, every inode decoded and
    // checked), but keeps no tree: memory is the image plus its directories' names and the
    // result, not a node per file (gc and fsck run this on every image; docs/performance.md).
    let img = Image::parse(image)?;
    let mut seen_dirs: HashMap<u64, ()> = HashMap::new();
    // (parent index, name) of each directory, for the path in a message.
    let mut dirs: Vec<(usize, Vec<u8>)> = Vec::new();
    let path_of = |dirs: &[(usize, Vec<u8>)], mut i: usize, name: &[u8]| {
        let mut parts = vec![name.to_vec()];
        while i > 0 {
            parts.push(dirs[i].1.clone());
            i = dirs[i].0;
        }
        parts.iter().rev().fold(String::new(), |mut s, p| {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(p));
            s
        })
    };
    let mut out = Vec::new();
    // (nid, parent dir index, name, depth)
    let mut todo: Vec<(u64, usize, Vec<u8>, usize)> = vec![(img.root_nid(), 0, Vec::new(), 0)];
    while let Some((nid, parent, name, depth)) = todo.pop() {
        if seen_dirs.insert(nid, ()).is_some() {
            return corrupt(format!("directory inode {nid} appears twice"));
        }
        if depth > MAX_DEPTH {
            return corrupt(format!("directories nested deeper than {MAX_DEPTH}"));
        }
        let ino = img.inode(nid)?;
        if ino.mode & S_IFMT != S_IFDIR {
            return corrupt(format!("inode {nid} is not a directory"));
        }
        let idx = dirs.len();
        dirs.push((parent, name));
        let data = img.flat_data(&ino, image.len() as u64)?;
        for block in data.chunks(BLOCK_SIZE as usize) {
            for (child_name, child_nid) in parse_dirents(block)? {
                if child_name == b"." || child_name == b".." {
                    continue;
                }
                let child = img.inode(child_nid)?;
                match child.mode & S_IFMT {
                    S_IFDIR => todo.push((child_nid, idx, child_name.to_vec(), depth + 1)),
                    S_IFCHR if child.i_u == 0 => {} // an overlay whiteout (00-ff at the root)
                    _ => {
                        let leaf = read_leaf(&img, child, child_name)?;
                        let LeafContent::Regular(RegularFile::External(ext)) = leaf.content else {
                            continue;
                        };
                        match (ext.path, ext.digest) {
                            (Some(p), _) => {
                                let s = String::from_utf8_lossy(&p);
                                let parsed = s
                                    .split_once('/')
                                    .and_then(|(d, r)| ObjectId::from_object_path(d, r).ok());
                                match parsed {
                                    Some(id) => out.push(id),
                                    None => {
                                        return Err(ReadError::NotAnObject {
                                            path: path_of(&dirs, idx, child_name),
                                            redirect: s.into_owned(),
                                        });
                                    }
                                }
                            }
                            (None, Some(d)) => out.push(d),
                            (None, None) => {}
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
