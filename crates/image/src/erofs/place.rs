//! Layout decisions of the EROFS writer (steps 4 and 5 of `writer`): which xattrs are shared
//! and where each inode goes. Inodes sit in 32-byte slots after the superblock, compact when
//! they can be, with their tails (inline data, the last directory block, the chunk index)
//! never crossing a block — exactly as libcomposefs places them.
//!
//! The per-inode results are a few integers ([`Placement`]); an inode's xattr layout is
//! recomputed where it is needed ([`xattr_layout`]) rather than kept for every inode.

use std::collections::HashMap;

use super::WriteError;
use super::encode::{dir_blocks, xattr_entry_size};
use super::format::*;
use super::node::{Data, Node};
use crate::tree::{Mtime, S_IFDIR, S_IFLNK};

/// Offsets of the shared xattrs (name, value) in the shared xattr area.
pub(super) type SharedOffsets<'n> = HashMap<(&'n [u8], &'n [u8]), u64>;

/// The xattrs used by more than one inode.
pub(super) struct Shared<'n> {
    /// In libcomposefs's order (the order of the shared area).
    pub(super) list: Vec<(&'n [u8], &'n [u8])>,
    pub(super) offsets: SharedOffsets<'n>,
    /// The size of the shared area.
    pub(super) size: u64,
}

/// The xattrs used by more than one inode, their order and offsets.
pub(super) fn shared_xattrs<'n>(nodes: &'n [Node<'_>]) -> Shared<'n> {
    let mut use_count: HashMap<(&[u8], &[u8]), u32> = HashMap::new();
    for n in nodes {
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
    let mut shared_offset = HashMap::with_capacity(shared_list.len());
    let mut shared_size = 0u64;
    for kv in &shared_list {
        shared_offset.insert(*kv, shared_size);
        shared_size += xattr_entry_size(kv.0, kv.1);
    }
    Shared {
        list: shared_list,
        offsets: shared_offset,
        size: shared_size,
    }
}

/// Per-inode xattr layout: which are shared (their offsets), which inline (their index in
/// the node's sorted xattrs), and the ibody size.
pub(super) struct XattrLayout {
    pub(super) shared: Vec<u64>,
    pub(super) inline: Vec<usize>,
    pub(super) size: u64,
}

/// The xattr layout of one inode (no allocation for an inode without xattrs).
pub(super) fn xattr_layout(n: &Node<'_>, shared_offset: &SharedOffsets<'_>) -> XattrLayout {
    let mut layout = XattrLayout {
        shared: Vec::new(),
        inline: Vec::new(),
        size: 0,
    };
    let mut inline_size = 0;
    for (idx, (k, v)) in n.xattrs.iter().enumerate() {
        match shared_offset.get(&(&k[..], &v[..])) {
            Some(off) if layout.shared.len() < MAX_SHARED_PER_INODE => layout.shared.push(*off),
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
}

/// Where one inode goes and how its data is split between blocks and an inline tail, in 24
/// bytes (one per inode is held until the image is written).
#[derive(Clone, Copy)]
pub(super) struct Placement {
    pub(super) nid: u64,
    n_blocks: u32,
    /// Inline tail, at most a block.
    tail: u16,
    /// Padding before the inode, at most a block.
    ipad: u16,
    pub(super) compact: bool,
}

impl Placement {
    /// Data blocks outside the inode.
    pub(super) fn n_blocks(&self) -> u64 {
        u64::from(self.n_blocks)
    }
    /// Bytes of data inline after the inode.
    pub(super) fn tail(&self) -> u64 {
        u64::from(self.tail)
    }
    /// Padding before the inode.
    pub(super) fn ipad(&self) -> u64 {
        u64::from(self.ipad)
    }
}

/// What `place` works with for one inode before it is narrowed into a [`Placement`].
#[derive(Default)]
struct Wide {
    n_blocks: u64,
    tail: u64,
    ipad: u64,
    nid: u64,
    compact: bool,
}

/// The placement of every inode (step 5), the end of the inode area and the number of data
/// blocks.
pub(super) fn place(
    nodes: &[Node<'_>],
    shared_offset: &SharedOffsets<'_>,
    min_mtime: Mtime,
) -> Result<(Vec<Placement>, u64, u64), WriteError> {
    let mut placements = Vec::with_capacity(nodes.len());
    let mut pos = SUPER_OFFSET + SUPER_SIZE;
    let mut n_data_blocks = 0u64;
    for n in nodes {
        let xattr_size = xattr_layout(n, shared_offset).size;
        let mut p = Wide::default();
        // Data sizes.
        match n.data {
            Data::Dir => {
                let (blocks, tail) = dir_blocks(n.dirents().iter().map(|d| d.name.len()));
                p.n_blocks = blocks;
                p.tail = tail;
            }
            Data::Symlink(t) => {
                p.tail = t.len() as u64;
            }
            Data::Inline(c) => {
                let len = c.len() as u64;
                p.n_blocks = len / BLOCK_SIZE;
                p.tail = len % BLOCK_SIZE;
                if p.tail > BLOCK_SIZE / 2 {
                    p.n_blocks += 1;
                    p.tail = 0;
                }
            }
            Data::External { chunk_count, .. } => {
                p.tail = chunk_count * 4;
            }
            Data::None => {}
        }
        let size_for_compact = if n.file_type() == S_IFDIR {
            p.n_blocks * BLOCK_SIZE + p.tail
        } else {
            n.size
        };
        p.compact = n.mtime == min_mtime
            && n.nlink <= u64::from(u16::MAX)
            && n.uid <= u32::from(u16::MAX)
            && n.gid <= u32::from(u16::MAX)
            && size_for_compact <= u64::from(u32::MAX);
        let inode_size = if p.compact {
            INODE_COMPACT_SIZE
        } else {
            INODE_EXTENDED_SIZE
        };
        let aligned = round_up(pos, SLOT_SIZE);
        p.ipad = aligned - pos;
        pos = aligned;

        // Keep the tail within one block.
        let non_tail = inode_size + xattr_size;
        let mut extra = 0;
        if n.file_type() == S_IFLNK {
            let total = non_tail + p.tail;
            let first_block = pos / BLOCK_SIZE;
            let last_block = (pos + total - 1) / BLOCK_SIZE;
            if total / BLOCK_SIZE > 0 {
                p.n_blocks += 1;
                p.tail = 0;
            }
            if first_block != last_block {
                extra = round_up(pos, BLOCK_SIZE) - pos;
            }
        } else {
            let remainder = BLOCK_SIZE - (pos + non_tail) % BLOCK_SIZE;
            if remainder < p.tail {
                let pad = round_up(remainder, SLOT_SIZE);
                let remainder = BLOCK_SIZE - (pos + non_tail + pad) % BLOCK_SIZE;
                if p.tail <= remainder {
                    extra = pad;
                } else {
                    p.n_blocks += 1;
                    p.tail = 0;
                    extra = round_up(pos, BLOCK_SIZE) - pos;
                }
            }
        }
        p.ipad += extra;
        pos += extra;
        n_data_blocks += p.n_blocks;
        p.nid = pos / SLOT_SIZE;
        pos += inode_size + xattr_size + p.tail;
        let narrow = |v: u64, what: &str| {
            u16::try_from(v).map_err(|_| WriteError::Internal(format!("{what} {v} over a block")))
        };
        placements.push(Placement {
            nid: p.nid,
            n_blocks: u32::try_from(p.n_blocks).map_err(|_| WriteError::TooLarge)?,
            tail: narrow(p.tail, "inline tail")?,
            ipad: narrow(p.ipad, "inode padding")?,
            compact: p.compact,
        });
    }
    Ok((placements, round_up(pos, SLOT_SIZE), n_data_blocks))
}
