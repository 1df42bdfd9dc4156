//! The composefs EROFS writer: lays a [`FileSystem`] out exactly as libcomposefs
//! (`mkcomposefs`) does, so the same tree gives the same bytes (and so the same image ID).
//!
//! The steps, each mirroring libcomposefs's behaviour (see `docs/image.md` for the layout):
//!
//! 1. choose the format version (bumped from `min_version` to 1 when there are whiteouts and
//!    `max_version` allows it);
//! 2. number inodes breadth-first, entries in name order, a hardlinked file at its first name
//!    in depth-first order, with `.`/`..` and (at the root) the 256 overlay whiteouts `00`–`ff`;
//! 3. rewrite xattrs for overlayfs: escape `trusted.overlay.*`, add `metacopy`/`redirect` to
//!    external files, turn character devices 0/0 into escaped whiteouts, mark the root opaque;
//! 4. share every xattr (name and value) used by more than one inode;
//! 5. place inodes in 32-byte slots after the superblock, tails never crossing a block;
//! 6. write header, superblock, inodes, shared xattrs, then the data blocks; a value too
//!    large for its on-disk field is an error (`encode::fit`), never truncated;
//! 7. parse every inode back (`verify`) and refuse an image that does not say exactly what
//!    the tree (after the rewrite) says.
//!
//! Every inode's xattrs are first checked against the limits of [`crate::xattr`], whatever
//! built the tree.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::encode::*;
use super::format::*;
use super::node::{Data, Node, node_path, over_budget, set_xattr_at};
use super::place::{Shared, place, shared_xattrs, xattr_layout};
use super::verify::{self, Expect, ExpectData};
use super::{FormatOptions, WriteError};
use crate::tree::*;
use crate::xattr::{check_xattrs, xattr_charge};

enum Pending<'a> {
    Dot,
    DotDot,
    Dir(&'a Directory),
    Leaf(&'a Arc<Leaf>),
    Whiteout,
}

struct Builder<'a> {
    nodes: Vec<Node<'a>>,
    dirs: Vec<Option<&'a Directory>>,
    /// For leaves with several names only: the name that is the inode.
    primary: HashMap<LeafId, Vec<u8>>,
    /// For leaves with several names only: their link count.
    counts: HashMap<LeafId, u64>,
    /// For leaves with several names only: their node.
    leaf_node: HashMap<LeafId, usize>,
}

impl<'a> Builder<'a> {
    /// A node for `stat`; `path` (built by the caller for this call only) names it in errors.
    fn new_node(
        &mut self,
        path: &[u8],
        name: &'a [u8],
        parent: usize,
        stat: &'a Stat,
        mode: u32,
    ) -> Result<Node<'a>, WriteError> {
        // The limits every tree meets, whatever built it (see `crate::xattr`).
        check_xattrs(&show(path), &stat.xattrs)?;
        let xattrs: BTreeMap<_, _> = stat
            .xattrs
            .iter()
            .map(|(k, v)| (Cow::Borrowed(&k[..]), Cow::Borrowed(&v[..])))
            .collect();
        let budget = if xattrs.is_empty() {
            0
        } else {
            XATTR_IBODY_HEADER_SIZE as usize
                + xattrs
                    .iter()
                    .map(|(k, v)| xattr_charge(k.len(), v.len()))
                    .sum::<usize>()
        };
        let parent = u32::try_from(parent).map_err(|_| WriteError::TooLarge)?;
        Ok(Node {
            name,
            mode,
            uid: stat.uid,
            gid: stat.gid,
            mtime: stat.mtime,
            nlink: 1,
            rdev: 0,
            size: 0,
            data: Data::None,
            xattrs,
            xattr_budget: budget,
            parent,
            synthetic: false,
            dirents: None,
        })
    }

    fn add_dir(
        &mut self,
        path: &[u8],
        name: &'a [u8],
        parent: usize,
        dir: &'a Directory,
    ) -> Result<usize, WriteError> {
        let mode = S_IFDIR | (dir.stat.mode & 0o7777);
        let mut node = self.new_node(path, name, parent, &dir.stat, mode)?;
        node.nlink = dir.nlink();
        node.data = Data::Dir;
        self.nodes.push(node);
        self.dirs.push(Some(dir));
        Ok(self.nodes.len() - 1)
    }

    fn add_leaf(
        &mut self,
        path: &[u8],
        name: &'a [u8],
        parent: usize,
        leaf: &'a Arc<Leaf>,
    ) -> Result<usize, WriteError> {
        let id = Arc::as_ptr(leaf);
        let mut node = self.new_node(path, name, parent, &leaf.stat, leaf.mode())?;
        node.nlink = self.counts.get(&id).copied().unwrap_or(1);
        node.size = leaf.size();
        match &leaf.content {
            LeafContent::Regular(RegularFile::Inline(data)) => {
                if data.len() > INLINE_CONTENT_MAX {
                    return Err(WriteError::InlineTooLarge(show(path), data.len()));
                }
                if !data.is_empty() {
                    node.data = Data::Inline(data);
                }
            }
            LeafContent::Regular(RegularFile::External(ext)) => {
                if ext.size > 0 {
                    let bits = chunk_bits(ext.size);
                    let count = ext.size.div_ceil(1u64 << bits);
                    if count > MAX_CHUNKS {
                        return Err(WriteError::FileTooLarge(show(path), ext.size));
                    }
                    node.data = Data::External {
                        ext,
                        chunk_bits: bits,
                        chunk_count: count,
                    };
                }
            }
            LeafContent::Symlink(target) => {
                let t = target.as_bytes();
                if t.is_empty() || t.len() > PATH_MAX {
                    return Err(WriteError::BadSymlink(show(path)));
                }
                node.data = Data::Symlink(t);
            }
            LeafContent::CharDevice(r) | LeafContent::BlockDevice(r) => {
                // EROFS keeps 32 bits (the kernel's dev_t: 12-bit major, 20-bit minor).
                node.rdev = fit::<u32>(path, "rdev", *r)?;
            }
            LeafContent::Fifo | LeafContent::Socket => {}
        }
        self.nodes.push(node);
        self.dirs.push(None);
        let idx = self.nodes.len() - 1;
        if self.counts.contains_key(&id) {
            // Only leaves with several names are reached through `Target::Leaf`.
            self.leaf_node.insert(id, idx);
        }
        Ok(idx)
    }

    /// Numbers all inodes breadth-first and records each directory's entries.
    fn build(&mut self, fs: &'a FileSystem, root_whiteouts: bool) -> Result<(), WriteError> {
        self.add_dir(b"", b"", 0, &fs.root)?;
        let mut i = 0;
        while i < self.nodes.len() {
            let Some(dir) = self.dirs[i] else {
                i += 1;
                continue;
            };
            let mut pending: Vec<(&'a [u8], Pending<'a>)> = Vec::with_capacity(dir.len() + 2);
            pending.push((b".", Pending::Dot));
            pending.push((b"..", Pending::DotDot));
            for (name, inode) in dir.entries() {
                let p = match inode {
                    Inode::Directory(d) => Pending::Dir(d),
                    Inode::Leaf(l) => Pending::Leaf(l),
                };
                pending.push((name.as_bytes(), p));
            }
            if i == 0 && root_whiteouts {
                for w in &ROOT_WHITEOUTS {
                    if dir.get(std::ffi::OsStr::from_bytes(w)).is_none() {
                        pending.push((w, Pending::Whiteout));
                    }
                }
            }
            pending.sort_by(|a, b| a.0.cmp(b.0));

            // This directory's path, for its children's paths (built one at a time, for the
            // hardlink check and messages; nodes keep only their names).
            let dir_path = node_path(&self.nodes, i);
            let mut path = Vec::with_capacity(dir_path.len() + 1 + NAME_MAX);
            let mut dirents = Vec::with_capacity(pending.len());
            for (name, p) in pending {
                path.clear();
                path.extend_from_slice(&dir_path);
                path.push(b'/');
                path.extend_from_slice(name);
                let target = match p {
                    Pending::Dot => Target::Node(i),
                    Pending::DotDot => Target::Node(self.nodes[i].parent as usize),
                    Pending::Dir(d) => Target::Node(self.add_dir(&path, name, i, d)?),
                    Pending::Leaf(l) => {
                        let id = Arc::as_ptr(l);
                        if self.primary.get(&id).is_none_or(|p| *p == path) {
                            Target::Node(self.add_leaf(&path, name, i, l)?)
                        } else {
                            Target::Leaf(id)
                        }
                    }
                    Pending::Whiteout => {
                        let root = &fs.root.stat;
                        let mut node = self.new_node(&path, name, 0, root, S_IFCHR | 0o644)?;
                        node.xattrs.clear();
                        node.xattr_budget = 0;
                        node.synthetic = true;
                        if let Some(label) = root.xattrs.get(&b"security.selinux"[..]) {
                            let key = b"security.selinux";
                            node.set_xattr(key, Cow::Borrowed(label))
                                .map_err(|l| over_budget(&path, key, l))?;
                        }
                        self.nodes.push(node);
                        self.dirs.push(None);
                        Target::Node(self.nodes.len() - 1)
                    }
                };
                dirents.push(Dirent { name, target });
            }
            self.nodes[i].dirents = Some(Box::new(dirents));
            i += 1;
        }
        Ok(())
    }
}

/// The 256 overlay whiteouts `00`–`ff` at the root, as names the nodes can borrow.
static ROOT_WHITEOUTS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// Escapes a file's own overlayfs xattrs so overlayfs shows them instead of acting on them.
fn escape_overlay_xattrs(node: &mut Node<'_>) {
    if !node.xattrs.keys().any(|k| k.starts_with(overlay::PREFIX)) {
        return;
    }
    let old = std::mem::take(&mut node.xattrs);
    for (k, v) in old {
        let k = match k.strip_prefix(overlay::PREFIX) {
            Some(rest) => {
                let mut new = overlay::ESCAPED_PREFIX.to_vec();
                new.extend_from_slice(rest);
                Cow::Owned(new)
            }
            None => k,
        };
        node.xattrs.insert(k, v);
    }
}

/// Step 3: the overlayfs rewrite, in breadth-first order (parents before children, as
/// libcomposefs's pre-order walk).
fn rewrite_for_overlay(nodes: &mut [Node<'_>], version: u32) -> Result<(), WriteError> {
    for i in 0..nodes.len() {
        if nodes[i].synthetic {
            continue;
        }
        escape_overlay_xattrs(&mut nodes[i]);
        if let Data::External { ext, .. } = nodes[i].data {
            let metacopy: Vec<u8> = match &ext.digest {
                Some(d) => {
                    let bytes = d.as_bytes();
                    let len = fit::<u8>(
                        &node_path(nodes, i),
                        "metacopy digest length",
                        4 + bytes.len() as u64,
                    )?;
                    let mut v = vec![0, len, 0, d.algorithm().kernel_id()];
                    v.extend_from_slice(bytes);
                    v
                }
                None => Vec::new(),
            };
            set_xattr_at(nodes, i, overlay::METACOPY, Cow::Owned(metacopy))?;
            if let Some(path) = ext.path.as_deref().filter(|p| !p.is_empty()) {
                let mut redirect = b"/".to_vec();
                redirect.extend_from_slice(path);
                set_xattr_at(nodes, i, overlay::REDIRECT, Cow::Owned(redirect))?;
            }
        }
        if nodes[i].file_type() == S_IFCHR && nodes[i].rdev == 0 {
            let node = &mut nodes[i];
            node.size = 0;
            node.mode = S_IFREG | (node.mode & !S_IFMT);
            node.data = Data::None;
            let parent = node.parent as usize;
            set_xattr_at(nodes, i, overlay::ESCAPED_WHITEOUT, Cow::Borrowed(b""))?;
            set_xattr_at(nodes, i, overlay::USER_WHITEOUT, Cow::Borrowed(b""))?;
            set_xattr_at(
                nodes,
                parent,
                overlay::ESCAPED_WHITEOUTS,
                Cow::Borrowed(b""),
            )?;
            set_xattr_at(nodes, parent, overlay::USER_WHITEOUTS, Cow::Borrowed(b""))?;
            if version >= 1 {
                set_xattr_at(nodes, parent, overlay::ESCAPED_OPAQUE, Cow::Borrowed(b"x"))?;
                set_xattr_at(nodes, parent, overlay::USER_OPAQUE, Cow::Borrowed(b"x"))?;
            }
        }
    }
    nodes[0]
        .set_xattr(overlay::OPAQUE, Cow::Borrowed(b"y"))
        .map_err(|l| over_budget(b"", overlay::OPAQUE, l))?;
    Ok(())
}
/// Writes the image. See the module documentation.
pub fn write(fs: &FileSystem, options: FormatOptions) -> Result<Vec<u8>, WriteError> {
    if options.min_version > 1 || options.max_version > 1 {
        return Err(WriteError::UnsupportedVersion(
            options.min_version.max(options.max_version),
        ));
    }
    let max_version = options.max_version.max(options.min_version);
    let mut version = options.min_version;
    if version < 1 && max_version >= 1 && has_whiteout(&fs.root) {
        version = 1;
    }

    // Step 2: inodes. Memory grows with the file count, so: the hardlink maps hold only the
    // leaves with several names (a leaf without is its own primary name, link count 1), and
    // the node list is allocated once (doubling would briefly hold 3x; docs/performance.md).
    let mut counts = fs.link_counts();
    counts.retain(|_, n| *n > 1);
    counts.shrink_to_fit();
    let mut primary = HashMap::with_capacity(counts.len());
    let mut entries = 0;
    fs.walk(|path, inode| {
        entries += 1;
        if let Inode::Leaf(l) = inode
            && counts.contains_key(&Arc::as_ptr(l))
        {
            primary
                .entry(Arc::as_ptr(l))
                .or_insert_with(|| path.to_vec());
        }
    });
    // The root, every name (hardlinks counted once per name: at most that many inodes) and
    // the root whiteouts.
    let capacity = 1 + entries + 256;
    let mut b = Builder {
        nodes: Vec::with_capacity(capacity),
        dirs: Vec::with_capacity(capacity),
        primary,
        leaf_node: HashMap::with_capacity(counts.len()),
        counts,
    };
    b.build(fs, true)?;
    let Builder {
        mut nodes,
        leaf_node,
        dirs,
        primary,
        counts,
    } = b;
    drop((dirs, primary, counts));

    // Step 3: overlayfs rewrite.
    rewrite_for_overlay(&mut nodes, version)?;

    // Resolve directory entries to node indexes (hardlinks to their inode's node).
    for n in &mut nodes {
        for d in n.dirents.iter_mut().flat_map(|d| d.iter_mut()) {
            if let Target::Leaf(id) = d.target {
                let i = leaf_node
                    .get(&id)
                    .copied()
                    .ok_or_else(|| WriteError::Internal("hardlink target not numbered".into()))?;
                d.target = Target::Node(i);
            }
        }
    }
    drop(leaf_node);
    let nodes = nodes;
    let target = |t: Target| -> Result<&Node<'_>, WriteError> {
        match t {
            Target::Node(i) => nodes
                .get(i)
                .ok_or_else(|| WriteError::Internal(format!("no node {i}"))),
            Target::Leaf(_) => Err(WriteError::Internal("unresolved hardlink".into())),
        }
    };

    let has_acl = nodes.iter().any(|n| {
        n.xattrs.contains_key(&b"system.posix_acl_access"[..])
            || n.xattrs.contains_key(&b"system.posix_acl_default"[..])
    });
    let min_mtime = nodes.iter().map(|n| n.mtime).min().unwrap_or_default();

    // Step 4: shared xattrs.
    let Shared {
        list: shared_list,
        offsets: shared_offset,
        size: shared_size,
    } = shared_xattrs(&nodes);

    // Step 5: inode placement.
    let (placed, inodes_end, n_data_blocks) = place(&nodes, &shared_offset, min_mtime)?;
    let data_start = round_up(inodes_end + shared_size, BLOCK_SIZE);
    let root_nid = u16::try_from(placed[0].nid)
        .map_err(|_| WriteError::Internal("root inode number too large".into()))?;
    let total_blocks = data_start / BLOCK_SIZE + n_data_blocks;
    let total_blocks = u32::try_from(total_blocks).map_err(|_| WriteError::TooLarge)?;
    let xattr_blkaddr = u32::try_from(inodes_end / BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?;
    // A directory's entries as (nid, file type), built for one directory at a time.
    let targets = |n: &Node<'_>| -> Result<Vec<(u64, u8)>, WriteError> {
        n.dirents()
            .iter()
            .map(|d| {
                let Target::Node(i) = d.target else {
                    return Err(WriteError::Internal("unresolved hardlink".into()));
                };
                Ok((placed[i].nid, ftype_of_mode(target(d.target)?.mode)))
            })
            .collect()
    };

    // Step 6: bytes.
    let capacity =
        usize::try_from(u64::from(total_blocks) * BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?;
    let mut out: Vec<u8> = Vec::with_capacity(capacity);
    out.put_u32(COMPOSEFS_MAGIC);
    out.put_u32(COMPOSEFS_HEADER_VERSION);
    out.put_u32(if has_acl { COMPOSEFS_FLAG_HAS_ACL } else { 0 });
    out.put_u32(version);
    out.put_zeros(16);
    out.put_zeros(SUPER_OFFSET - COMPOSEFS_HEADER_SIZE as u64);

    out.put_u32(EROFS_MAGIC);
    out.put_u32(0); // checksum
    out.put_u32(FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER);
    out.put_u8(fit(b"", "block size bits", u64::from(BLOCK_BITS))?);
    out.put_u8(0); // sb_extslots
    out.put_u16(root_nid);
    out.put_u64(nodes.len() as u64);
    // Two's complement, as the kernel reads it back (a time before 1970 stays negative).
    out.put_u64(min_mtime.sec.cast_unsigned());
    out.put_u32(min_mtime.nsec);
    out.put_u32(total_blocks);
    out.put_u32(fit(
        b"",
        "meta_blkaddr",
        (SUPER_OFFSET + SUPER_SIZE) / BLOCK_SIZE,
    )?);
    out.put_u32(xattr_blkaddr);
    out.put_zeros(SUPER_SIZE - 48);

    let mut current_end = data_start;
    for (idx, (n, p)) in nodes.iter().zip(&placed).enumerate() {
        // Built for this inode only (for messages).
        let path = node_path(&nodes, idx);
        let path = &path[..];
        let xl = xattr_layout(n, &shared_offset);
        out.put_zeros(p.ipad());
        debug_assert_eq!(out.len() as u64 % SLOT_SIZE, 0);
        let ftype = n.file_type();
        let mut layout = if p.tail() > 0 {
            LAYOUT_FLAT_INLINE
        } else {
            LAYOUT_FLAT_PLAIN
        };
        let mut blkaddr: Option<u32> = None;
        if p.n_blocks() > 0 && matches!(ftype, S_IFDIR | S_IFREG | S_IFLNK) {
            blkaddr =
                Some(u32::try_from(current_end / BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?);
            current_end += BLOCK_SIZE * p.n_blocks();
        }
        let mut i_u: u32 = blkaddr.unwrap_or(0);
        let size = match ftype {
            S_IFDIR => p.n_blocks() * BLOCK_SIZE + p.tail(),
            S_IFREG => {
                if let Data::External { chunk_bits, .. } = n.data {
                    layout = LAYOUT_CHUNK_BASED;
                    // The chunk format shares its first 16 bits with the block address.
                    i_u = (i_u & 0xFFFF_0000) | (chunk_bits - BLOCK_BITS);
                }
                n.size
            }
            S_IFLNK => {
                if p.n_blocks() == 0 {
                    p.tail()
                } else {
                    n.size
                }
            }
            _ => 0,
        };
        if matches!(ftype, S_IFCHR | S_IFBLK) {
            i_u = n.rdev;
        }
        let icount: u16 = if xl.size == 0 {
            0
        } else {
            fit(
                path,
                "xattr count (i_xattr_icount)",
                (xl.size - XATTR_IBODY_HEADER_SIZE) / 4 + 1,
            )?
        };
        let format = (layout << I_DATALAYOUT_BIT) | (u16::from(!p.compact) << I_VERSION_BIT);
        let mode: u16 = fit(path, "mode", u64::from(n.mode))?;
        let ino: u32 = fit(path, "inode number", idx as u64)?;
        if p.compact {
            out.put_u16(format);
            out.put_u16(icount);
            out.put_u16(mode);
            out.put_u16(fit(path, "nlink (compact inode)", n.nlink)?);
            out.put_u32(fit(path, "size (compact inode)", size)?);
            out.put_u32(0);
            out.put_u32(i_u);
            out.put_u32(ino);
            out.put_u16(fit(path, "uid (compact inode)", u64::from(n.uid))?);
            out.put_u16(fit(path, "gid (compact inode)", u64::from(n.gid))?);
            out.put_u32(0);
        } else {
            out.put_u16(format);
            out.put_u16(icount);
            out.put_u16(mode);
            out.put_u16(0);
            out.put_u64(size);
            out.put_u32(i_u);
            out.put_u32(ino);
            out.put_u32(n.uid);
            out.put_u32(n.gid);
            out.put_u64(n.mtime.sec.cast_unsigned());
            out.put_u32(n.mtime.nsec);
            out.put_u32(fit(path, "nlink", n.nlink)?);
            out.put_zeros(16);
        }
        if xl.size > 0 {
            let start = out.len();
            let mut filter = 0u32;
            for k in n.xattrs.keys() {
                let (index, suffix) = xattr_split(k);
                let bit = xxh32(suffix, XATTR_FILTER_SEED.wrapping_add(u32::from(index))) & 31;
                filter |= 1 << bit;
            }
            out.put_u32(!filter);
            out.put_u8(fit(path, "shared xattr count", xl.shared.len() as u64)?);
            out.put_zeros(7);
            for off in &xl.shared {
                out.put_u32(fit(
                    path,
                    "shared xattr id",
                    (inodes_end % BLOCK_SIZE + off) / 4,
                )?);
            }
            let entries: Vec<_> = n.xattrs.iter().collect();
            for &i in &xl.inline {
                let (k, v) = entries[i];
                put_xattr_entry(&mut out, path, k, v)?;
            }
            let written = (out.len() - start) as u64;
            out.put_zeros(xl.size - written);
        }
        match n.data {
            Data::Dir => {
                if p.tail() > 0 {
                    let chunks = dirent_chunks(n.dirents().iter().map(|d| d.name.len()));
                    if let Some(&(s, e, _)) = chunks.last() {
                        let t = targets(n)?;
                        put_dirents(&mut out, path, &n.dirents()[s..e], &t[s..e])?;
                    }
                }
            }
            Data::Symlink(t) => {
                if p.n_blocks() == 0 {
                    out.extend_from_slice(t);
                }
            }
            Data::Inline(c) => {
                if p.tail() > 0 {
                    let tail = usize::try_from(p.tail()).map_err(|_| WriteError::TooLarge)?;
                    out.extend_from_slice(&c[c.len().saturating_sub(tail)..]);
                }
            }
            Data::External { chunk_count, .. } => {
                if p.tail() > 0 {
                    for _ in 0..chunk_count {
                        out.put_u32(NULL_ADDR);
                    }
                }
            }
            Data::None => {}
        }
    }
    out.put_zeros(round_up(out.len() as u64, SLOT_SIZE) - out.len() as u64);
    if out.len() as u64 != inodes_end {
        return Err(WriteError::Internal("inode area size mismatch".into()));
    }
    for (k, v) in &shared_list {
        put_xattr_entry(&mut out, b"(shared xattrs)", k, v)?;
    }
    out.put_zeros(round_up(out.len() as u64, BLOCK_SIZE) - out.len() as u64);
    if out.len() as u64 != data_start {
        return Err(WriteError::Internal("data start mismatch".into()));
    }

    for (idx, (n, p)) in nodes.iter().zip(&placed).enumerate() {
        if p.n_blocks() == 0 {
            continue;
        }
        match n.data {
            Data::Dir => {
                let path = node_path(&nodes, idx);
                let t = targets(n)?;
                let chunks = dirent_chunks(n.dirents().iter().map(|d| d.name.len()));
                let blocks = usize::try_from(p.n_blocks()).map_err(|_| WriteError::TooLarge)?;
                for &(s, e, _) in chunks.iter().take(blocks) {
                    put_dirents(&mut out, &path, &n.dirents()[s..e], &t[s..e])?;
                    pad_block(&mut out);
                }
            }
            Data::Inline(c) => {
                let blocks =
                    usize::try_from(p.n_blocks() * BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?;
                out.extend_from_slice(&c[..blocks.min(c.len())]);
                pad_block(&mut out);
            }
            Data::External { .. } => {
                for _ in 0..BLOCK_SIZE / 4 {
                    out.put_u32(NULL_ADDR);
                }
            }
            Data::Symlink(t) => {
                out.extend_from_slice(t);
                pad_block(&mut out);
            }
            Data::None => {}
        }
    }
    if out.len() as u64 != u64::from(total_blocks) * BLOCK_SIZE {
        return Err(WriteError::Internal(format!(
            "image size {} does not match {} blocks",
            out.len(),
            total_blocks
        )));
    }

    // Parse every inode back; refuse an image that says something else than the tree. What
    // each inode should say is built as it is checked, one at a time.
    let placed = &placed;
    let expected = nodes.iter().zip(placed).enumerate().map(|(idx, (n, p))| {
        Ok(Expect {
            path: node_path(&nodes, idx),
            nid: p.nid,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            xattrs: &n.xattrs,
            data: match n.data {
                Data::Dir => ExpectData::Dir(Box::new(n.dirents().iter().map(move |d| {
                    match d.target {
                        Target::Node(i) => placed
                            .get(i)
                            .map(|p| (d.name, p.nid))
                            .ok_or_else(|| WriteError::Internal(format!("no node {i}"))),
                        Target::Leaf(_) => Err(WriteError::Internal("unresolved hardlink".into())),
                    }
                }))),
                Data::Symlink(b) | Data::Inline(b) => ExpectData::Bytes(b),
                Data::External { .. } => ExpectData::External(n.size),
                Data::None => ExpectData::None,
            },
        })
    });
    verify::verify(&out, expected)?;
    Ok(out)
}
