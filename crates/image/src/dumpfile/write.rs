//! Printing a [`FileSystem`] as a dumpfile, the way `composefs-info dump` shows an image:
//! what the tree does not keep (directory sizes, link counts) is recomputed here. The
//! escaping rules are the parser's (`super::escape_into`).

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_repository::ObjectId;

use super::{Escape, escape_into};
use crate::tree::{Directory, FileSystem, Inode, LeafContent, RegularFile, S_IFDIR};

fn write_line_for<W: Write>(
    out: &mut W,
    buf: &mut Vec<u8>,
    path: &[u8],
    inode: &Inode,
    link_to: Option<&[u8]>,
    nlink: u64,
) -> io::Result<()> {
    buf.clear();
    escape_into(
        buf,
        if path.is_empty() { b"/" } else { path },
        Escape::Standard,
    );
    let (stat, mode, size, rdev) = match inode {
        Inode::Directory(d) => (
            &d.stat,
            S_IFDIR | (d.stat.mode & 0o7777),
            crate::erofs::directory_size(d, false),
            0,
        ),
        Inode::Leaf(l) => {
            let rdev = match l.content {
                LeafContent::CharDevice(r) | LeafContent::BlockDevice(r) => r,
                _ => 0,
            };
            (&l.stat, l.mode(), l.size(), rdev)
        }
    };
    write!(
        buf,
        " {size} {}{mode:o} {nlink} {} {} {rdev} {}.{} ",
        if link_to.is_some() { "@" } else { "" },
        stat.uid,
        stat.gid,
        stat.mtime.sec,
        stat.mtime.nsec
    )?;
    let (payload, content, digest): (Option<&[u8]>, Option<&[u8]>, Option<&ObjectId>) = match inode
    {
        Inode::Directory(_) => (None, None, None),
        Inode::Leaf(l) => match &l.content {
            LeafContent::Symlink(t) => (Some(t.as_bytes()), None, None),
            LeafContent::Regular(RegularFile::Inline(c)) if !c.is_empty() => (None, Some(c), None),
            LeafContent::Regular(RegularFile::External(x)) => {
                (x.path.as_deref(), None, x.digest.as_ref())
            }
            _ => (None, None, None),
        },
    };
    match link_to.or(payload) {
        Some(p) => escape_into(buf, p, Escape::LoneDash),
        None => buf.push(b'-'),
    }
    buf.push(b' ');
    match content {
        Some(c) => escape_into(buf, c, Escape::LoneDash),
        None => buf.push(b'-'),
    }
    match digest {
        Some(d) => write!(buf, " {d}")?,
        None => buf.extend_from_slice(b" -"),
    }
    for (k, v) in &stat.xattrs {
        buf.push(b' ');
        escape_into(buf, k, Escape::Equal);
        buf.push(b'=');
        escape_into(buf, v, Escape::Equal);
    }
    buf.push(b'\n');
    out.write_all(buf)
}

/// Prints `fs` as a dumpfile: depth-first in name order, the first name of a hardlinked file in
/// full and the others as `@` lines pointing to it, the way `composefs-info dump` prints.
pub fn write<W: Write>(fs: &FileSystem, mut out: W) -> io::Result<()> {
    let counts = fs.link_counts();
    let primary = fs.primary_paths();
    let mut buf = Vec::new();
    write_root_line(&mut out, &mut buf, &fs.root)?;
    let mut result = Ok(());
    fs.walk(|path, inode| {
        if result.is_err() {
            return;
        }
        let (link_to, nlink) = match inode {
            Inode::Directory(d) => (None, d.nlink()),
            Inode::Leaf(l) => {
                let id = Arc::as_ptr(l);
                let first = primary.get(&id).map(Vec::as_slice);
                let link = first.filter(|p| *p != path);
                (link, counts.get(&id).copied().unwrap_or(1))
            }
        };
        result = write_line_for(&mut out, &mut buf, path, inode, link_to, nlink);
    });
    result
}

fn write_root_line<W: Write>(out: &mut W, buf: &mut Vec<u8>, dir: &Directory) -> io::Result<()> {
    buf.clear();
    escape_into(buf, b"/", Escape::Standard);
    let stat = &dir.stat;
    write!(
        buf,
        " {} {:o} {} {} {} 0 {}.{} - - -",
        crate::erofs::directory_size(dir, true),
        S_IFDIR | (stat.mode & 0o7777),
        dir.nlink(),
        stat.uid,
        stat.gid,
        stat.mtime.sec,
        stat.mtime.nsec
    )?;
    for (k, v) in &stat.xattrs {
        buf.push(b' ');
        escape_into(buf, k, Escape::Equal);
        buf.push(b'=');
        escape_into(buf, v, Escape::Equal);
    }
    buf.push(b'\n');
    out.write_all(buf)
}

/// Prints `fs` as a dumpfile into a byte vector.
pub fn to_vec(fs: &FileSystem) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write(fs, &mut out);
    out
}
