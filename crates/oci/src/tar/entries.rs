//! [`entries`]: the entries of a stored tar layer, read from its splitstream with the same
//! parser that split it. File contents are not read: an entry names its object.

use std::io::Read;

use cfs_repository::{Chunk, ObjectId, Repository, SplitStreamReader};

use super::parser::{BlockInput, METADATA_MAX, Parser, lossy, padding};
use super::{Content, TAR_CONTENT_TYPE, TarEntry, TarError};

/// Reads the entries of a tar splitstream (see [`entries`]).
pub struct Entries<R: Read> {
    input: StreamInput<R>,
    parser: Parser,
    done: bool,
}

/// The entries of the tar archive stored in `stream` (a splitstream written by
/// [`super::split`]), in archive order. Headers and inline data are decoded from the stream;
/// regular files' contents are reported as [`Content::External`] objects without reading
/// them. Entry boundaries follow exactly the rules the splitter used.
pub fn entries<R: Read>(
    repo: &Repository,
    stream: SplitStreamReader<R>,
) -> Result<Entries<R>, TarError> {
    let header = stream.header();
    if header.content_type != TAR_CONTENT_TYPE {
        return Err(TarError::Stream(format!(
            "the stream holds {:?}, not a tar archive ({TAR_CONTENT_TYPE})",
            header.content_type
        )));
    }
    if header.algorithm != repo.algorithm() {
        return Err(TarError::Stream(format!(
            "the stream uses {} but the repository uses {}",
            header.algorithm,
            repo.algorithm()
        )));
    }
    Ok(Entries {
        input: StreamInput {
            reader: stream,
            chunk: Vec::new(),
            pos: 0,
            offset: 0,
            end: false,
        },
        parser: Parser::new(),
        done: false,
    })
}

/// The inline bytes of a splitstream, one chunk at a time.
struct StreamInput<R: Read> {
    reader: SplitStreamReader<R>,
    chunk: Vec<u8>,
    pos: usize,
    /// Archive offset of `chunk[pos]`.
    offset: u64,
    end: bool,
}

enum Next {
    Inline,
    External(ObjectId, u64),
    End,
}

impl<R: Read> StreamInput<R> {
    /// Makes inline bytes available, or reports the next chunk's object.
    fn fill(&mut self) -> Result<Next, TarError> {
        if self.pos < self.chunk.len() {
            return Ok(Next::Inline);
        }
        if self.end {
            return Ok(Next::End);
        }
        let mut buf = std::mem::take(&mut self.chunk);
        let next = match self.reader.next_chunk(&mut buf)? {
            None => {
                self.end = true;
                buf.clear();
                Next::End
            }
            Some(Chunk::Inline(_)) => Next::Inline,
            Some(Chunk::External { object, size }) => {
                buf.clear();
                Next::External(object, size)
            }
        };
        self.chunk = buf;
        self.pos = 0;
        Ok(next)
    }
}

impl<R: Read> BlockInput for StreamInput<R> {
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.fill()? {
                Next::End => break,
                Next::External(object, _) => {
                    return Err(TarError::Stream(format!(
                        "object {object} at byte {} where the tar archive has headers or \
                         padding (not a stream written by the tar splitter)",
                        self.offset
                    )));
                }
                Next::Inline => {
                    let k = (self.chunk.len() - self.pos).min(buf.len() - n);
                    buf[n..n + k].copy_from_slice(&self.chunk[self.pos..self.pos + k]);
                    self.pos += k;
                    self.offset += k as u64;
                    n += k;
                }
            }
        }
        Ok(n)
    }
}

impl<R: Read> Entries<R> {
    fn data(&mut self, entry: &TarEntry) -> Result<Content, TarError> {
        let size = entry.data_size;
        if size == 0 {
            return Ok(Content::Inline(Vec::new()));
        }
        let content = match self.input.fill()? {
            Next::External(object, n) if n == size => {
                self.input.offset += n;
                Content::External { object, size }
            }
            Next::External(object, n) => {
                return Err(TarError::Stream(format!(
                    "entry {:?}: object {object} holds {n} bytes but the entry has {size}",
                    lossy(&entry.path)
                )));
            }
            Next::End => return Err(truncated(entry, size)),
            Next::Inline => {
                if size > METADATA_MAX {
                    return Err(TarError::Stream(format!(
                        "entry {:?}: {size} bytes of data stored inline (more than the {} \
                         bytes read into memory; not a stream written by the tar splitter)",
                        lossy(&entry.path),
                        METADATA_MAX
                    )));
                }
                let mut data = vec![0u8; size as usize];
                let n = self.input.read_full(&mut data)?;
                if n < data.len() {
                    return Err(truncated(entry, size - n as u64));
                }
                Content::Inline(data)
            }
        };
        let pad = padding(size);
        let mut pad_buf = [0u8; 512];
        let n = self.input.read_full(&mut pad_buf[..pad as usize])?;
        if n < pad as usize {
            return Err(truncated(entry, pad - n as u64));
        }
        Ok(content)
    }

    fn next_entry(&mut self) -> Result<Option<TarEntry>, TarError> {
        let mut sink = |_: &[u8]| Ok(());
        let Some(mut entry) = self.parser.next_entry(&mut self.input, &mut sink)? else {
            return Ok(None);
        };
        entry.content = self.data(&entry)?;
        self.parser
            .advance(entry.data_size + padding(entry.data_size));
        Ok(Some(entry))
    }
}

fn truncated(entry: &TarEntry, missing: u64) -> TarError {
    TarError::Truncated {
        offset: entry.offset,
        entry: lossy(&entry.path),
        missing,
    }
}

impl<R: Read> Iterator for Entries<R> {
    type Item = Result<TarEntry, TarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
