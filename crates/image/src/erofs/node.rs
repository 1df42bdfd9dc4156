//! The EROFS writer's inode model: one [`Node`] per inode, as the tree says it after the
//! overlayfs rewrite, small enough to hold one per file of a large image. A node keeps its
//! name and its parent's index, not its path: [`node_path`] builds a path only for the
//! messages and checks that need one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::WriteError;
use super::encode::{Dirent, show};
use super::format::XATTR_IBODY_HEADER_SIZE;
use crate::tree::{ExternalFile, Mtime, S_IFMT};
use crate::xattr::{XATTR_EXTERNAL_BUDGET, XattrError, XattrLimit, xattr_charge};

/// What an inode holds besides metadata.
pub(super) enum Data<'a> {
    Dir,
    Symlink(&'a [u8]),
    Inline(&'a [u8]),
    External {
        ext: &'a ExternalFile,
        chunk_bits: u32,
        chunk_count: u64,
    },
    None,
}

/// One inode to write (layout decisions are kept apart, in `place::Placement`).
pub(super) struct Node<'a> {
    /// The name in the parent directory (empty for the root).
    pub(super) name: &'a [u8],
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Mtime,
    pub(super) nlink: u64,
    /// Device number (checked to fit the inode's 32 bits).
    pub(super) rdev: u32,
    pub(super) size: u64,
    pub(super) data: Data<'a>,
    pub(super) xattrs: BTreeMap<Cow<'a, [u8]>, Cow<'a, [u8]>>,
    pub(super) xattr_budget: usize,
    /// The parent's index (the root is its own parent).
    pub(super) parent: u32,
    /// The 256 root whiteouts are added after the overlay rewrite and never rewritten.
    pub(super) synthetic: bool,
    /// A directory's entries. Boxed on purpose: `None` for the many non-directories costs 8
    /// bytes here, where a `Vec` would cost 24 (or a boxed slice 16) in every node.
    #[allow(clippy::box_collection)]
    pub(super) dirents: Option<Box<Vec<Dirent<'a>>>>,
}

impl<'a> Node<'a> {
    pub(super) fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// A directory's entries (none for other inodes).
    pub(super) fn dirents(&self) -> &[Dirent<'a>] {
        self.dirents.as_deref().map_or(&[], |d| &d[..])
    }

    /// Sets an xattr, charging it against the per-inode budget like libcomposefs does; over
    /// budget, the error is the limit (the caller names the file, see [`over_budget`]).
    pub(super) fn set_xattr(
        &mut self,
        name: &'a [u8],
        value: Cow<'a, [u8]>,
    ) -> Result<(), XattrLimit> {
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
            return Err(XattrLimit::BudgetExceeded(self.xattr_budget + charge));
        }
        self.xattr_budget += charge;
        self.xattrs.insert(Cow::Borrowed(name), value);
        Ok(())
    }
}

/// Sets an xattr on node `at`, naming that node's path if it goes over budget.
pub(super) fn set_xattr_at<'a>(
    nodes: &mut [Node<'a>],
    at: usize,
    name: &'a [u8],
    value: Cow<'a, [u8]>,
) -> Result<(), WriteError> {
    let node = nodes
        .get_mut(at)
        .ok_or_else(|| WriteError::Internal(format!("no node {at}")))?;
    node.set_xattr(name, value)
        .map_err(|l| over_budget(&node_path(nodes, at), name, l))
}

/// The error of an xattr over the per-inode budget, naming the file and the xattr.
pub(super) fn over_budget(path: &[u8], name: &[u8], limit: XattrLimit) -> WriteError {
    WriteError::Xattr(XattrError {
        path: show(path),
        name: crate::xattr::show_name(name),
        limit,
    })
}

/// The path of node `i` (`/a/b`, empty for the root), built from the names up to the root:
/// nodes keep no path of their own, so this is for messages and the few checks that need one.
pub(super) fn node_path(nodes: &[Node<'_>], mut i: usize) -> Vec<u8> {
    let mut names = Vec::new();
    while i != 0 {
        let Some(n) = nodes.get(i) else { break };
        names.push(n.name);
        i = n.parent as usize;
    }
    let mut path = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for name in names.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    path
}
