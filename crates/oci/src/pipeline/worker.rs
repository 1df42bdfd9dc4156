//! A blob's worker thread: hash the blob as it is read (== its digest), decompress it on a
//! second thread, hash the uncompressed bytes (== the diff_id) while splitting the tar, and
//! hand every file to the pull's object pool. Artifact blobs are stored whole as one object.
//! Nothing is registered here: the worker returns what it verified.

use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cfs_repository::{ObjectId, ObjectPool};

use super::{Ctx, Job, Verified};
use crate::decompress::Decompressor;
use crate::error::PullError;
use crate::events::{Events, PullEvent};
use crate::ids::blob_content_id;
use crate::layer::{
    HashingReader, layer_content_id, split_layer_with_pool, split_layer_with_pool_unhashed,
};
use crate::manifest::Compression;
use crate::tar::TarError;

/// Size of the decompressed chunks passed from a layer's decompressing thread to its parser.
const TAR_CHUNK: usize = 256 * 1024;
/// Decompressed chunks in flight between them.
const TAR_CHUNK_DEPTH: usize = 8;
/// Progress of a local blob is reported in steps of this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// A local blob as the worker reads it: stops with an error once the pull is cancelled, and
/// reports progress.
pub(crate) struct LocalInput {
    inner: Box<dyn Read + Send>,
    cancel: Arc<AtomicBool>,
    events: Events,
    index: usize,
    unreported: u64,
}

impl LocalInput {
    pub(crate) fn new(
        inner: Box<dyn Read + Send>,
        cancel: Arc<AtomicBool>,
        events: Events,
        index: usize,
    ) -> Self {
        Self {
            inner,
            cancel,
            events,
            index,
            unreported: 0,
        }
    }

    fn report(&mut self) {
        if self.unreported > 0 {
            self.events.send(PullEvent::BlobProgress {
                index: self.index,
                bytes: self.unreported,
            });
            self.unreported = 0;
        }
    }
}

impl Read for LocalInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("pull cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.unreported += n as u64;
        if n == 0 || self.unreported >= PROGRESS_STEP {
            self.report();
        }
        Ok(n)
    }
}

/// Remembers the first error of the blob's reader (the reason the blob could not be read,
/// which explains any later decoder or parser error) and repeats it.
struct Recorder {
    inner: Box<dyn Read + Send>,
    error: Option<(io::ErrorKind, String)>,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.error {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

/// The parser's end of a layer's decompressed bytes: chunks from the decompressing thread,
/// read in place (no copy into another buffer); used chunks go back to be refilled.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.chunk, next);
                    self.pos = 0;
                    // The decompressor may have finished; then the chunk is simply dropped.
                    let _ = self.recycle.send(used);
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.chunk.len());
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The decompressing thread of a layer: sniffs and decompresses `comp` into chunks for the
/// parser until the end, an error (sent on as the last message) or the parser hanging up.
/// Past `limit` uncompressed bytes it stops and returns `true` (the caller reports the bound).
fn decompress_into(
    mut dec: impl Read,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
    limit: u64,
) -> bool {
    let mut total = 0u64;
    loop {
        let mut chunk = recycle.try_recv().unwrap_or_default();
        chunk.resize(TAR_CHUNK, 0);
        // Fill the chunk: fewer, larger messages.
        let mut n = 0;
        let mut failure = None;
        while n < chunk.len() {
            match dec.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        chunk.truncate(n);
        total += n as u64;
        if total > limit {
            // Dropping `tx` ends the splitter's input; the caller reports the bound.
            return true;
        }
        if n > 0 && tx.send(Ok(chunk)).is_err() {
            return false;
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e));
            return false;
        }
        if n < TAR_CHUNK {
            return false;
        }
    }
}

enum Failure {
    /// Past `--max-layer-size`: decided without reading the rest of the blob.
    Bound(io::Error),
    Decompress(io::Error),
    Tar(TarError),
    Repo(cfs_repository::Error),
    Io(io::Error),
}

/// A layer's diff_id as the split found it.
enum DiffId {
    /// Hashed from the decompressed bytes.
    Hashed(String),
    /// The blob is not compressed: its digest, computed as it is read, is the diff_id.
    SameAsBlob,
}

/// Splits a layer: a decompressing thread feeds this one, which hashes and parses.
fn split_layer<R: Read + Send>(
    ctx: &Ctx,
    pool: &ObjectPool,
    job: &Job,
    comp: &mut HashingReader<R>,
) -> Result<(ObjectId, Option<DiffId>), Failure> {
    // The format is sniffed from the blob's first bytes (never from its media type).
    let (dec, kind) = Decompressor::new(comp).map_err(Failure::Decompress)?;
    std::thread::scope(|s| {
        let (tx, chunks) = std::sync::mpsc::sync_channel(TAR_CHUNK_DEPTH);
        let limit = ctx.max_layer_size;
        let (recycle, recycled) = std::sync::mpsc::channel();
        let decompressor = std::thread::Builder::new()
            .name(format!("decompress {}", job.label))
            .spawn_scoped(s, move || decompress_into(dec, tx, recycled, limit))
            .map_err(Failure::Io)?;
        let input = ChunkReader {
            rx: chunks,
            recycle,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        };
        // The reader is consumed: when the splitter stops (done or failed) the
        // decompressor's sends fail and it stops too.
        // An uncompressed blob's bytes are the tar's: hashed once, as the blob.
        let imported = if kind == Compression::None {
            split_layer_with_pool_unhashed(&ctx.repo, input, pool)
        } else {
            split_layer_with_pool(&ctx.repo, input, pool)
        };
        match decompressor.join() {
            Err(_) => {
                return Err(Failure::Io(io::Error::other(
                    "the decompressing thread panicked",
                )));
            }
            Ok(true) => {
                return Err(Failure::Bound(io::Error::other(format!(
                    "the layer decompresses to more than {limit} bytes (the bound set by \
                     --max-layer-size)"
                ))));
            }
            Ok(false) => {}
        }
        let imported = imported.map_err(|e| match e {
            // Errors reading the decompressed stream come from the decoder (or the
            // blob's reader, reported first by the caller).
            TarError::Read(e) if e.kind() != io::ErrorKind::InvalidData => Failure::Decompress(e),
            e => Failure::Tar(e),
        })?;
        let diff_id = if kind == Compression::None {
            DiffId::SameAsBlob
        } else {
            DiffId::Hashed(imported.diff_id)
        };
        Ok((imported.stream, Some(diff_id)))
    })
}

/// Stores an artifact blob whole, as one object referenced by a one-entry stream.
fn store_whole<R: Read>(
    ctx: &Ctx,
    job: &Job,
    comp: &mut HashingReader<R>,
) -> Result<(ObjectId, Option<DiffId>), Failure> {
    let repo = &ctx.repo;
    let mut w = repo.object_writer().map_err(Failure::Repo)?;
    io::copy(comp, &mut w).map_err(Failure::Io)?;
    let id = w.finish().map_err(Failure::Repo)?;
    let mut s = repo
        .create_stream("application/octet-stream")
        .map_err(Failure::Repo)?;
    s.write_reference(id, job.req.size).map_err(Failure::Repo)?;
    Ok((s.finish().map_err(Failure::Repo)?, None))
}

/// Verifies and stores one blob read from `input`.
pub(crate) fn process(
    ctx: &Ctx,
    pool: &ObjectPool,
    job: &Job,
    input: Box<dyn Read + Send>,
) -> Result<Verified, PullError> {
    let image = &ctx.image;
    let mut comp = HashingReader::new(Recorder {
        inner: input,
        error: None,
    });
    let outcome = match &job.diff_id {
        Some(_) => split_layer(ctx, pool, job, &mut comp),
        None => store_whole(ctx, job, &mut comp),
    };
    let decompress_err = |source| PullError::Decompress {
        image: image.clone(),
        layer: job.index,
        digest: job.req.hex.clone(),
        source,
    };
    // Past the bound: stop here, rather than read the rest of a blob that may not end.
    let outcome = match outcome {
        Err(Failure::Bound(source)) => return Err(decompress_err(source)),
        other => other,
    };
    // Read what the consumer left, so the digest covers the whole blob.
    let _ = io::copy(&mut comp, &mut io::sink());
    let read_error = comp.get_ref().error.clone();
    let (actual, count) = comp.finish();
    let fetch = |message: String| PullError::Fetch {
        image: image.clone(),
        layer: job.label.clone(),
        digest: job.req.hex.clone(),
        message,
    };
    match read_error {
        Some((io::ErrorKind::UnexpectedEof, _)) => {
            return Err(fetch(format!(
                "the blob ended after {count} of {} bytes",
                job.req.size
            )));
        }
        Some((_, message)) => return Err(fetch(message)),
        None if job.req.exact_size && count != job.req.size => {
            return Err(fetch(format!(
                "the blob ended after {count} of {} bytes",
                job.req.size
            )));
        }
        None => {}
    }
    if actual != job.req.hex {
        return Err(PullError::BlobDigest {
            image: image.clone(),
            layer: job.label.clone(),
            expected: job.req.hex.clone(),
            actual,
        });
    }
    let (stream, diff_id) = outcome.map_err(|f| match f {
        Failure::Bound(source) | Failure::Decompress(source) => decompress_err(source),
        Failure::Tar(source) => PullError::Tar {
            image: image.clone(),
            layer: job.index,
            digest: job.req.hex.clone(),
            source: Box::new(source),
        },
        Failure::Repo(source) => PullError::Repository {
            image: image.clone(),
            source,
        },
        Failure::Io(source) => PullError::Io {
            image: image.clone(),
            what: "storing a blob",
            source,
        },
    })?;
    let diff_id = diff_id.map(|d| match d {
        DiffId::Hashed(hex) => hex,
        DiffId::SameAsBlob => actual.clone(),
    });
    let content_id = match (&job.diff_id, diff_id) {
        (Some(expected), Some(actual)) => {
            if *expected != actual {
                return Err(PullError::DiffId {
                    image: image.clone(),
                    layer: job.index,
                    digest: job.req.hex.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
            layer_content_id(expected)
        }
        _ => blob_content_id(&job.req.hex),
    };
    ctx.events.send(PullEvent::BlobDone { index: job.index });
    Ok(Verified {
        index: job.index,
        content_id,
        stream,
        bytes: count,
    })
}
