//! [`split`]: a tar archive into a splitstream. Headers, padding, small files and anything
//! after the end of the archive go inline; each regular file's data larger than
//! [`INLINE_MAX`] becomes exactly one object, streamed in bounded pieces.
//!
//! [`split_with_pool`] does the same but hands every object to an [`ObjectPool`], so the
//! thread that parses only moves bytes: workers compute the fs-verity digests and create the
//! files. The stream needs the object ids in archive order, so the splitter keeps a bounded
//! queue of stream writes waiting for their ids ([`Ordered`]) and writes them as the ids
//! arrive. Either way the stream is the same, byte for byte.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};

use cfs_repository::splitstream::INLINE_MAX;
use cfs_repository::{ObjectId, ObjectPool, Pending, Repository, SplitStreamWriter};

use super::parser::{BlockInput, Parser, lossy, padding};
use super::{TAR_CONTENT_TYPE, TarEntry, TarError};

/// Data up to this size is read into memory and stored whole (skipping the write when the
/// object exists); larger data is streamed to its object in pieces.
const BUFFERED_OBJECT_MAX: u64 = 1 << 20;
/// Piece size for copying.
const PIECE: usize = 256 * 1024;
/// Object ids the splitter may be waiting for before it blocks on the oldest.
const MAX_PENDING_OBJECTS: usize = 64;
/// Inline bytes queued behind pending ids before the splitter blocks on the oldest.
const MAX_QUEUED_INLINE: usize = 1 << 20;

struct ReadInput<R> {
    inner: R,
}

impl<R: BufRead> BlockInput for ReadInput<R> {
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        self.take(buf.len(), |piece| {
            buf[n..n + piece.len()].copy_from_slice(piece);
            n += piece.len();
        })?;
        Ok(n)
    }
}

impl<R: BufRead> ReadInput<R> {
    /// Hands up to `want` bytes, piece by piece straight from the input's buffer, to `sink`;
    /// fewer only where the input ends. Returns how many.
    fn take(&mut self, want: usize, mut sink: impl FnMut(&[u8])) -> Result<usize, TarError> {
        let mut done = 0;
        while done < want {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TarError::Read(e)),
            };
            if avail.is_empty() {
                break;
            }
            let k = avail.len().min(want - done);
            sink(&avail[..k]);
            self.inner.consume(k);
            done += k;
        }
        Ok(done)
    }

    /// Up to `want` bytes as a new vector, copied straight from the input's buffer (no
    /// zero-filling first); shorter only where the input ends.
    fn read_vec(&mut self, want: usize) -> Result<Vec<u8>, TarError> {
        let mut v = Vec::with_capacity(want);
        self.take(want, |piece| v.extend_from_slice(piece))?;
        Ok(v)
    }
}

/// A stream write waiting for its turn.
enum Op {
    Inline(Vec<u8>),
    Reference(Pending, u64),
}

/// The splitstream writer, behind a queue of writes that wait for object ids.
struct Ordered<'r> {
    w: SplitStreamWriter<'r>,
    queue: VecDeque<Op>,
    references: usize,
    inline: usize,
}

impl<'r> Ordered<'r> {
    fn new(w: SplitStreamWriter<'r>) -> Self {
        Self {
            w,
            queue: VecDeque::new(),
            references: 0,
            inline: 0,
        }
    }

    fn write_inline(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        if self.queue.is_empty() {
            return Ok(self.w.write_inline(bytes)?);
        }
        match self.queue.back_mut() {
            Some(Op::Inline(v)) => v.extend_from_slice(bytes),
            _ => self.queue.push_back(Op::Inline(bytes.to_vec())),
        }
        self.inline += bytes.len();
        while self.inline > MAX_QUEUED_INLINE {
            self.pop(true)?;
        }
        Ok(())
    }

    fn write_reference(&mut self, id: Pending, size: u64) -> Result<(), TarError> {
        self.queue.push_back(Op::Reference(id, size));
        self.references += 1;
        while self.pop(false)? {}
        while self.references > MAX_PENDING_OBJECTS {
            self.pop(true)?;
        }
        Ok(())
    }

    /// Writes the oldest queued write if it is ready (or, with `block`, once it is).
    /// Returns whether something was written.
    fn pop(&mut self, block: bool) -> Result<bool, TarError> {
        let id = match self.queue.front_mut() {
            None => return Ok(false),
            Some(Op::Inline(_)) => None,
            Some(Op::Reference(p, _)) if !block => match p.poll() {
                None => return Ok(false),
                Some(r) => Some(r?),
            },
            Some(Op::Reference(..)) => None,
        };
        match self.queue.pop_front() {
            Some(Op::Inline(v)) => {
                self.inline -= v.len();
                self.w.write_inline(&v)?;
            }
            Some(Op::Reference(p, size)) => {
                self.references -= 1;
                let id = match id {
                    Some(id) => id,
                    None => p.wait()?,
                };
                self.w.write_reference(id, size)?;
            }
            None => return Ok(false),
        }
        Ok(true)
    }

    fn finish(mut self) -> Result<ObjectId, TarError> {
        while self.pop(true)? {}
        Ok(self.w.finish()?)
    }
}

/// Splits the tar stream from `input` into a new (unregistered) splitstream; returns its object.
///
/// Reads `input` to its end: bytes after the end-of-archive marker are kept inline, so the
/// stream re-creates exactly what was read. Fails (storing no stream) on archives whose entry
/// boundaries are unclear; see docs/tar.md.
pub fn split(repo: &Repository, input: impl Read) -> Result<ObjectId, TarError> {
    split_buffered(repo, BufReader::with_capacity(PIECE, input), None)
}

/// [`split`], with objects stored by `pool`'s workers and the input already buffered (a
/// [`BufRead`] whose buffer the splitter copies from directly).
pub fn split_with_pool(
    repo: &Repository,
    input: impl BufRead,
    pool: &ObjectPool,
) -> Result<ObjectId, TarError> {
    split_buffered(repo, input, Some(pool))
}

fn split_buffered(
    repo: &Repository,
    input: impl BufRead,
    pool: Option<&ObjectPool>,
) -> Result<ObjectId, TarError> {
    let mut input = ReadInput { inner: input };
    let mut w = Ordered::new(repo.create_stream(TAR_CONTENT_TYPE)?);
    let mut parser = Parser::new();
    let mut buf = vec![0u8; PIECE];
    loop {
        let entry = {
            let mut sink = |bytes: &[u8]| -> Result<(), TarError> { w.write_inline(bytes) };
            parser.next_entry(&mut input, &mut sink)?
        };
        let Some(entry) = entry else { break };
        store_data(repo, pool, &mut w, &mut input, &entry, &mut buf)?;
        parser.advance(entry.data_size + padding(entry.data_size));
    }
    // Everything after the end of the archive: zero blocks, record padding, garbage.
    loop {
        let n = input.read_full(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_inline(&buf[..n])?;
    }
    w.finish()
}

fn truncated(entry: &TarEntry, missing: u64) -> TarError {
    TarError::Truncated {
        offset: entry.offset,
        entry: lossy(&entry.path),
        missing,
    }
}

/// Copies an entry's data area and padding from the input into the stream.
fn store_data<R: BufRead>(
    repo: &Repository,
    pool: Option<&ObjectPool>,
    w: &mut Ordered<'_>,
    input: &mut ReadInput<R>,
    entry: &TarEntry,
    buf: &mut [u8],
) -> Result<(), TarError> {
    let size = entry.data_size;
    let pad = padding(size);
    if entry.has_file_data() && size > INLINE_MAX as u64 {
        let id = if size <= BUFFERED_OBJECT_MAX {
            let data = input.read_vec(size as usize)?;
            if data.len() as u64 != size {
                return Err(truncated(entry, size - data.len() as u64 + pad));
            }
            match pool {
                Some(pool) => pool.store(data),
                None => Pending::Ready(repo.ensure_object(&data)?),
            }
        } else {
            match pool {
                Some(pool) => stream_to_pool(pool, input, entry, size, pad)?,
                None => Pending::Ready(stream_here(repo, input, entry, size, pad, buf)?),
            }
        };
        w.write_reference(id, size)?;
    } else {
        copy_inline(w, input, entry, size, pad, buf)?;
    }
    let mut pad_buf = [0u8; 512];
    let p = &mut pad_buf[..pad as usize];
    let n = input.read_full(p)?;
    w.write_inline(&p[..n])?;
    if n < p.len() {
        return Err(truncated(entry, (p.len() - n) as u64));
    }
    Ok(())
}

/// A large file's data, hashed and written on this thread.
fn stream_here<R: BufRead>(
    repo: &Repository,
    input: &mut ReadInput<R>,
    entry: &TarEntry,
    size: u64,
    pad: u64,
    buf: &mut [u8],
) -> Result<ObjectId, TarError> {
    let mut ow = repo.object_writer()?;
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = input.read_full(&mut buf[..want])?;
        ow.write_all(&buf[..n])
            .map_err(|e| TarError::Repository(io_error(repo, e)))?;
        left -= n as u64;
        if n < want {
            return Err(truncated(entry, left + pad));
        }
    }
    Ok(ow.finish()?)
}

/// A large file's data, sent in pieces to a pool worker that hashes and writes it.
fn stream_to_pool<R: BufRead>(
    pool: &ObjectPool,
    input: &mut ReadInput<R>,
    entry: &TarEntry,
    size: u64,
    pad: u64,
) -> Result<Pending, TarError> {
    let (mut stream, pending) = pool.stream();
    let mut left = size;
    while left > 0 {
        let want = left.min(PIECE as u64) as usize;
        let piece = input.read_vec(want)?;
        let n = piece.len();
        left -= n as u64;
        if n < want {
            // Dropping the stream abandons the object.
            return Err(truncated(entry, left + pad));
        }
        if !stream.write(piece) {
            // The worker failed; its error is the one to report.
            return Err(pending.wait().err().map_or_else(
                || TarError::Read(std::io::Error::other("object worker stopped")),
                TarError::Repository,
            ));
        }
    }
    stream.finish();
    Ok(pending)
}

fn copy_inline<R: BufRead>(
    w: &mut Ordered<'_>,
    input: &mut ReadInput<R>,
    entry: &TarEntry,
    size: u64,
    pad: u64,
    buf: &mut [u8],
) -> Result<(), TarError> {
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = input.read_full(&mut buf[..want])?;
        w.write_inline(&buf[..n])?;
        left -= n as u64;
        if n < want {
            return Err(truncated(entry, left + pad));
        }
    }
    Ok(())
}

fn io_error(repo: &Repository, source: std::io::Error) -> cfs_repository::Error {
    cfs_repository::Error::Io {
        op: "writing an object in",
        path: repo.path().join("objects"),
        source,
    }
}
