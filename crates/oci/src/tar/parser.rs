//! The one place that decides where tar entries begin and end, shared by the splitter and the
//! stream reader. It walks 512-byte blocks itself (so the splitter sees every raw byte) and
//! follows GNU tar 1.34's rules for entry boundaries, except for PAX global headers, which it
//! reads as Go's archive/tar and containers-storage do (not applied to later entries); see
//! docs/tar.md for the rules and what is refused.

use super::fields::{self, PaxRecord, check_checksum, cstr, is_zero_block, pax_records};
use super::{Content, EntryKind, Sparse, SparseFormat, TarEntry, TarError};

/// The tar block size.
pub(crate) const BLOCK: usize = 512;
/// Largest PAX (`x`, `X`, `g`) or GNU long name/link (`L`, `K`) header data accepted: GNU tar
/// itself has no limit (the corpus holds a 1 MiB + 1 PAX header it accepts); this bounds memory.
pub const METADATA_MAX: u64 = 16 << 20;
/// Largest number of old-GNU sparse extension blocks accepted for one entry (1 MiB of map).
const SPARSE_EXT_MAX: u64 = METADATA_MAX / BLOCK as u64;
/// `off_t`'s maximum: GNU tar refuses larger sizes.
const SIZE_MAX: u64 = i64::MAX as u64;

/// Bytes of padding after `size` bytes of data.
pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// A source of archive bytes.
pub(crate) trait BlockInput {
    /// Reads into `buf` until it is full or the input ends; returns how many bytes were read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError>;
}

/// Where the raw bytes the parser consumes go (the splitter stores them inline).
pub(crate) type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), TarError> + 'a;

/// Header-walking state that persists across entries.
pub(crate) struct Parser {
    /// Bytes of the archive consumed so far.
    offset: u64,
}

/// What GNU tar calls the "name" of a raw header block, for messages.
fn block_name(block: &[u8; BLOCK]) -> String {
    lossy(&header_path(block))
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        s.into_owned()
    }
}

/// The path stored in a header block, composed as GNU tar does: the ustar prefix is used when
/// the magic is `ustar\0` and the prefix is non-empty.
fn header_path(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = cstr(&block[0..100]);
    if &block[257..263] == b"ustar\0" && block[345] != 0 {
        let mut p = cstr(&block[345..500]).to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    } else {
        name.to_vec()
    }
}

fn is_gnu_magic(block: &[u8; BLOCK]) -> bool {
    &block[257..265] == b"ustar  \0"
}

fn record<'a>(records: &'a [PaxRecord], key: &[u8]) -> Option<&'a [u8]> {
    records
        .iter()
        .rev()
        .find(|r| r.key == key)
        .map(|r| r.value.as_slice())
}

/// Metadata headers gathered for the next entry.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<PaxRecord>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Parser {
    pub(crate) fn new() -> Self {
        Self { offset: 0 }
    }

    /// Records that the caller consumed `n` bytes (an entry's data and padding).
    pub(crate) fn advance(&mut self, n: u64) {
        self.offset += n;
    }

    fn read(
        &mut self,
        input: &mut dyn BlockInput,
        sink: &mut Sink<'_>,
        buf: &mut [u8],
    ) -> Result<usize, TarError> {
        let n = input.read_full(buf)?;
        sink(&buf[..n])?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Reads the data (and padding) of a metadata header: `size` bytes, at most
    /// [`METADATA_MAX`].
    fn read_metadata(
        &mut self,
        input: &mut dyn BlockInput,
        sink: &mut Sink<'_>,
        header_offset: u64,
        what: &'static str,
        name: &str,
        size: u64,
    ) -> Result<Vec<u8>, TarError> {
        if size > METADATA_MAX {
            return Err(TarError::TooLarge {
                offset: header_offset,
                entry: name.to_owned(),
                what,
                size,
                limit: METADATA_MAX,
            });
        }
        let total = size + padding(size);
        let mut data = vec![0u8; total as usize];
        let n = self.read(input, sink, &mut data)?;
        if n < data.len() {
            return Err(TarError::Truncated {
                offset: header_offset,
                entry: name.to_owned(),
                missing: (data.len() - n) as u64,
            });
        }
        data.truncate(size as usize);
        Ok(data)
    }

    /// Reads headers up to and including the next entry's own header (and, for old GNU sparse
    /// entries, its extension blocks). Returns `None` at the end of the archive: a zero block,
    /// the end of the input, or fewer than 512 bytes left where a header should start; what
    /// follows is not part of the archive (the caller keeps it as trailing bytes).
    ///
    /// The returned entry's `data_size` bytes, then `padding(data_size)` bytes, come next; the
    /// caller consumes them and calls [`Parser::advance`].
    pub(crate) fn next_entry(
        &mut self,
        input: &mut dyn BlockInput,
        sink: &mut Sink<'_>,
    ) -> Result<Option<TarEntry>, TarError> {
        let mut pending = Pending::default();
        loop {
            let header_offset = self.offset;
            let mut block = [0u8; BLOCK];
            let n = self.read(input, sink, &mut block)?;
            if n < BLOCK || is_zero_block(&block) {
                return Ok(None);
            }
            if let Err((recorded, computed)) = check_checksum(&block) {
                return Err(TarError::Checksum {
                    offset: header_offset,
                    entry: block_name(&block),
                    recorded: recorded.map_or_else(|| "unreadable".to_owned(), |r| r.to_string()),
                    computed,
                });
            }
            let typeflag = block[156];
            let malformed = |problem: String| TarError::Malformed {
                offset: header_offset,
                entry: block_name(&block),
                problem,
            };
            match typeflag {
                b'x' | b'X' | b'g' | b'L' | b'K' => {
                    let size = fields::unsigned(&block[124..136], SIZE_MAX)
                        .map_err(|e| malformed(format!("size field: {e}")))?;
                    let what = match typeflag {
                        b'x' => "PAX extended header",
                        b'X' => "Solaris extended header",
                        b'g' => "PAX global header",
                        b'L' => "GNU long name",
                        _ => "GNU long link name",
                    };
                    let name = block_name(&block);
                    let data = self.read_metadata(input, sink, header_offset, what, &name, size)?;
                    match typeflag {
                        b'x' | b'X' | b'g' => {
                            let records = pax_records(&data).map_err(|e| malformed(e.clone()))?;
                            if typeflag == b'X' && record(&records, b"size").is_some() {
                                return Err(TarError::Ambiguous {
                                    offset: header_offset,
                                    entry: name,
                                    problem: "a Solaris extended header (type X) sets `size`: \
                                              GNU tar applies it, readers that know only `x` \
                                              do not"
                                        .into(),
                                });
                            }
                            if typeflag == b'g' {
                                check_global(&records, &pending, header_offset, &name)?;
                                // Not applied to later entries: Go's archive/tar returns a
                                // `g` header as an entry of its own and containers-storage
                                // skips it. Its bytes stay in the stream.
                            } else {
                                // GNU tar (and Go) keep only the last `x` header.
                                pending.pax = Some(records);
                            }
                        }
                        b'L' => pending.long_name = Some(cstr(&data).to_vec()),
                        _ => pending.long_link = Some(cstr(&data).to_vec()),
                    }
                }
                _ => {
                    let entry = self.entry(input, sink, &block, header_offset, pending)?;
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// Builds the entry for a real (non-metadata) header.
    fn entry(
        &mut self,
        input: &mut dyn BlockInput,
        sink: &mut Sink<'_>,
        block: &[u8; BLOCK],
        offset: u64,
        pending: Pending,
    ) -> Result<TarEntry, TarError> {
        let typeflag = block[156];
        let pax = pending.pax.unwrap_or_default();
        // Only the entry's own records: PAX global headers are not applied (see `check_global`).
        let lookup = |key: &[u8]| record(&pax, key);

        // Path: PAX GNU.sparse.name > PAX path > GNU long name > header.
        let mut path = pending.long_name.unwrap_or_else(|| header_path(block));
        if let Some(p) = lookup(b"path") {
            path = cstr(p).to_vec();
        }
        if let Some(p) = lookup(b"GNU.sparse.name") {
            path = cstr(p).to_vec();
        }
        let mut link = pending
            .long_link
            .unwrap_or_else(|| cstr(&block[157..257]).to_vec());
        if let Some(l) = lookup(b"linkpath") {
            link = cstr(l).to_vec();
        }
        let entry_name = lossy(&path);
        let malformed = |problem: String| TarError::Malformed {
            offset,
            entry: entry_name.clone(),
            problem,
        };
        let ambiguous = |problem: String| TarError::Ambiguous {
            offset,
            entry: entry_name.clone(),
            problem,
        };

        // The size that decides where the next header is (GNU tar's archive_file_size).
        let header_size = if typeflag == b'1' {
            // GNU tar never reads a hard link's size field ("links 0 size on tape").
            0
        } else {
            fields::unsigned(&block[124..136], SIZE_MAX)
                .map_err(|e| malformed(format!("size field: {e}")))?
        };
        let mut stored = header_size;
        if let Some(v) = lookup(b"size") {
            stored = fields::pax_decimal(v, SIZE_MAX).ok_or_else(|| {
                malformed(format!(
                    "invalid PAX size record {:?}",
                    String::from_utf8_lossy(v)
                ))
            })?;
        }
        let trailing_slash = path.last() == Some(&b'/');
        let data_size = match typeflag {
            // GNU tar never skips data after a directory header (nor does any other reader).
            b'5' => 0,
            b'1' | b'2' | b'3' | b'4' | b'6' if stored != 0 => {
                return Err(ambiguous(format!(
                    "a {} entry with {stored} bytes of data: `tar -t` skips the data, `tar -x` \
                     and other readers read none",
                    type_name(typeflag)
                )));
            }
            b'\0' | b'0' | b'7' if trailing_slash && stored != 0 => {
                return Err(ambiguous(format!(
                    "a file entry whose name ends in `/` with {stored} bytes of data: GNU tar \
                     extracts it as a directory and reads no data, `tar -t` skips the data"
                )));
            }
            _ => stored,
        };

        // Old GNU sparse entries: the map, with extension blocks that come before the data.
        let mut sparse = None;
        if typeflag == b'S' {
            if !is_gnu_magic(block) {
                return Err(ambiguous(
                    "a GNU sparse entry (type S) without the GNU magic: GNU tar reads it as a \
                     plain file, other readers reject it"
                        .into(),
                ));
            }
            sparse = Some(self.old_gnu_sparse(input, sink, block, offset, &entry_name)?);
        } else if let Some(s) = pax_sparse(&pax, stored).map_err(&malformed)? {
            sparse = Some(s);
        }

        let kind = match typeflag {
            b'\0' | b'0' | b'7' if trailing_slash => EntryKind::Directory,
            b'\0' | b'0' | b'7' | b'S' => EntryKind::Regular,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' | b'D' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        };

        let num = |range: std::ops::Range<usize>, what: &str, max: u64| {
            fields::unsigned(&block[range], max).map_err(|e| malformed(format!("{what}: {e}")))
        };
        let mode = num(100..108, "mode field", u64::from(u32::MAX))? as u32;
        let mut uid = num(108..116, "uid field", u64::MAX)?;
        let mut gid = num(116..124, "gid field", u64::MAX)?;
        let mtime_raw = fields::numeric(&block[136..148])
            .map_err(|e| malformed(format!("mtime field: {e}")))?;
        let mut mtime = i64::try_from(mtime_raw)
            .map_err(|_| malformed(format!("mtime {mtime_raw} out of range")))?;
        let mut mtime_nsec = 0;
        if let Some(v) = lookup(b"uid").and_then(|v| fields::pax_decimal(v, u64::MAX)) {
            uid = v;
        }
        if let Some(v) = lookup(b"gid").and_then(|v| fields::pax_decimal(v, u64::MAX)) {
            gid = v;
        }
        if let Some((s, ns)) = lookup(b"mtime").and_then(fields::pax_time) {
            mtime = s;
            mtime_nsec = ns;
        }
        let has_names = &block[257..262] == b"ustar";
        let mut uname = if has_names {
            cstr(&block[265..297]).to_vec()
        } else {
            Vec::new()
        };
        let mut gname = if has_names {
            cstr(&block[297..329]).to_vec()
        } else {
            Vec::new()
        };
        if let Some(v) = lookup(b"uname") {
            uname = cstr(v).to_vec();
        }
        if let Some(v) = lookup(b"gname") {
            gname = cstr(v).to_vec();
        }
        let device = match typeflag {
            b'3' | b'4' => Some((
                num(329..337, "device major", u64::from(u32::MAX))? as u32,
                num(337..345, "device minor", u64::from(u32::MAX))? as u32,
            )),
            _ => None,
        };

        // xattrs: SCHILY.xattr.<name>=<raw value>; of repeated names the last wins.
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for r in &pax {
            if let Some(name) = r.key.strip_prefix(b"SCHILY.xattr.") {
                if let Some(slot) = xattrs.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = r.value.clone();
                } else {
                    xattrs.push((name.to_vec(), r.value.clone()));
                }
            }
        }

        let size = sparse.as_ref().map_or(data_size, |s: &Sparse| s.real_size);
        Ok(TarEntry {
            offset,
            typeflag,
            kind,
            path,
            link_target: (!link.is_empty()).then_some(link),
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            mtime_nsec,
            device,
            size,
            data_size,
            xattrs,
            sparse,
            pax: pax
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect::<Vec<_>>(),
            content: Content::Inline(Vec::new()),
        })
    }

    /// Reads an old GNU sparse map: four slots in the header, then extension blocks of 21
    /// while the previous block's `isextended` is set. Like GNU tar, the map ends at the first
    /// slot whose length field starts with NUL; an `isextended` flag after such an early end
    /// is refused (GNU tar would stop reading blocks there, other readers would go on).
    fn old_gnu_sparse(
        &mut self,
        input: &mut dyn BlockInput,
        sink: &mut Sink<'_>,
        block: &[u8; BLOCK],
        offset: u64,
        name: &str,
    ) -> Result<Sparse, TarError> {
        let malformed = |problem: String| TarError::Malformed {
            offset,
            entry: name.to_owned(),
            problem,
        };
        let mut header = ::tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(block);
        let gnu = header
            .as_gnu()
            .ok_or_else(|| malformed("not a GNU header".into()))?;
        let real_size = fields::unsigned(&gnu.realsize, SIZE_MAX)
            .map_err(|e| malformed(format!("sparse real size: {e}")))?;
        let mut map = Vec::new();
        let mut ended = false;
        let mut add = |slots: &[::tar::GnuSparseHeader], ended: &mut bool| {
            for s in slots {
                if *ended || s.numbytes[0] == 0 {
                    *ended = true;
                    continue;
                }
                let off = fields::unsigned(&s.offset, SIZE_MAX)
                    .map_err(|e| malformed(format!("sparse map offset: {e}")))?;
                let len = fields::unsigned(&s.numbytes, SIZE_MAX)
                    .map_err(|e| malformed(format!("sparse map length: {e}")))?;
                if off.checked_add(len).is_none_or(|end| end > real_size) {
                    return Err(malformed(format!(
                        "sparse map region {off}+{len} lies beyond the file's size {real_size}"
                    )));
                }
                map.push((off, len));
            }
            Ok(())
        };
        add(&gnu.sparse, &mut ended)?;
        let mut extended = gnu.isextended[0] != 0;
        let mut blocks = 0u64;
        while extended {
            if ended {
                return Err(TarError::Ambiguous {
                    offset,
                    entry: name.to_owned(),
                    problem: "the sparse map ends but says an extension block follows: GNU tar \
                              stops there, other readers read the block"
                        .into(),
                });
            }
            blocks += 1;
            if blocks > SPARSE_EXT_MAX {
                return Err(TarError::TooLarge {
                    offset,
                    entry: name.to_owned(),
                    what: "GNU sparse map",
                    size: blocks * BLOCK as u64,
                    limit: METADATA_MAX,
                });
            }
            let mut ext = ::tar::GnuExtSparseHeader::new();
            let n = self.read(input, sink, ext.as_mut_bytes())?;
            if n < BLOCK {
                return Err(TarError::Truncated {
                    offset,
                    entry: name.to_owned(),
                    missing: (BLOCK - n) as u64,
                });
            }
            add(&ext.sparse, &mut ended)?;
            extended = ext.isextended[0] != 0;
        }
        Ok(Sparse {
            format: SparseFormat::OldGnu,
            real_size,
            map: Some(map),
        })
    }
}

/// PAX sparse formats (GNU 0.0, 0.1, 1.0). GNU tar treats an entry as sparse when it has map
/// records or `GNU.sparse.major`; the data area is just data either way.
fn pax_sparse(pax: &[PaxRecord], stored: u64) -> Result<Option<Sparse>, String> {
    let lookup = |key: &[u8]| record(pax, key);
    let major = lookup(b"GNU.sparse.major").and_then(|v| fields::pax_decimal(v, u64::MAX));
    let minor = lookup(b"GNU.sparse.minor").and_then(|v| fields::pax_decimal(v, u64::MAX));
    let real = lookup(b"GNU.sparse.realsize")
        .or_else(|| lookup(b"GNU.sparse.size"))
        .and_then(|v| fields::pax_decimal(v, SIZE_MAX));
    if let Some(map) = lookup(b"GNU.sparse.map") {
        // 0.1: "offset,length,offset,length,..."
        let nums: Option<Vec<u64>> = cstr(map)
            .split(|&b| b == b',')
            .filter(|s| !s.is_empty())
            .map(|s| fields::pax_decimal(s, SIZE_MAX))
            .collect();
        let nums = nums.ok_or("invalid GNU.sparse.map record")?;
        if nums.len() % 2 != 0 {
            return Err("GNU.sparse.map has an odd number of values".into());
        }
        return Ok(Some(Sparse {
            format: SparseFormat::Pax01,
            real_size: real.unwrap_or(stored),
            map: Some(nums.chunks(2).map(|c| (c[0], c[1])).collect()),
        }));
    }
    // 0.0: repeated GNU.sparse.offset / GNU.sparse.numbytes pairs, in order.
    let mut map = Vec::new();
    let mut off = None;
    for r in pax {
        match r.key.as_slice() {
            b"GNU.sparse.offset" => off = fields::pax_decimal(&r.value, SIZE_MAX),
            b"GNU.sparse.numbytes" => {
                let len = fields::pax_decimal(&r.value, SIZE_MAX)
                    .ok_or("invalid GNU.sparse.numbytes record")?;
                let o = off
                    .take()
                    .ok_or("GNU.sparse.numbytes without GNU.sparse.offset")?;
                map.push((o, len));
            }
            _ => {}
        }
    }
    if !map.is_empty() {
        return Ok(Some(Sparse {
            format: SparseFormat::Pax00,
            real_size: real.unwrap_or(stored),
            map: Some(map),
        }));
    }
    match (major, minor) {
        (Some(1), Some(0)) => Ok(Some(Sparse {
            format: SparseFormat::Pax10,
            real_size: real.unwrap_or(stored),
            map: None,
        })),
        (Some(ma), mi) if ma > 0 => Err(format!(
            "unsupported GNU sparse format {ma}.{}",
            mi.map_or_else(|| "?".to_owned(), |m| m.to_string())
        )),
        _ => Ok(None),
    }
}

/// Refuses a PAX global header (`g`) where readers would see different entries. Its records
/// are not applied to later entries (Go's archive/tar, which Docker, containerd and
/// containers-storage use, returns the header as an entry of its own and they skip it), but
/// GNU tar and Python's tarfile apply them to every later entry. Metadata (`path`, `mtime`,
/// `uid`, xattrs, ...) is read Go's way, as the container engines extract it; what would move
/// entry boundaries or change file contents is refused:
/// - `size`: GNU tar and Python take it as every later entry's data size;
/// - `GNU.sparse.*`: GNU tar makes later entries sparse files (other contents, other names);
/// - a `g` header after an `x`, `L` or `K` header: Go drops those headers' records (its
///   reader returns at the `g`), GNU tar and Python apply them to the entry after the `g`
///   (which may set its `size`).
fn check_global(
    records: &[PaxRecord],
    pending: &Pending,
    offset: u64,
    name: &str,
) -> Result<(), TarError> {
    let ambiguous = |problem: String| TarError::Ambiguous {
        offset,
        entry: name.to_owned(),
        problem,
    };
    if record(records, b"size").is_some() {
        return Err(ambiguous(
            "a PAX global header sets `size`: GNU tar and Python apply it to every later \
             entry, Go's archive/tar (container engines) ignores it"
                .into(),
        ));
    }
    if let Some(r) = records.iter().find(|r| r.key.starts_with(b"GNU.sparse.")) {
        return Err(ambiguous(format!(
            "a PAX global header sets `{}`: GNU tar makes every later entry a sparse file, Go's \
             archive/tar (container engines) ignores it",
            lossy(&r.key)
        )));
    }
    let before = [
        (pending.pax.is_some(), "a PAX extended header (x/X)"),
        (pending.long_name.is_some(), "a GNU long name (L)"),
        (pending.long_link.is_some(), "a GNU long link name (K)"),
    ];
    if let Some((_, what)) = before.iter().find(|(set, _)| *set) {
        return Err(ambiguous(format!(
            "a PAX global header between {what} and its entry: Go's archive/tar drops the \
             first header, GNU tar and Python apply it to the entry after the global header"
        )));
    }
    Ok(())
}

fn type_name(typeflag: u8) -> &'static str {
    match typeflag {
        b'1' => "hard link",
        b'2' => "symlink",
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "FIFO",
        _ => "special",
    }
}
