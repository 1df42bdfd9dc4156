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
use super::verify::{self, Expect, ExpectData};
use super::{FormatOptions, WriteError};
use crate::tree::*;
use crate::xattr::{XATTR_EXTERNAL_BUDGET, XattrError, XattrLimit, check_xattrs, xattr_charge};

/// What an inode holds besides metadata.
enum Data<'a> {
    Dir,
    Symlink(&'a [u8]),
    Inline(&'a [u8]),
    External { chunk_bits: u32, chunk_count: u64 },
    None,
}

struct Node<'a> {
    path: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Mtime,
    nlink: u64,
    rdev: u64,
    size: u64,
    data: Data<'a>,
    external: Option<&'a ExternalFile>,
    xattrs: BTreeMap<Cow<'a, [u8]>, Cow<'a, [u8]>>,
    xattr_budget: usize,
    parent: usize,
    /// The 256 root whiteouts are added after the overlay rewrite and never rewritten.
    synthetic: bool,
    dirents: Vec<Dirent<'a>>,
    // Layout.
    n_blocks: u64,
    tail: u64,
    compact: bool,
    ipad: u64,
    nid: u64,
}

impl<'a> Node<'a> {
    fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Sets an xattr, charging it against the per-inode budget like libcomposefs does.
    fn set_xattr(&mut self, name: &'a [u8], value: Cow<'a, [u8]>) -> Result<(), WriteError> {
        if let Some(old) = self.xattrs.remove(name) {
            self.xattr_budget = if self.xattrs.is_empty() {
                0
            } else {
                self.xattr_budget
                    .saturating_sub(xattr_charge(name.len(), old.len()))
            };
        }
        let mut charge = xattr_charge(name.len(), value.len());
        if self.xattrs.is_empty() {
            charge += XATTR_IBODY_HEADER_SIZE as usize;
        }
        if self.xattr_budget + charge > XATTR_EXTERNAL_BUDGET {
            return Err(WriteError::Xattr(XattrError {
                path: show(&self.path),
                name: crate::xattr::show_name(name),
                limit: XattrLimit::BudgetExceeded(self.xattr_budget + charge),
            }));
        }
        self.xattr_budget += charge;
        self.xattrs.insert(Cow::Borrowed(name), value);
        Ok(())
    }
}

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
    fn new_node(
        &mut self,
        path: Vec<u8>,
        parent: usize,
        stat: &'a Stat,
        mode: u32,
    ) -> Result<Node<'a>, WriteError> {
        // The limits every tree meets, whatever built it (see `crate::xattr`).
        check_xattrs(&show(&path), &stat.xattrs)?;
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
        Ok(Node {
            path,
            mode,
            uid: stat.uid,
            gid: stat.gid,
            mtime: stat.mtime,
            nlink: 1,
            rdev: 0,
            size: 0,
            data: Data::None,
            external: None,
            xattrs,
            xattr_budget: budget,
            parent,
            synthetic: false,
            dirents: Vec::new(),
            n_blocks: 0,
            tail: 0,
            compact: false,
            ipad: 0,
            nid: 0,
        })
    }

    fn add_dir(
        &mut self,
        path: Vec<u8>,
        parent: usize,
        dir: &'a Directory,
    ) -> Result<usize, WriteError> {
        let mut node =
            self.new_node(path, parent, &dir.stat, S_IFDIR | (dir.stat.mode & 0o7777))?;
        node.nlink = dir.nlink();
        node.data = Data::Dir;
        self.nodes.push(node);
        self.dirs.push(Some(dir));
        Ok(self.nodes.len() - 1)
    }

    fn add_leaf(
        &mut self,
        path: Vec<u8>,
        parent: usize,
        leaf: &'a Arc<Leaf>,
    ) -> Result<usize, WriteError> {
        let id = Arc::as_ptr(leaf);
        let mut node = self.new_node(path, parent, &leaf.stat, leaf.mode())?;
        node.nlink = self.counts.get(&id).copied().unwrap_or(1);
        node.size = leaf.size();
        match &leaf.content {
            LeafContent::Regular(RegularFile::Inline(data)) => {
                if data.len() > INLINE_CONTENT_MAX {
                    return Err(WriteError::InlineTooLarge(show(&node.path), data.len()));
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
                        return Err(WriteError::FileTooLarge(show(&node.path), ext.size));
                    }
                    node.data = Data::External {
                        chunk_bits: bits,
                        chunk_count: count,
                    };
                    node.external = Some(ext);
                }
            }
            LeafContent::Symlink(target) => {
                let t = target.as_bytes();
                if t.is_empty() || t.len() > PATH_MAX {
                    return Err(WriteError::BadSymlink(show(&node.path)));
                }
                node.data = Data::Symlink(t);
            }
            LeafContent::CharDevice(r) | LeafContent::BlockDevice(r) => {
                // EROFS keeps 32 bits (the kernel's dev_t: 12-bit major, 20-bit minor).
                fit::<u32>(&node.path, "rdev", *r)?;
                node.rdev = *r;
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
        self.add_dir(Vec::new(), 0, &fs.root)?;
        let mut i = 0;
        while i < self.nodes.len() {
            let Some(dir) = self.dirs[i] else {
                i += 1;
                continue;
            };
            let mut pending: Vec<(Cow<'a, [u8]>, Pending<'a>)> = Vec::with_capacity(dir.len() + 2);
            pending.push((Cow::Borrowed(b"."), Pending::Dot));
            pending.push((Cow::Borrowed(b".."), Pending::DotDot));
            for (name, inode) in dir.entries() {
                let p = match inode {
                    Inode::Directory(d) => Pending::Dir(d),
                    Inode::Leaf(l) => Pending::Leaf(l),
                };
                pending.push((Cow::Borrowed(name.as_bytes()), p));
            }
            if i == 0 && root_whiteouts {
                for w in root_whiteout_names() {
                    if dir.get(std::ffi::OsStr::from_bytes(&w)).is_none() {
                        pending.push((Cow::Owned(w.to_vec()), Pending::Whiteout));
                    }
                }
            }
            pending.sort_by(|a, b| a.0.cmp(&b.0));

            let mut dirents = Vec::with_capacity(pending.len());
            for (name, p) in pending {
                let child_path = || {
                    let mut path = self.nodes[i].path.clone();
                    path.push(b'/');
                    path.extend_from_slice(&name);
                    path
                };
                let target = match p {
                    Pending::Dot => Target::Node(i),
                    Pending::DotDot => Target::Node(self.nodes[i].parent),
                    Pending::Dir(d) => {
                        let path = child_path();
                        Target::Node(self.add_dir(path, i, d)?)
                    }
                    Pending::Leaf(l) => {
                        let path = child_path();
                        let id = Arc::as_ptr(l);
                        if self.primary.get(&id).is_none_or(|p| *p == path) {
                            Target::Node(self.add_leaf(path, i, l)?)
                        } else {
                            Target::Leaf(id)
                        }
                    }
                    Pending::Whiteout => {
                        let path = child_path();
                        let root = &fs.root.stat;
                        let mut node = self.new_node(path, 0, root, S_IFCHR | 0o644)?;
                        node.xattrs.clear();
                        node.xattr_budget = 0;
                        node.synthetic = true;
                        if let Some(label) = root.xattrs.get(&b"security.selinux"[..]) {
                            node.set_xattr(b"security.selinux", Cow::Borrowed(label))?;
                        }
                        self.nodes.push(node);
                        self.dirs.push(None);
                        Target::Node(self.nodes.len() - 1)
                    }
                };
                dirents.push(Dirent { name, target });
            }
            self.nodes[i].dirents = dirents;
            i += 1;
        }
        Ok(())
    }
}

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
        if let Some(ext) = nodes[i].external {
            let metacopy: Vec<u8> = match &ext.digest {
                Some(d) => {
                    let bytes = d.as_bytes();
                    let len = fit::<u8>(
                        &nodes[i].path,
                        "metacopy digest length",
                        4 + bytes.len() as u64,
                    )?;
                    let mut v = vec![0, len, 0, d.algorithm().kernel_id()];
                    v.extend_from_slice(bytes);
                    v
                }
                None => Vec::new(),
            };
            nodes[i].set_xattr(overlay::METACOPY, Cow::Owned(metacopy))?;
            if let Some(path) = ext.path.as_deref().filter(|p| !p.is_empty()) {
                let mut redirect = b"/".to_vec();
                redirect.extend_from_slice(path);
                nodes[i].set_xattr(overlay::REDIRECT, Cow::Owned(redirect))?;
            }
        }
        if nodes[i].file_type() == S_IFCHR && nodes[i].rdev == 0 {
            let node = &mut nodes[i];
            node.size = 0;
            node.mode = S_IFREG | (node.mode & !S_IFMT);
            node.data = Data::None;
            node.set_xattr(overlay::ESCAPED_WHITEOUT, Cow::Borrowed(b""))?;
            node.set_xattr(overlay::USER_WHITEOUT, Cow::Borrowed(b""))?;
            let parent = &mut nodes[node_parent(nodes, i)];
            parent.set_xattr(overlay::ESCAPED_WHITEOUTS, Cow::Borrowed(b""))?;
            parent.set_xattr(overlay::USER_WHITEOUTS, Cow::Borrowed(b""))?;
            if version >= 1 {
                parent.set_xattr(overlay::ESCAPED_OPAQUE, Cow::Borrowed(b"x"))?;
                parent.set_xattr(overlay::USER_OPAQUE, Cow::Borrowed(b"x"))?;
            }
        }
    }
    nodes[0].set_xattr(overlay::OPAQUE, Cow::Borrowed(b"y"))?;
    Ok(())
}

fn node_parent(nodes: &[Node<'_>], i: usize) -> usize {
    nodes[i].parent
}

/// Per-inode xattr layout: which are shared (their offsets) and the ibody size.
struct XattrLayout {
    shared: Vec<u64>,
    inline: Vec<usize>,
    size: u64,
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
    let leaf_node = std::mem::take(&mut b.leaf_node);
    let mut nodes = b.nodes;

    // Step 3: overlayfs rewrite.
    rewrite_for_overlay(&mut nodes, version)?;

    // Resolve directory entries to node indexes.
    let resolve = |t: Target| -> Result<usize, WriteError> {
        match t {
            Target::Node(i) => Ok(i),
            Target::Leaf(id) => leaf_node
                .get(&id)
                .copied()
                .ok_or_else(|| WriteError::Internal("hardlink target not numbered".into())),
        }
    };

    let has_acl = nodes.iter().any(|n| {
        n.xattrs.contains_key(&b"system.posix_acl_access"[..])
            || n.xattrs.contains_key(&b"system.posix_acl_default"[..])
    });
    let min_mtime = nodes.iter().map(|n| n.mtime).min().unwrap_or_default();

    // Step 4: shared xattrs.
    let (shared_list, xattr_layouts, shared_size) = {
        let mut use_count: HashMap<(&[u8], &[u8]), u32> = HashMap::new();
        for n in &nodes {
            for (k, v) in &n.xattrs {
                *use_count.entry((k, v)).or_insert(0) += 1;
            }
        }
        let mut shared_list: Vec<(&[u8], &[u8])> = use_count
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(kv, _)| *kv)
            .collect();
        shared_list.sort_by(|a, b| {
            b.0.cmp(a.0)
                .then(b.1.len().cmp(&a.1.len()))
                .then(b.1.cmp(a.1))
        });
        let mut shared_offset: HashMap<(&[u8], &[u8]), u64> = HashMap::new();
        let mut shared_size = 0u64;
        for kv in &shared_list {
            shared_offset.insert(*kv, shared_size);
            shared_size += xattr_entry_size(kv.0, kv.1);
        }
        let xattr_layouts: Vec<XattrLayout> = nodes
            .iter()
            .map(|n| {
                let mut layout = XattrLayout {
                    shared: Vec::new(),
                    inline: Vec::new(),
                    size: 0,
                };
                let mut inline_size = 0;
                for (idx, (k, v)) in n.xattrs.iter().enumerate() {
                    match shared_offset.get(&(&k[..], &v[..])) {
                        Some(off) if layout.shared.len() < MAX_SHARED_PER_INODE => {
                            layout.shared.push(*off)
                        }
                        _ => {
                            layout.inline.push(idx);
                            inline_size += xattr_entry_size(k, v);
                        }
                    }
                }
                if !n.xattrs.is_empty() {
                    layout.size = round_up(
                        XATTR_IBODY_HEADER_SIZE + 4 * layout.shared.len() as u64 + inline_size,
                        4,
                    );
                }
                layout
            })
            .collect();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = shared_list
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        (owned, xattr_layouts, shared_size)
    };

    // Step 5: inode placement.
    let mut pos = SUPER_OFFSET + SUPER_SIZE;
    let mut n_data_blocks = 0u64;
    for (n, xl) in nodes.iter_mut().zip(&xattr_layouts) {
        // Data sizes.
        match n.data {
            Data::Dir => {
                let (blocks, tail) = dir_blocks(n.dirents.iter().map(|d| d.name.len()));
                n.n_blocks = blocks;
                n.tail = tail;
            }
            Data::Symlink(t) => {
                n.n_blocks = 0;
                n.tail = t.len() as u64;
            }
            Data::Inline(c) => {
                let len = c.len() as u64;
                n.n_blocks = len / BLOCK_SIZE;
                n.tail = len % BLOCK_SIZE;
                if n.tail > BLOCK_SIZE / 2 {
                    n.n_blocks += 1;
                    n.tail = 0;
                }
            }
            Data::External { chunk_count, .. } => {
                n.n_blocks = 0;
                n.tail = chunk_count * 4;
            }
            Data::None => {
                n.n_blocks = 0;
                n.tail = 0;
            }
        }
        let size_for_compact = if n.file_type() == S_IFDIR {
            n.n_blocks * BLOCK_SIZE + n.tail
        } else {
            n.size
        };
        n.compact = n.mtime == min_mtime
            && n.nlink <= u64::from(u16::MAX)
            && n.uid <= u32::from(u16::MAX)
            && n.gid <= u32::from(u16::MAX)
            && size_for_compact <= u64::from(u32::MAX);
        let inode_size = if n.compact {
            INODE_COMPACT_SIZE
        } else {
            INODE_EXTENDED_SIZE
        };
        let aligned = round_up(pos, SLOT_SIZE);
        n.ipad = aligned - pos;
        pos = aligned;

        // Keep the tail within one block.
        let non_tail = inode_size + xl.size;
        let mut extra = 0;
        if n.file_type() == S_IFLNK {
            let total = non_tail + n.tail;
            let first_block = pos / BLOCK_SIZE;
            let last_block = (pos + total - 1) / BLOCK_SIZE;
            if total / BLOCK_SIZE > 0 {
                n.n_blocks += 1;
                n.tail = 0;
            }
            if first_block != last_block {
                extra = round_up(pos, BLOCK_SIZE) - pos;
            }
        } else {
            let remainder = BLOCK_SIZE - (pos + non_tail) % BLOCK_SIZE;
            if remainder < n.tail {
                let pad = round_up(remainder, SLOT_SIZE);
                let remainder = BLOCK_SIZE - (pos + non_tail + pad) % BLOCK_SIZE;
                if n.tail <= remainder {
                    extra = pad;
                } else {
                    n.n_blocks += 1;
                    n.tail = 0;
                    extra = round_up(pos, BLOCK_SIZE) - pos;
                }
            }
        }
        n.ipad += extra;
        pos += extra;
        n_data_blocks += n.n_blocks;
        n.nid = pos / SLOT_SIZE;
        pos += inode_size + xl.size + n.tail;
    }
    let inodes_end = round_up(pos, SLOT_SIZE);
    let data_start = round_up(inodes_end + shared_size, BLOCK_SIZE);
    let root_nid = u16::try_from(nodes[0].nid)
        .map_err(|_| WriteError::Internal("root inode number too large".into()))?;
    let total_blocks = data_start / BLOCK_SIZE + n_data_blocks;
    let total_blocks = u32::try_from(total_blocks).map_err(|_| WriteError::TooLarge)?;
    let xattr_blkaddr = u32::try_from(inodes_end / BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?;

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

    let nids: Vec<u64> = nodes.iter().map(|n| n.nid).collect();
    let ftypes: Vec<u8> = nodes.iter().map(|n| ftype_of_mode(n.mode)).collect();
    let mut resolved_dirents: Vec<Vec<(u64, u8)>> = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let mut v = Vec::with_capacity(n.dirents.len());
        for d in &n.dirents {
            let t = resolve(d.target)?;
            v.push((nids[t], ftypes[t]));
        }
        resolved_dirents.push(v);
    }

    let mut current_end = data_start;
    for (idx, (n, xl)) in nodes.iter().zip(&xattr_layouts).enumerate() {
        out.put_zeros(n.ipad);
        debug_assert_eq!(out.len() as u64 % SLOT_SIZE, 0);
        let ftype = n.file_type();
        let mut layout = if n.tail > 0 {
            LAYOUT_FLAT_INLINE
        } else {
            LAYOUT_FLAT_PLAIN
        };
        let mut blkaddr: Option<u32> = None;
        if n.n_blocks > 0 && matches!(ftype, S_IFDIR | S_IFREG | S_IFLNK) {
            blkaddr =
                Some(u32::try_from(current_end / BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?);
            current_end += BLOCK_SIZE * n.n_blocks;
        }
        let mut i_u: u32 = blkaddr.unwrap_or(0);
        let size = match ftype {
            S_IFDIR => n.n_blocks * BLOCK_SIZE + n.tail,
            S_IFREG => {
                if let Data::External { chunk_bits, .. } = n.data {
                    layout = LAYOUT_CHUNK_BASED;
                    // The chunk format shares its first 16 bits with the block address.
                    i_u = (i_u & 0xFFFF_0000) | (chunk_bits - BLOCK_BITS);
                }
                n.size
            }
            S_IFLNK => {
                if n.n_blocks == 0 {
                    n.tail
                } else {
                    n.size
                }
            }
            _ => 0,
        };
        if matches!(ftype, S_IFCHR | S_IFBLK) {
            i_u = fit(&n.path, "rdev", n.rdev)?;
        }
        let icount: u16 = if xl.size == 0 {
            0
        } else {
            fit(
                &n.path,
                "xattr count (i_xattr_icount)",
                (xl.size - XATTR_IBODY_HEADER_SIZE) / 4 + 1,
            )?
        };
        let format = (layout << I_DATALAYOUT_BIT) | (u16::from(!n.compact) << I_VERSION_BIT);
        let mode: u16 = fit(&n.path, "mode", u64::from(n.mode))?;
        let ino: u32 = fit(&n.path, "inode number", idx as u64)?;
        if n.compact {
            out.put_u16(format);
            out.put_u16(icount);
            out.put_u16(mode);
            out.put_u16(fit(&n.path, "nlink (compact inode)", n.nlink)?);
            out.put_u32(fit(&n.path, "size (compact inode)", size)?);
            out.put_u32(0);
            out.put_u32(i_u);
            out.put_u32(ino);
            out.put_u16(fit(&n.path, "uid (compact inode)", u64::from(n.uid))?);
            out.put_u16(fit(&n.path, "gid (compact inode)", u64::from(n.gid))?);
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
            out.put_u32(fit(&n.path, "nlink", n.nlink)?);
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
            out.put_u8(fit(&n.path, "shared xattr count", xl.shared.len() as u64)?);
            out.put_zeros(7);
            for off in &xl.shared {
                out.put_u32(fit(
                    &n.path,
                    "shared xattr id",
                    (inodes_end % BLOCK_SIZE + off) / 4,
                )?);
            }
            let entries: Vec<_> = n.xattrs.iter().collect();
            for &i in &xl.inline {
                let (k, v) = entries[i];
                put_xattr_entry(&mut out, &n.path, k, v)?;
            }
            let written = (out.len() - start) as u64;
            out.put_zeros(xl.size - written);
        }
        match n.data {
            Data::Dir => {
                if n.tail > 0 {
                    let chunks = dirent_chunks(n.dirents.iter().map(|d| d.name.len()));
                    if let Some(&(s, e, _)) = chunks.last() {
                        put_dirents(
                            &mut out,
                            &n.path,
                            &n.dirents[s..e],
                            &resolved_dirents[idx][s..e],
                        )?;
                    }
                }
            }
            Data::Symlink(t) => {
                if n.n_blocks == 0 {
                    out.extend_from_slice(t);
                }
            }
            Data::Inline(c) => {
                if n.tail > 0 {
                    let tail = usize::try_from(n.tail).map_err(|_| WriteError::TooLarge)?;
                    out.extend_from_slice(&c[c.len().saturating_sub(tail)..]);
                }
            }
            Data::External { chunk_count, .. } => {
                if n.tail > 0 {
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

    for (idx, n) in nodes.iter().enumerate() {
        if n.n_blocks == 0 {
            continue;
        }
        match n.data {
            Data::Dir => {
                let chunks = dirent_chunks(n.dirents.iter().map(|d| d.name.len()));
                let blocks = usize::try_from(n.n_blocks).map_err(|_| WriteError::TooLarge)?;
                for &(s, e, _) in chunks.iter().take(blocks) {
                    put_dirents(
                        &mut out,
                        &n.path,
                        &n.dirents[s..e],
                        &resolved_dirents[idx][s..e],
                    )?;
                    pad_block(&mut out);
                }
            }
            Data::Inline(c) => {
                let blocks =
                    usize::try_from(n.n_blocks * BLOCK_SIZE).map_err(|_| WriteError::TooLarge)?;
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

    // Parse every inode back; refuse an image that says something else than the tree.
    let expected: Vec<Expect<'_>> = nodes
        .iter()
        .zip(&resolved_dirents)
        .map(|(n, targets)| Expect {
            path: &n.path,
            nid: n.nid,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            xattrs: &n.xattrs,
            data: match n.data {
                Data::Dir => ExpectData::Dir(
                    n.dirents
                        .iter()
                        .zip(targets)
                        .map(|(d, t)| (&d.name[..], t.0))
                        .collect(),
                ),
                Data::Symlink(b) | Data::Inline(b) => ExpectData::Bytes(b),
                Data::External { .. } => ExpectData::External(n.size),
                Data::None => ExpectData::None,
            },
        })
        .collect();
    verify::verify(&out, &expected)?;
    Ok(out)
}
