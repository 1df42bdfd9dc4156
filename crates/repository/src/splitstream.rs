//! Splitstreams: a byte stream stored as inline bytes plus references to objects, so that e.g. a
//! tar layer can be re-created byte for byte while its file contents are shared objects.
//!
//! Format (version 1; normative description in docs/splitstream.md): an uncompressed header
//! naming the content type, the hash algorithm, the stream's size and every object and stream it
//! references, followed by one zstd frame holding the chunk sequence. gc and fsck read only the
//! header; re-creating the stream decodes the body.
//!
//! The writer streams: inline bytes are compressed as they come, and the compressed body is kept
//! in memory only up to [`SPILL_THRESHOLD`] before it moves to an unnamed temporary file, so
//! memory does not grow with the stream (only with the number of distinct objects referenced).

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufReader, Read, Seek, Write};

use hashbrown::HashTable;

use crate::digest::{HashAlgorithm, ObjectId};
use crate::error::{Error, IoContext, Result};
use crate::repository::Repository;

/// The first 8 bytes of every splitstream.
pub const MAGIC: [u8; 8] = *b"CFSSPLIT";
/// The format version written, and the only one read.
pub const VERSION: u32 = 1;
/// Policy for tar layers: file contents up to this size are stored inline.
pub const INLINE_MAX: usize = 64;
/// Consecutive inline bytes are gathered into chunks of at most this size.
const INLINE_CHUNK: usize = 64 * 1024;
/// Readers refuse inline chunks larger than this (bounds memory on corrupt input).
const MAX_INLINE_CHUNK: usize = 16 * 1024 * 1024;
/// Compressed bodies up to this size stay in memory while written.
pub const SPILL_THRESHOLD: usize = 4 * 1024 * 1024;
const FIXED_HEADER: usize = 40;

const TAG_END: u8 = 0;
const TAG_INLINE: u8 = 1;
const TAG_EXTERNAL: u8 = 2;

/// A named reference from one stream to another (a config stream names its layers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// The name within the referring stream (e.g. a layer's diff_id).
    pub name: String,
    /// The referenced stream's content id (`streams/<content-id>`).
    pub content_id: String,
    /// The referenced stream's object, pinning its exact content.
    pub object: ObjectId,
}

/// The uncompressed header of a splitstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitStreamHeader {
    /// What the stream holds, e.g. `application/x-tar` or an OCI media type.
    pub content_type: String,
    /// The hash algorithm of every object id in the stream.
    pub algorithm: HashAlgorithm,
    /// Size in bytes of the re-created stream.
    pub stream_size: u64,
    /// Every object the body references, each once, in first-use order.
    pub objects: Vec<ObjectId>,
    /// Named references to other streams.
    pub streams: Vec<StreamRef>,
    /// Length of the compressed body that follows the header.
    pub body_len: u64,
}

fn bad(name: &str, message: impl Into<String>) -> Error {
    Error::BadSplitStream {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// The header's bytes. `objects` is every object's raw digest, concatenated (the writer keeps
/// them so: 32 or 64 bytes an object, not a whole [`ObjectId`]).
fn encode_header(
    content_type: &str,
    algorithm: HashAlgorithm,
    stream_size: u64,
    objects: &[u8],
    streams: &[StreamRef],
    body_len: u64,
) -> Result<Vec<u8>> {
    let ct = content_type.as_bytes();
    let ct_len = u16::try_from(ct.len()).map_err(|_| bad("(new)", "content type too long"))?;
    let n_obj = u32::try_from(objects.len() / algorithm.digest_len())
        .map_err(|_| bad("(new)", "too many objects"))?;
    let n_str = u32::try_from(streams.len()).map_err(|_| bad("(new)", "too many stream refs"))?;
    let mut h = Vec::with_capacity(FIXED_HEADER + ct.len() + objects.len());
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.push(algorithm.kernel_id());
    h.push(0); // flags
    h.extend_from_slice(&ct_len.to_le_bytes());
    h.extend_from_slice(&stream_size.to_le_bytes());
    h.extend_from_slice(&n_obj.to_le_bytes());
    h.extend_from_slice(&n_str.to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    debug_assert_eq!(h.len(), FIXED_HEADER);
    h.extend_from_slice(ct);
    h.extend_from_slice(objects);
    for s in streams {
        for field in [s.name.as_bytes(), s.content_id.as_bytes()] {
            let len =
                u16::try_from(field.len()).map_err(|_| bad("(new)", "stream ref too long"))?;
            h.extend_from_slice(&len.to_le_bytes());
            h.extend_from_slice(field);
        }
        h.extend_from_slice(s.object.as_bytes());
    }
    Ok(h)
}

impl SplitStreamHeader {
    /// Reads and checks a header. `name` is used in messages; `file_len`, when known, bounds
    /// the tables so a corrupt count cannot make us allocate without limit.
    pub fn read(
        r: &mut impl Read,
        algorithm: HashAlgorithm,
        name: &str,
        file_len: Option<u64>,
    ) -> Result<Self> {
        let mut fixed = [0u8; FIXED_HEADER];
        read_exact(r, &mut fixed, name, "header")?;
        if fixed[..8] != MAGIC {
            return Err(bad(name, "not a splitstream (bad magic)"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([fixed[o], fixed[o + 1]]);
        let u32_at =
            |o: usize| u32::from_le_bytes([fixed[o], fixed[o + 1], fixed[o + 2], fixed[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(
                name,
                format!("format version {version} is not supported (this cfs reads {VERSION})"),
            ));
        }
        match HashAlgorithm::from_kernel_id(fixed[12]) {
            Some(a) if a == algorithm => {}
            Some(a) => {
                return Err(bad(
                    name,
                    format!("uses {a} but the repository uses {algorithm}"),
                ));
            }
            None => return Err(bad(name, format!("unknown hash algorithm {}", fixed[12]))),
        }
        if fixed[13] != 0 {
            return Err(bad(name, format!("unknown flags {:#x}", fixed[13])));
        }
        let ct_len = usize::from(u16_at(14));
        let stream_size = u64_at(16);
        let n_obj = u32_at(24) as usize;
        let n_str = u32_at(28) as usize;
        let body_len = u64_at(32);
        let dlen = algorithm.digest_len();
        if let Some(len) = file_len {
            // Every table entry takes at least digest_len bytes: a count the file cannot
            // hold is corruption, caught before allocating for it.
            let min = FIXED_HEADER as u64
                + ct_len as u64
                + (n_obj as u64 + n_str as u64) * dlen as u64
                + body_len;
            if min > len {
                return Err(bad(
                    name,
                    format!("header claims {min} bytes but the file has {len} (truncated?)"),
                ));
            }
        }
        let mut ct = vec![0u8; ct_len];
        read_exact(r, &mut ct, name, "content type")?;
        let content_type =
            String::from_utf8(ct).map_err(|_| bad(name, "content type is not UTF-8"))?;
        let mut objects = Vec::with_capacity(n_obj.min(1 << 20));
        let mut d = [0u8; 64];
        for _ in 0..n_obj {
            read_exact(r, &mut d[..dlen], name, "object table")?;
            objects.push(
                ObjectId::from_bytes(algorithm, &d[..dlen]).ok_or_else(|| bad(name, "digest"))?,
            );
        }
        let mut streams = Vec::with_capacity(n_str.min(1 << 16));
        for _ in 0..n_str {
            let mut fields = [String::new(), String::new()];
            for f in &mut fields {
                let mut l = [0u8; 2];
                read_exact(r, &mut l, name, "stream table")?;
                let mut v = vec![0u8; usize::from(u16::from_le_bytes(l))];
                read_exact(r, &mut v, name, "stream table")?;
                *f = String::from_utf8(v).map_err(|_| bad(name, "stream ref is not UTF-8"))?;
            }
            read_exact(r, &mut d[..dlen], name, "stream table")?;
            let [sname, content_id] = fields;
            streams.push(StreamRef {
                name: sname,
                content_id,
                object: ObjectId::from_bytes(algorithm, &d[..dlen])
                    .ok_or_else(|| bad(name, "digest"))?,
            });
        }
        Ok(Self {
            content_type,
            algorithm,
            stream_size,
            objects,
            streams,
            body_len,
        })
    }

    /// Looks up a named stream reference.
    pub fn stream_ref(&self, name: &str) -> Option<&StreamRef> {
        self.streams.iter().find(|s| s.name == name)
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], name: &str, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(name, format!("truncated in the {what}")),
        _ => bad(name, format!("reading the {what}: {e}")),
    })
}

/// Where the compressed body goes while it is written: memory, then a temporary file.
enum Spill {
    Mem(Vec<u8>),
    File(std::io::BufWriter<File>),
}

struct SpillSink<'r> {
    repo: &'r Repository,
    spill: Spill,
}

impl Write for SpillSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Spill::Mem(v) = &mut self.spill {
            if v.len() + buf.len() <= SPILL_THRESHOLD {
                v.extend_from_slice(buf);
                return Ok(buf.len());
            }
            let file = self
                .repo
                .anonymous_tmpfile()
                .map_err(std::io::Error::other)?;
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
            w.write_all(v)?;
            self.spill = Spill::File(w);
        }
        match &mut self.spill {
            Spill::File(f) => f.write(buf),
            Spill::Mem(_) => Err(std::io::Error::other("spill buffer state")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.spill {
            Spill::File(f) => f.flush(),
            Spill::Mem(_) => Ok(()),
        }
    }
}

/// Writes a splitstream. Obtain one with [`Repository::create_stream`].
pub struct SplitStreamWriter<'r> {
    repo: &'r Repository,
    content_type: String,
    encoder: zstd::stream::write::Encoder<'static, SpillSink<'r>>,
    inline: Vec<u8>,
    /// Every object referenced so far, in first-use order: raw digests, concatenated (a
    /// layer of 300,000 files keeps 9.6 MB here with SHA-256, not 20 MB of `ObjectId`s).
    objects: Vec<u8>,
    /// Indices into `objects`, found by the digest's hash (4 bytes a slot, not a whole id).
    index: HashTable<u32>,
    hasher: RandomState,
    streams: Vec<StreamRef>,
    size: u64,
}

impl<'r> SplitStreamWriter<'r> {
    pub(crate) fn new(repo: &'r Repository, content_type: &str) -> Result<Self> {
        if content_type.len() > usize::from(u16::MAX) {
            return Err(bad(content_type, "content type too long"));
        }
        let sink = SpillSink {
            repo,
            spill: Spill::Mem(Vec::new()),
        };
        let mut encoder =
            zstd::stream::write::Encoder::new(sink, 3).ctx("starting zstd for", "splitstream")?;
        encoder
            .include_checksum(true)
            .ctx("configuring zstd for", "splitstream")?;
        Ok(Self {
            repo,
            content_type: content_type.to_owned(),
            encoder,
            inline: Vec::with_capacity(INLINE_CHUNK),
            objects: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            streams: Vec::new(),
            size: 0,
        })
    }

    /// Bytes of the stream so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn flush_inline(&mut self) -> Result<()> {
        if self.inline.is_empty() {
            return Ok(());
        }
        let len = self.inline.len() as u32;
        let mut head = [0u8; 5];
        head[0] = TAG_INLINE;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.encoder
            .write_all(&head)
            .and_then(|()| self.encoder.write_all(&self.inline))
            .ctx("compressing", "splitstream body")?;
        self.inline.clear();
        Ok(())
    }

    /// Appends bytes stored inline (inside the splitstream itself).
    pub fn write_inline(&mut self, mut data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let n = (INLINE_CHUNK - self.inline.len()).min(data.len());
            self.inline.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.inline.len() == INLINE_CHUNK {
                self.flush_inline()?;
            }
        }
        Ok(())
    }

    /// Appends a reference to an object already stored in the repository whose content is
    /// `size` bytes: the re-created stream holds the whole object here.
    pub fn write_reference(&mut self, id: ObjectId, size: u64) -> Result<()> {
        if id.algorithm() != self.repo.algorithm() {
            return Err(Error::WrongAlgorithm {
                id: Box::new(id),
                algorithm: self.repo.algorithm(),
            });
        }
        self.flush_inline()?;
        let idx = self.object_index(&id)?;
        let mut rec = [0u8; 13];
        rec[0] = TAG_EXTERNAL;
        rec[1..5].copy_from_slice(&idx.to_le_bytes());
        rec[5..].copy_from_slice(&size.to_le_bytes());
        self.encoder
            .write_all(&rec)
            .ctx("compressing", "splitstream body")?;
        self.size += size;
        Ok(())
    }

    /// The index of `id` in the header's object list, added if new.
    fn object_index(&mut self, id: &ObjectId) -> Result<u32> {
        let digest = id.as_bytes();
        let len = digest.len();
        let Self {
            objects,
            index,
            hasher,
            ..
        } = self;
        let at = |i: u32| {
            let start = i as usize * len;
            &objects[start..start + len]
        };
        let hash = hasher.hash_one(digest);
        if let Some(&i) = index.find(hash, |&i| at(i) == digest) {
            return Ok(i);
        }
        let next =
            u32::try_from(objects.len() / len).map_err(|_| bad("(new)", "too many objects"))?;
        objects.extend_from_slice(digest);
        let objects = &*objects;
        index.insert_unique(hash, next, |&i| {
            let start = i as usize * len;
            hasher.hash_one(&objects[start..start + len])
        });
        Ok(next)
    }

    /// Appends data, inline if at most [`INLINE_MAX`] bytes, otherwise as an object (stored
    /// now, or found already stored).
    pub fn write_data(&mut self, data: &[u8]) -> Result<()> {
        if data.len() <= INLINE_MAX {
            self.write_inline(data)
        } else {
            let id = self.repo.ensure_object(data)?;
            self.write_reference(id, data.len() as u64)
        }
    }

    /// Records a named reference to another stream (kept alive by gc with this one).
    pub fn add_stream_ref(&mut self, name: &str, content_id: &str, object: ObjectId) -> Result<()> {
        crate::names::check_content_id(content_id)?;
        if name.len() > usize::from(u16::MAX) {
            return Err(bad(name, "stream ref name too long"));
        }
        self.streams.push(StreamRef {
            name: name.to_owned(),
            content_id: content_id.to_owned(),
            object,
        });
        Ok(())
    }

    /// Finishes the stream and stores it as an object; returns the object's id. Register it
    /// under a content id with [`Repository::register_stream`].
    pub fn finish(mut self) -> Result<ObjectId> {
        self.flush_inline()?;
        self.encoder
            .write_all(&[TAG_END])
            .ctx("compressing", "splitstream body")?;
        let sink = self
            .encoder
            .finish()
            .ctx("compressing", "splitstream body")?;
        let header = |body_len: u64| {
            encode_header(
                &self.content_type,
                self.repo.algorithm(),
                self.size,
                &self.objects,
                &self.streams,
                body_len,
            )
        };
        let mut out = self.repo.object_writer()?;
        match sink.spill {
            Spill::Mem(body) => {
                let h = header(body.len() as u64)?;
                out.write_all(&h)
                    .and_then(|()| out.write_all(&body))
                    .ctx("writing", "splitstream")?;
            }
            Spill::File(w) => {
                let mut file = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .ctx("writing", "splitstream body")?;
                let body_len = file.stream_position().ctx("writing", "splitstream body")?;
                let h = header(body_len)?;
                out.write_all(&h).ctx("writing", "splitstream")?;
                file.rewind().ctx("reading", "splitstream body")?;
                std::io::copy(&mut file, &mut out).ctx("copying", "splitstream body")?;
            }
        }
        out.finish()
    }
}

/// One piece of a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Bytes stored in the splitstream.
    Inline(&'a [u8]),
    /// A whole object of `size` bytes.
    External {
        /// The object.
        object: ObjectId,
        /// Its size.
        size: u64,
    },
}

/// Reads a splitstream: its header at once, its chunks on demand.
pub struct SplitStreamReader<R: Read> {
    header: SplitStreamHeader,
    name: String,
    body: zstd::stream::read::Decoder<'static, BufReader<std::io::Take<R>>>,
    produced: u64,
    done: bool,
}

impl<R: Read> SplitStreamReader<R> {
    /// Parses the header of the splitstream in `reader`; `name` appears in error messages.
    pub fn new(mut reader: R, algorithm: HashAlgorithm, name: &str) -> Result<Self> {
        let header = SplitStreamHeader::read(&mut reader, algorithm, name, None)?;
        let body = zstd::stream::read::Decoder::new(reader.take(header.body_len))
            .map_err(|e| bad(name, format!("starting zstd: {e}")))?;
        Ok(Self {
            header,
            name: name.to_owned(),
            body,
            produced: 0,
            done: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &SplitStreamHeader {
        &self.header
    }

    fn body_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let name = self.name.clone();
        read_exact(&mut self.body, buf, &name, "body")
    }

    /// The next chunk, `None` after the last. `buf` holds inline bytes.
    pub fn next_chunk<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Option<Chunk<'b>>> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.body_exact(&mut tag)?;
        match tag[0] {
            TAG_END => {
                self.done = true;
                let mut extra = [0u8; 1];
                match self.body.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(bad(&self.name, "data after the end marker")),
                    Err(e) => return Err(bad(&self.name, format!("decompressing: {e}"))),
                }
                if self.produced != self.header.stream_size {
                    return Err(bad(
                        &self.name,
                        format!(
                            "body holds {} bytes but the header says {}",
                            self.produced, self.header.stream_size
                        ),
                    ));
                }
                Ok(None)
            }
            TAG_INLINE => {
                let mut len = [0u8; 4];
                self.body_exact(&mut len)?;
                let len = u32::from_le_bytes(len) as usize;
                if len == 0 || len > MAX_INLINE_CHUNK {
                    return Err(bad(&self.name, format!("inline chunk of {len} bytes")));
                }
                buf.resize(len, 0);
                self.body_exact(buf)?;
                self.produced += len as u64;
                Ok(Some(Chunk::Inline(&buf[..])))
            }
            TAG_EXTERNAL => {
                let mut rec = [0u8; 12];
                self.body_exact(&mut rec)?;
                let idx = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
                let mut s = [0u8; 8];
                s.copy_from_slice(&rec[4..]);
                let size = u64::from_le_bytes(s);
                let object = *self.header.objects.get(idx).ok_or_else(|| {
                    bad(
                        &self.name,
                        format!("reference to object #{idx} outside the table"),
                    )
                })?;
                self.produced += size;
                Ok(Some(Chunk::External { object, size }))
            }
            t => Err(bad(&self.name, format!("unknown chunk tag {t}"))),
        }
    }

    /// Re-creates the stream into `out`, reading objects from `repo`. Returns bytes written.
    pub fn write_to(mut self, repo: &Repository, out: &mut impl Write) -> Result<u64> {
        let mut buf = Vec::new();
        let mut total = 0u64;
        while let Some(chunk) = self.next_chunk(&mut buf)? {
            match chunk {
                Chunk::Inline(data) => {
                    out.write_all(data).ctx("writing", "output")?;
                    total += data.len() as u64;
                }
                Chunk::External { object, size } => {
                    let file = repo.open_object(&object)?;
                    let actual = file
                        .metadata()
                        .ctx("checking", repo.object_path(&object))?
                        .len();
                    if actual != size {
                        return Err(bad(
                            &self.name,
                            format!(
                                "object {object} has {actual} bytes, the stream expects {size}"
                            ),
                        ));
                    }
                    let n = std::io::copy(&mut file.take(size), out)
                        .ctx("copying", repo.object_path(&object))?;
                    if n != size {
                        return Err(bad(&self.name, format!("object {object} is short")));
                    }
                    total += n;
                }
            }
        }
        Ok(total)
    }

    /// Re-creates the whole stream in memory (for small streams such as OCI configs).
    pub fn read_to_vec(self, repo: &Repository) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write_to(repo, &mut v)?;
        Ok(v)
    }
}
