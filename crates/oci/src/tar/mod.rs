//! Tar layers as splitstreams: [`split`] stores an archive so that it re-creates byte for
//! byte, with headers, padding and small files inline and each larger regular file's data as
//! one object (shared between layers and images); [`entries`] reads the entries back from a
//! stored stream for building filesystem trees.
//!
//! Both go through one parser (`parser.rs`) that decides entry boundaries by GNU tar's rules,
//! so the bytes we store and the tree we build always describe the same archive. What is
//! refused, and why, is in docs/tar.md.

mod entries;
mod fields;
pub(crate) mod parser;
mod split;

pub use entries::{Entries, entries};
pub use parser::METADATA_MAX;
pub use split::{split, split_with_pool};

/// The content type of tar splitstreams.
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";

/// Why a tar stream could not be split or read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the input failed.
    #[error("reading the tar stream: {0}")]
    Read(#[from] std::io::Error),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] cfs_repository::Error),
    /// A header block's checksum does not match: corrupt, or not a tar archive.
    #[error(
        "tar header at byte {offset} ({entry:?}): checksum mismatch (recorded {recorded}, \
         computed {computed}); the archive is corrupt or not a tar archive"
    )]
    Checksum {
        /// Offset of the header block in the archive.
        offset: u64,
        /// The name field of the block (it may be garbage).
        entry: String,
        /// The recorded checksum.
        recorded: String,
        /// The checksum of the block's bytes.
        computed: i64,
    },
    /// A header field or PAX record cannot be decoded.
    #[error("tar entry {entry:?} (header at byte {offset}): {problem}")]
    Malformed {
        /// Offset of the header block.
        offset: u64,
        /// The entry's path as far as known.
        entry: String,
        /// What is wrong.
        problem: String,
    },
    /// The archive ends inside a header, its data or its padding.
    #[error(
        "tar entry {entry:?} (header at byte {offset}): the archive ends {missing} bytes too \
         early (truncated)"
    )]
    Truncated {
        /// Offset of the header block.
        offset: u64,
        /// The entry's path as far as known.
        entry: String,
        /// How many more bytes the entry needed.
        missing: u64,
    },
    /// A metadata header is larger than we accept.
    #[error(
        "tar entry {entry:?} (header at byte {offset}): {what} of {size} bytes is larger than \
         the {limit} bytes accepted"
    )]
    TooLarge {
        /// Offset of the header block.
        offset: u64,
        /// The entry's path as far as known.
        entry: String,
        /// "PAX extended header", "GNU long name", ...
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Tar readers disagree on how to read this entry; refused so that no two tools see two
    /// different archives in the same bytes.
    #[error("tar entry {entry:?} (header at byte {offset}) is ambiguous and refused: {problem}")]
    Ambiguous {
        /// Offset of the header block.
        offset: u64,
        /// The entry's path as far as known.
        entry: String,
        /// How readers disagree.
        problem: String,
    },
    /// A stored stream is not the splitstream of a tar archive as [`split`] writes it.
    #[error("tar stream: {0}")]
    Stream(String),
}

/// What an entry is, as GNU tar extracts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (`0`, NUL, `7` contiguous, `S` GNU sparse).
    Regular,
    /// A directory (`5`, GNU dumpdir `D`, or a regular-file type whose name ends in `/`).
    Directory,
    /// A symbolic link (`2`).
    Symlink,
    /// A hard link to an earlier entry (`1`).
    Hardlink,
    /// A character device (`3`).
    CharDevice,
    /// A block device (`4`).
    BlockDevice,
    /// A FIFO (`6`).
    Fifo,
    /// Any other type flag (e.g. GNU `V` volume label, `M` multi-volume continuation).
    Other(u8),
}

/// How a sparse file's map is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFormat {
    /// Old GNU (`S` entries, map in the header and extension blocks).
    OldGnu,
    /// PAX GNU sparse 0.0 (`GNU.sparse.offset`/`numbytes` records).
    Pax00,
    /// PAX GNU sparse 0.1 (`GNU.sparse.map` record).
    Pax01,
    /// PAX GNU sparse 1.0: the map is at the start of the data area.
    Pax10,
}

/// A sparse file's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// Where the map is.
    pub format: SparseFormat,
    /// The size of the file when expanded.
    pub real_size: u64,
    /// `(offset, length)` of each data region, in data-area order; `None` for 1.0, whose map
    /// is the first part of the entry's content.
    pub map: Option<Vec<(u64, u64)>>,
}

/// Where an entry's data area is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Stored inline (at most [`cfs_repository::splitstream::INLINE_MAX`] bytes for regular
    /// files; any size up to [`METADATA_MAX`] for other types).
    Inline(Vec<u8>),
    /// One whole object.
    External {
        /// The object.
        object: cfs_repository::ObjectId,
        /// Its size (the entry's `data_size`).
        size: u64,
    },
}

/// One entry of a tar archive, with PAX and GNU extensions applied as GNU tar applies them,
/// except PAX global headers (`g`), which are not applied, as in Go's archive/tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Offset of the entry's own header block in the archive (after any PAX or long-name
    /// headers that belong to it).
    pub offset: u64,
    /// The raw type flag.
    pub typeflag: u8,
    /// What the entry is.
    pub kind: EntryKind,
    /// The path, raw bytes: PAX `GNU.sparse.name`, else PAX `path` (the entry's own `x`
    /// header; never a global one), else the GNU long name, else the header's prefix and name.
    pub path: Vec<u8>,
    /// Link target (PAX `linkpath`, GNU long link, or the header's), if not empty.
    pub link_target: Option<Vec<u8>>,
    /// Mode bits from the header.
    pub mode: u32,
    /// Owner (PAX `uid` if present).
    pub uid: u64,
    /// Group (PAX `gid` if present).
    pub gid: u64,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Modification time, seconds since the epoch (PAX `mtime` if present).
    pub mtime: i64,
    /// Sub-second part of the PAX `mtime`, nanoseconds.
    pub mtime_nsec: u32,
    /// `(major, minor)` for character and block devices.
    pub device: Option<(u32, u32)>,
    /// The file's size (expanded size for sparse files).
    pub size: u64,
    /// Bytes of data stored in the archive for this entry.
    pub data_size: u64,
    /// Extended attributes from PAX `SCHILY.xattr.<name>` records; values are raw bytes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Sparse layout, for GNU sparse files.
    pub sparse: Option<Sparse>,
    /// The PAX records of the entry's own extended header, raw (global records are not
    /// applied to entries).
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// The data area.
    pub content: Content,
}

impl TarEntry {
    /// Whether the data area of this entry is file content that may become an object
    /// (regular files and GNU sparse files); other entries' data always stays inline.
    pub fn has_file_data(&self) -> bool {
        matches!(self.typeflag, b'0' | b'\0' | b'7' | b'S') && self.kind == EntryKind::Regular
    }
}
