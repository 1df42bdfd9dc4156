//! On-disk constants of EROFS (as the Linux kernel reads it) and of the composefs header, and
//! little-endian encoding helpers. Layouts are documented in `docs/image.md`.

/// Block size: composefs images always use 4 KiB blocks.
pub const BLOCK_SIZE: u64 = 4096;
/// log2 of [`BLOCK_SIZE`].
pub const BLOCK_BITS: u32 = 12;
/// Inodes are aligned to (and numbered in) 32-byte slots.
pub const SLOT_SIZE: u64 = 32;
/// The EROFS superblock starts here.
pub const SUPER_OFFSET: u64 = 1024;
/// Size of the superblock without extension slots.
pub const SUPER_SIZE: u64 = 128;
/// EROFS superblock magic.
pub const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
/// composefs header magic (first 4 bytes of the image).
pub const COMPOSEFS_MAGIC: u32 = 0xd078_629a;
/// composefs header format version (the header's own version, not the composefs version).
pub const COMPOSEFS_HEADER_VERSION: u32 = 1;
/// Header flag: some inode has a POSIX ACL xattr.
pub const COMPOSEFS_FLAG_HAS_ACL: u32 = 1;
/// Size of the composefs header.
pub const COMPOSEFS_HEADER_SIZE: usize = 32;

/// Superblock feature: extended inodes carry their own mtime.
pub const FEATURE_COMPAT_MTIME: u32 = 0x2;
/// Superblock feature: inode xattr headers carry a name bloom filter.
pub const FEATURE_COMPAT_XATTR_FILTER: u32 = 0x4;

/// Compact (32-byte) inode.
pub const INODE_COMPACT_SIZE: u64 = 32;
/// Extended (64-byte) inode.
pub const INODE_EXTENDED_SIZE: u64 = 64;
/// Data layout: plain blocks.
pub const LAYOUT_FLAT_PLAIN: u16 = 0;
/// Data layout: blocks plus a tail packed after the inode.
pub const LAYOUT_FLAT_INLINE: u16 = 2;
/// Data layout: chunk index after the inode.
pub const LAYOUT_CHUNK_BASED: u16 = 4;
/// Bits of `i_format`: version (0 compact, 1 extended).
pub const I_VERSION_BIT: u16 = 0;
/// Bits of `i_format`: data layout.
pub const I_DATALAYOUT_BIT: u16 = 1;
/// Mask of the chunk size bits in a chunk-based inode's format.
pub const CHUNK_FORMAT_BLKBITS_MASK: u32 = 0x1f;
/// A chunk index entry that maps nothing (a hole).
pub const NULL_ADDR: u32 = 0xFFFF_FFFF;
/// composefs refuses external files needing more chunk entries than fit one block.
pub const MAX_CHUNKS: u64 = 1024;

/// Size of the inode xattr header (filter u32, shared count u8, 7 reserved).
pub const XATTR_IBODY_HEADER_SIZE: u64 = 12;
/// Size of an xattr entry header (name len u8, name index u8, value size u16).
pub const XATTR_ENTRY_HEADER_SIZE: u64 = 4;
/// An inode references at most this many shared xattrs (`EROFS_XATTR_LONG_PREFIX`).
pub const MAX_SHARED_PER_INODE: usize = 0x80;
/// Seed of the xattr name filter hash.
pub const XATTR_FILTER_SEED: u32 = 0x25BB_E08F;

/// Size of a directory entry record (nid u64, nameoff u16, type u8, reserved u8).
pub const DIRENT_SIZE: u64 = 12;

/// xattr name prefixes and their EROFS indexes, in the order composefs tries them.
pub const XATTR_PREFIXES: [(&[u8], u8); 5] = [
    (b"user.", 1),
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"trusted.", 4),
    (b"security.", 6),
];

/// The prefix for an index when reading (index 5, "lustre.", is never written).
pub fn xattr_prefix(index: u8) -> Option<&'static [u8]> {
    match index {
        0 => Some(b""),
        1 => Some(b"user."),
        2 => Some(b"system.posix_acl_access"),
        3 => Some(b"system.posix_acl_default"),
        4 => Some(b"trusted."),
        5 => Some(b"lustre."),
        6 => Some(b"security."),
        _ => None,
    }
}

/// Splits an xattr name into (index, suffix) the way composefs encodes it.
pub fn xattr_split(name: &[u8]) -> (u8, &[u8]) {
    for (prefix, index) in XATTR_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (index, rest);
        }
    }
    (0, name)
}

/// EROFS directory entry file types.
pub mod ftype {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symlink.
    pub const LNK: u8 = 7;
}

/// The dirent file type for a mode.
pub fn ftype_of_mode(mode: u32) -> u8 {
    use crate::tree::*;
    match mode & S_IFMT {
        S_IFREG => ftype::REG,
        S_IFDIR => ftype::DIR,
        S_IFCHR => ftype::CHR,
        S_IFBLK => ftype::BLK,
        S_IFIFO => ftype::FIFO,
        S_IFSOCK => ftype::SOCK,
        S_IFLNK => ftype::LNK,
        _ => ftype::UNKNOWN,
    }
}

/// overlayfs xattr names composefs writes and reads.
pub mod overlay {
    /// Prefix of all trusted overlayfs xattrs.
    pub const PREFIX: &[u8] = b"trusted.overlay.";
    /// Escaped form: a file's own `trusted.overlay.X` is stored as `trusted.overlay.overlay.X`.
    pub const ESCAPED_PREFIX: &[u8] = b"trusted.overlay.overlay.";
    /// Marks a file whose data lives in the lower (objects) layer; value: fs-verity digest.
    pub const METACOPY: &[u8] = b"trusted.overlay.metacopy";
    /// Where the data lives, relative to the data-only lower layer.
    pub const REDIRECT: &[u8] = b"trusted.overlay.redirect";
    /// Set (to `y`) on the root so lower layers never show through.
    pub const OPAQUE: &[u8] = b"trusted.overlay.opaque";
    /// An escaped whiteout: a regular file standing for a character device 0/0.
    pub const ESCAPED_WHITEOUT: &[u8] = b"trusted.overlay.overlay.whiteout";
    /// Marks a directory holding escaped whiteouts.
    pub const ESCAPED_WHITEOUTS: &[u8] = b"trusted.overlay.overlay.whiteouts";
    /// Version 1: marks a directory holding escaped whiteouts (value `x`).
    pub const ESCAPED_OPAQUE: &[u8] = b"trusted.overlay.overlay.opaque";
    /// The same markers for overlayfs mounted with `userxattr`.
    pub const USER_WHITEOUT: &[u8] = b"user.overlay.whiteout";
    /// See [`USER_WHITEOUT`].
    pub const USER_WHITEOUTS: &[u8] = b"user.overlay.whiteouts";
    /// See [`USER_WHITEOUT`].
    pub const USER_OPAQUE: &[u8] = b"user.overlay.opaque";
}

/// Rounds `x` up to a multiple of `align` (a power of two).
pub const fn round_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// Appends little-endian integers.
pub trait PutLe {
    /// Appends a u8.
    fn put_u8(&mut self, v: u8);
    /// Appends a little-endian u16.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian u32.
    fn put_u32(&mut self, v: u32);
    /// Appends a little-endian u64.
    fn put_u64(&mut self, v: u64);
    /// Appends `n` zero bytes.
    fn put_zeros(&mut self, n: u64);
}

impl PutLe for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_zeros(&mut self, n: u64) {
        self.resize(self.len() + n as usize, 0);
    }
}

/// xxHash32 of `data` with `seed` (used for the xattr name filter).
pub fn xxh32(data: &[u8], seed: u32) -> u32 {
    const P1: u32 = 0x9E37_79B1;
    const P2: u32 = 0x85EB_CA77;
    const P3: u32 = 0xC2B2_AE3D;
    const P4: u32 = 0x27D4_EB2F;
    const P5: u32 = 0x1656_67B1;
    let lane = |acc: u32, word: u32| {
        acc.wrapping_add(word.wrapping_mul(P2))
            .rotate_left(13)
            .wrapping_mul(P1)
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);

    let mut rest = data;
    let mut h = if data.len() >= 16 {
        let mut acc = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 16 {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = lane(*a, word(&rest[i * 4..]));
            }
            rest = &rest[16..];
        }
        acc[0]
            .rotate_left(1)
            .wrapping_add(acc[1].rotate_left(7))
            .wrapping_add(acc[2].rotate_left(12))
            .wrapping_add(acc[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u32);
    while rest.len() >= 4 {
        h = h
            .wrapping_add(word(rest).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        rest = &rest[4..];
    }
    for &b in rest {
        h = h
            .wrapping_add(u32::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh32_known_values() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(
            xxh32(b"Nobody inspects the spammish repetition", 0),
            0xE229_3B2F
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(xattr_split(b"user.foo"), (1, &b"foo"[..]));
        assert_eq!(xattr_split(b"system.posix_acl_access"), (2, &b""[..]));
        assert_eq!(xattr_split(b"trusted.overlay.x"), (4, &b"overlay.x"[..]));
        assert_eq!(xattr_split(b"foo"), (0, &b"foo"[..]));
        assert_eq!(round_up(33, 32), 64);
    }
}
