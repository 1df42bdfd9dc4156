//! [`ObjectPool`]: storing objects on worker threads, so that whoever produces file contents
//! (the tar splitter) does not also hash and write them.
//!
//! A pool is a fixed number of threads (the pull sizes it to the cores) inside a
//! [`std::thread::scope`], fed through a bounded queue. Two kinds of work:
//! - [`ObjectPool::store`]: a whole object already in memory (small and medium files); the
//!   worker computes its fs-verity digest and writes it unless it is already stored, exactly
//!   as [`Repository::ensure_object`] does on the caller's thread.
//! - [`ObjectPool::stream`]: an object of any size sent in pieces through a bounded channel
//!   ([`ObjectStream`]); the worker hashes and writes each piece as it arrives, so a large
//!   file is never held whole in memory.
//!
//! Both return a [`Pending`] id to wait for. Results come back in whatever order the workers
//! finish; callers that need order (a splitstream's references) wait for them in order.
//!
//! Memory is bounded by the queue depth times the largest in-memory object, plus
//! [`STREAM_DEPTH`] pieces per open stream. No deadlock is possible as long as a producer
//! finishes (or drops) one stream before it waits for any other result: a running stream
//! task only waits for its own producer, and every other task finishes on its own.

use std::io::Write as _;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use crate::digest::ObjectId;
use crate::error::{Error, IoContext, Result};
use crate::repository::Repository;

/// Pieces in flight between a stream's producer and its worker.
pub const STREAM_DEPTH: usize = 4;

/// An object id that a pool worker is still computing (or an id already known).
#[derive(Debug)]
pub enum Pending {
    /// Known already (stored on the caller's thread).
    Ready(ObjectId),
    /// Being stored by a worker.
    Waiting(Receiver<Result<ObjectId>>),
}

fn worker_gone() -> Error {
    Error::Io {
        op: "storing an object on",
        path: "a worker thread".into(),
        source: std::io::Error::other("the object worker stopped"),
    }
}

impl Pending {
    /// Waits for the object to be stored and returns its id.
    pub fn wait(self) -> Result<ObjectId> {
        match self {
            Pending::Ready(id) => Ok(id),
            Pending::Waiting(rx) => rx.recv().unwrap_or_else(|_| Err(worker_gone())),
        }
    }

    /// The result if it is there, without blocking.
    pub fn poll(&mut self) -> Option<Result<ObjectId>> {
        match self {
            Pending::Ready(id) => Some(Ok(*id)),
            Pending::Waiting(rx) => match rx.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Err(worker_gone())),
            },
        }
    }
}

enum Piece {
    Data(Vec<u8>),
    End,
}

enum Task {
    Bytes(Vec<u8>, SyncSender<Result<ObjectId>>),
    Stream(Receiver<Piece>, SyncSender<Result<ObjectId>>),
}

/// The producer's end of a streamed object. Dropped without [`ObjectStream::finish`], the
/// object is abandoned (nothing is stored).
pub struct ObjectStream {
    tx: SyncSender<Piece>,
}

impl ObjectStream {
    /// Sends the next piece. `false` means the worker gave up (its [`Pending`] says why).
    #[must_use]
    pub fn write(&mut self, piece: Vec<u8>) -> bool {
        self.tx.send(Piece::Data(piece)).is_ok()
    }

    /// Marks the end of the object.
    pub fn finish(self) {
        // A worker that gave up reports why through the Pending.
        let _ = self.tx.send(Piece::End);
    }
}

/// A pool of object-storing threads; see the module docs. Cloning gives another handle to
/// the same workers; the workers stop once every handle is dropped.
#[derive(Clone)]
pub struct ObjectPool {
    tx: SyncSender<Task>,
}

impl ObjectPool {
    /// Starts `threads` workers (at least one) in `scope`, storing into `repo`. At most
    /// `2 * threads` tasks wait in the queue; submitting more blocks.
    pub fn new<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'env Repository,
        threads: usize,
    ) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Task>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            scope.spawn(move || {
                loop {
                    let task = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match task {
                        Ok(task) => run(repo, task),
                        Err(_) => return,
                    }
                }
            });
        }
        Self { tx }
    }

    /// Stores `data` as an object on a worker.
    pub fn store(&self, data: Vec<u8>) -> Pending {
        let (tx, rx) = mpsc::sync_channel(1);
        // If the workers are gone the receiver reports it.
        let _ = self.tx.send(Task::Bytes(data, tx));
        Pending::Waiting(rx)
    }

    /// Starts an object whose content is sent in pieces.
    pub fn stream(&self) -> (ObjectStream, Pending) {
        let (piece_tx, piece_rx) = mpsc::sync_channel(STREAM_DEPTH);
        let (tx, rx) = mpsc::sync_channel(1);
        let _ = self.tx.send(Task::Stream(piece_rx, tx));
        (ObjectStream { tx: piece_tx }, Pending::Waiting(rx))
    }
}

fn run(repo: &Repository, task: Task) {
    match task {
        Task::Bytes(data, done) => {
            let _ = done.send(repo.ensure_object(&data));
        }
        Task::Stream(pieces, done) => {
            let _ = done.send(stream_object(repo, pieces));
        }
    }
}

fn stream_object(repo: &Repository, pieces: Receiver<Piece>) -> Result<ObjectId> {
    let mut w = repo.object_writer()?;
    loop {
        match pieces.recv() {
            Ok(Piece::Data(d)) => w
                .write_all(&d)
                .ctx("writing an object in", repo.path().join("objects"))?,
            Ok(Piece::End) => return w.finish(),
            Err(_) => {
                return Err(Error::Io {
                    op: "writing an object in",
                    path: repo.path().join("objects"),
                    source: std::io::Error::other("the producer abandoned the object"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlgorithm;
    use crate::fsverity::FsVerityHasher;
    use crate::repository::InitVerity;

    #[test]
    fn stores_in_any_order_and_streams() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(
            &tmp.path().join("r"),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init");
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        std::thread::scope(|s| {
            let pool = ObjectPool::new(s, &repo, 2);
            let mut pending = Vec::new();
            for i in 0..50u8 {
                let data = vec![i; 1000 + usize::from(i)];
                pending.push((
                    FsVerityHasher::digest(HashAlgorithm::Sha256, &data),
                    pool.store(data),
                ));
            }
            let (mut st, p) = pool.stream();
            for c in big.chunks(100_000) {
                assert!(st.write(c.to_vec()), "piece");
            }
            st.finish();
            assert_eq!(
                p.wait().expect("stream"),
                FsVerityHasher::digest(HashAlgorithm::Sha256, &big)
            );
            for (want, p) in pending {
                assert_eq!(p.wait().expect("store"), want);
                assert!(repo.has_object(&want).expect("has"));
            }
            // An abandoned stream stores nothing and says so.
            let (mut st, p) = pool.stream();
            assert!(st.write(vec![1; 10]), "piece");
            drop(st);
            assert!(p.wait().is_err());
        });
    }
}
