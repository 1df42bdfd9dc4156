//! The bridge from an asynchronous source (a pipe from skopeo) to a blob's worker thread:
//! [`pump`] runs on the pull's task and moves the bytes through a bounded channel, and
//! [`ChannelReader`] is the blocking `Read` the worker sees.

use std::io::{self, Read};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;

use crate::events::{Events, PullEvent};

/// Chunks in flight between a blob's pump and its worker thread.
pub(crate) const CHANNEL_DEPTH: usize = 16;
/// Largest chunk the pump reads at once.
const CHUNK: usize = 256 * 1024;

/// A message from a pump to its worker.
pub(crate) enum Msg {
    Data(Vec<u8>),
    /// All `size` bytes sent.
    End,
    /// The blob ended early.
    Short,
    /// Reading failed.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Short,
    Failed(String),
    Aborted,
}

/// The worker's end of the bridge: a blocking `Read` over the pump's chunks. A blob that
/// ends early reads as `UnexpectedEof`; a failed read, or a pump that went away (the pull
/// was dropped), as another error.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    state: State,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<Msg>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
            state: State::Open,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                State::Open => {}
                State::Ended => return Ok(0),
                State::Short => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob ended early",
                    ));
                }
                State::Failed(m) => return Err(io::Error::other(m.clone())),
                State::Aborted => return Err(io::Error::other("pull aborted")),
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Some(Msg::End) => self.state = State::Ended,
                Some(Msg::Short) => self.state = State::Short,
                Some(Msg::Failed(m)) => self.state = State::Failed(m),
                None => self.state = State::Aborted,
            }
        }
    }
}

/// Moves exactly `size` bytes (or fewer, if the blob ends early; or, without `exact_size`,
/// everything up to the end) from `reader` into the channel; returns the reader so the rest
/// can be drained while the source finishes.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    index: usize,
    size: u64,
    exact_size: bool,
    tx: mpsc::Sender<Msg>,
    events: &Events,
) -> R {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while !exact_size || got < size {
        let want = if exact_size {
            usize::try_from(size - got).unwrap_or(CHUNK).min(CHUNK)
        } else {
            CHUNK
        };
        match reader.read(&mut buf[..want]).await {
            Ok(0) if !exact_size => break,
            Ok(0) => {
                let _ = tx.send(Msg::Short).await;
                return reader;
            }
            Ok(n) => {
                got += n as u64;
                events.send(PullEvent::BlobProgress {
                    index,
                    bytes: n as u64,
                });
                if tx.send(Msg::Data(buf[..n].to_vec())).await.is_err() {
                    return reader;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Msg::Failed(e.to_string())).await;
                return reader;
            }
        }
    }
    let _ = tx.send(Msg::End).await;
    reader
}
