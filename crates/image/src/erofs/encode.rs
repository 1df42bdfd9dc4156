//! Encoding pieces of the EROFS writer: sizes and block splits of directories and chunk
//! indexes, and the appenders of xattr entries and directory entries. Every value that goes
//! into a narrower on-disk field passes [`fit`], so a length is never silently truncated.

use std::os::unix::ffi::OsStrExt;

use super::WriteError;
use super::format::*;
use crate::tree::*;

/// Where a directory entry points before node numbers are final.
#[derive(Clone, Copy)]
pub(super) enum Target {
    Node(usize),
    Leaf(LeafId),
}

pub(super) struct Dirent<'a> {
    pub(super) name: &'a [u8],
    pub(super) target: Target,
}

pub(super) fn show(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// The chunk size (as log2) composefs picks for an external file: as few chunks as possible
/// without a chunk larger than needed, between one block and 2^31 blocks.
pub(super) fn chunk_bits(size: u64) -> u32 {
    let bits = if size <= 1 {
        0
    } else {
        64 - (size - 1).leading_zeros()
    };
    bits.clamp(BLOCK_BITS, CHUNK_FORMAT_BLKBITS_MASK + BLOCK_BITS)
}

/// Does the tree contain an overlay whiteout (a character device 0/0)?
pub(super) fn has_whiteout(dir: &Directory) -> bool {
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for (_, inode) in d.entries() {
            match inode {
                Inode::Directory(sub) => stack.push(sub),
                Inode::Leaf(l) if l.content.is_whiteout() => return true,
                Inode::Leaf(_) => {}
            }
        }
    }
    false
}

/// Splits sorted directory entries into 4 KiB blocks; returns the chunk boundaries as
/// (start, end, bytes) and leaves the caller to decide about the last one.
pub(super) fn dirent_chunks(names: impl Iterator<Item = usize>) -> Vec<(usize, usize, u64)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    let mut i = 0;
    for len in names {
        let len = DIRENT_SIZE + len as u64;
        if bytes + len > BLOCK_SIZE {
            chunks.push((start, i, bytes));
            start = i;
            bytes = 0;
        }
        bytes += len;
        i += 1;
    }
    chunks.push((start, i, bytes));
    chunks
}

/// (full blocks, inline tail bytes) of a directory with these entry name lengths, before any
/// layout adjustment: a tail of more than half a block gets a block of its own.
pub(super) fn dir_blocks(name_lens: impl Iterator<Item = usize>) -> (u64, u64) {
    let chunks = dirent_chunks(name_lens);
    let mut n_blocks = chunks.len() as u64 - 1;
    let mut tail = chunks.last().map_or(0, |c| c.2);
    if tail > BLOCK_SIZE / 2 {
        n_blocks += 1;
        tail = 0;
    }
    (n_blocks, tail)
}

/// The names of the 256 whiteouts composefs puts in the root (`00`…`ff`).
pub(super) fn root_whiteout_names() -> impl Iterator<Item = [u8; 2]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..256usize).map(|i| [HEX[i >> 4], HEX[i & 15]])
}

/// The size a directory has in an image (without the rare layout-dependent adjustment when
/// its tail does not fit after the inode).
pub fn directory_size(dir: &Directory, is_root: bool) -> u64 {
    let mut names: Vec<&[u8]> = vec![b".", b".."];
    names.extend(dir.entries().map(|(n, _)| n.as_bytes()));
    let whiteouts: Vec<[u8; 2]> = if is_root {
        root_whiteout_names()
            .filter(|w| dir.get(std::ffi::OsStr::from_bytes(w)).is_none())
            .collect()
    } else {
        Vec::new()
    };
    names.extend(whiteouts.iter().map(|w| &w[..]));
    // Block splitting depends on order: sort like the writer does.
    names.sort();
    let (n_blocks, tail) = dir_blocks(names.iter().map(|n| n.len()));
    n_blocks * BLOCK_SIZE + tail
}

/// The on-disk xattr entry size of `name=value`.
pub(super) fn xattr_entry_size(name: &[u8], value: &[u8]) -> u64 {
    let (_, suffix) = xattr_split(name);
    round_up(
        XATTR_ENTRY_HEADER_SIZE + suffix.len() as u64 + value.len() as u64,
        4,
    )
}

/// A value that must fit a narrower on-disk field, or the error naming the file and field.
pub(super) fn fit<T: TryFrom<u64>>(
    path: &[u8],
    field: &'static str,
    value: u64,
) -> Result<T, WriteError> {
    T::try_from(value).map_err(|_| WriteError::DoesNotFit {
        path: show(path),
        field,
        value,
    })
}

/// Appends one xattr entry; a name suffix or value too long for its header field is an error,
/// never a truncated length (whose excess bytes would parse as further, forged, entries).
pub(super) fn put_xattr_entry(
    out: &mut Vec<u8>,
    path: &[u8],
    name: &[u8],
    value: &[u8],
) -> Result<(), WriteError> {
    let (index, suffix) = xattr_split(name);
    out.put_u8(fit(
        path,
        "xattr name length (e_name_len)",
        suffix.len() as u64,
    )?);
    out.put_u8(index);
    out.put_u16(fit(
        path,
        "xattr value size (e_value_size)",
        value.len() as u64,
    )?);
    out.extend_from_slice(suffix);
    out.extend_from_slice(value);
    let pad = round_up(out.len() as u64, 4) - out.len() as u64;
    out.put_zeros(pad);
    Ok(())
}

pub(super) fn pad_block(out: &mut Vec<u8>) {
    out.put_zeros(round_up(out.len() as u64, BLOCK_SIZE) - out.len() as u64);
}

/// Appends one block's directory entries; a name offset beyond 16 bits is an error.
pub(super) fn put_dirents(
    out: &mut Vec<u8>,
    path: &[u8],
    dirents: &[Dirent<'_>],
    targets: &[(u64, u8)],
) -> Result<(), WriteError> {
    let mut nameoff = dirents.len() as u64 * DIRENT_SIZE;
    for (d, &(nid, ft)) in dirents.iter().zip(targets) {
        out.put_u64(nid);
        out.put_u16(fit(path, "directory entry name offset", nameoff)?);
        out.put_u8(ft);
        out.put_u8(0);
        nameoff += d.name.len() as u64;
    }
    for d in dirents {
        out.extend_from_slice(d.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_lengths_that_do_not_fit_are_errors_not_truncations() {
        let mut out = Vec::new();
        let mut name = b"user.".to_vec();
        name.extend_from_slice(&[b'n'; 256]);
        let e = put_xattr_entry(&mut out, b"/f", &name, b"v").expect_err("suffix of 256");
        assert!(e.to_string().contains("e_name_len"), "{e}");
        let e = put_xattr_entry(&mut out, b"/f", b"user.v", &vec![0; 65536]).expect_err("value");
        assert!(e.to_string().contains("e_value_size"), "{e}");
        out.clear();
        put_xattr_entry(&mut out, b"/f", b"user.v", &vec![0; 65535]).expect("65535 fits");
        assert_eq!(out[..4], [1, 1, 0xff, 0xff]);
    }
}
