//! [`split`]: a tar archive into a splitstream. Headers, padding, small files and anything
//! after the end of the archive go inline; each regular file's data larger than
//! [`INLINE_MAX`] becomes exactly one object, streamed in bounded pieces.

use std::io::{BufReader, Read, Write};

use cfs_repository::splitstream::INLINE_MAX;
use cfs_repository::{ObjectId, Repository, SplitStreamWriter};

use super::parser::{BlockInput, Parser, lossy, padding};
use super::{TAR_CONTENT_TYPE, TarEntry, TarError};

/// Data up to this size is read into memory and stored with `ensure_object` (which skips the
/// write when the object exists); larger data is streamed through an object writer.
const BUFFERED_OBJECT_MAX: u64 = 1 << 20;
/// Piece size for copying.
const PIECE: usize = 256 * 1024;

struct ReadInput<R> {
    inner: R,
}

impl<R: Read> BlockInput for ReadInput<R> {
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Read(e)),
            }
        }
        Ok(n)
    }
}

/// Splits the tar stream from `input` into a new (unregistered) splitstream; returns its object.
///
/// Reads `input` to its end: bytes after the end-of-archive marker are kept inline, so the
/// stream re-creates exactly what was read. Fails (storing no stream) on archives whose entry
/// boundaries are unclear; see docs/tar.md.
pub fn split(repo: &Repository, input: impl Read) -> Result<ObjectId, TarError> {
    let mut input = ReadInput {
        inner: BufReader::with_capacity(PIECE, input),
    };
    let mut w = repo.create_stream(TAR_CONTENT_TYPE)?;
    let mut parser = Parser::new();
    let mut buf = vec![0u8; PIECE];
    loop {
        let entry = {
            let mut sink = |bytes: &[u8]| -> Result<(), TarError> { Ok(w.write_inline(bytes)?) };
            parser.next_entry(&mut input, &mut sink)?
        };
        let Some(entry) = entry else { break };
        store_data(repo, &mut w, &mut input, &entry, &mut buf)?;
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
    Ok(w.finish()?)
}

fn truncated(entry: &TarEntry, missing: u64) -> TarError {
    TarError::Truncated {
        offset: entry.offset,
        entry: lossy(&entry.path),
        missing,
    }
}

/// Copies an entry's data area and padding from the input into the stream.
fn store_data<R: Read>(
    repo: &Repository,
    w: &mut SplitStreamWriter<'_>,
    input: &mut ReadInput<R>,
    entry: &TarEntry,
    buf: &mut [u8],
) -> Result<(), TarError> {
    let size = entry.data_size;
    let pad = padding(size);
    if entry.has_file_data() && size > INLINE_MAX as u64 {
        let id = if size <= BUFFERED_OBJECT_MAX {
            let mut data = vec![0u8; size as usize];
            let n = input.read_full(&mut data)?;
            if n < data.len() {
                return Err(truncated(entry, size - n as u64 + pad));
            }
            repo.ensure_object(&data)?
        } else {
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
            ow.finish()?
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

fn copy_inline<R: Read>(
    w: &mut SplitStreamWriter<'_>,
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
