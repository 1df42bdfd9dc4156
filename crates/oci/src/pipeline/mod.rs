//! The fetch-and-verify pipeline: every blob a pull needs, read from its [`Source`], checked
//! against both of its digests and stored; nothing is named here (see `crate::register`).
//!
//! Threads: the pull's own task (in the caller's tokio runtime) drives the source and, for
//! asynchronous sources, pumps each blob's bytes into a bounded channel ([`channel`]). All
//! CPU-bound work runs on threads of the pull's own: one *engine* thread owns the object pool
//! (one worker per core hashing and writing file contents) and starts a worker thread per
//! blob ([`worker`]: blob digest, decompression on a second thread, diff_id, tar split).
//! Blobs are processed largest first, at most `parallel` at a time.
//!
//! Cancellation: when the pull's future is dropped, the pumps go with it and [`CancelOnDrop`]
//! raises the pull's flag; workers reading local files see the flag, workers reading a
//! channel see it close, and both stop with an error. What they wrote is unnamed and
//! unregistered (gc removes it; a later pull reuses objects that are complete), so the
//! repository stays valid.

pub(crate) mod channel;
pub(crate) mod worker;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cfs_repository::{ObjectId, ObjectPool, Repository};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::error::PullError;
use crate::events::{Events, PullEvent};
use crate::source::{BlobInput, BlobRequest, OpenedSource};

/// What every thread of a pull shares.
pub(crate) struct Ctx {
    pub(crate) repo: Arc<Repository>,
    /// The image, for messages.
    pub(crate) image: String,
    pub(crate) events: Events,
    /// Bound on a layer's uncompressed size.
    pub(crate) max_layer_size: u64,
    /// Raised when the pull is dropped.
    pub(crate) cancel: Arc<AtomicBool>,
}

/// Raises the pull's cancel flag when dropped (with the pull's future) unless disarmed.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One blob to fetch and verify.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Index in the manifest's layers ([`crate::events::CONFIG_INDEX`]: an artifact's config).
    pub(crate) index: usize,
    /// "layer N" or "config", for messages.
    pub(crate) label: String,
    /// What to ask the source for.
    pub(crate) req: BlobRequest,
    /// For a tar layer: the diff_id hex it must have. `None`: an artifact blob, stored whole.
    pub(crate) diff_id: Option<String>,
}

/// A blob stored and verified (registered by the caller).
#[derive(Debug)]
pub(crate) struct Verified {
    /// The job's index.
    pub(crate) index: usize,
    pub(crate) content_id: String,
    pub(crate) stream: ObjectId,
    /// The blob's bytes as fetched.
    pub(crate) bytes: u64,
}

type Reply = oneshot::Sender<Result<Verified, PullError>>;

/// The engine thread's end: jobs to start, with their input.
struct Engine {
    tx: std::sync::mpsc::Sender<(Job, Box<dyn Read + Send>, Reply)>,
    /// Resolves when the engine thread (and every thread it started) has stopped.
    stopped: oneshot::Receiver<()>,
}

fn start_engine(ctx: Arc<Ctx>, workers: usize) -> Result<Engine, PullError> {
    let (tx, rx) = std::sync::mpsc::channel::<(Job, Box<dyn Read + Send>, Reply)>();
    let (stopped_tx, stopped) = oneshot::channel();
    let image = ctx.image.clone();
    std::thread::Builder::new()
        .name("cfs-pull".into())
        .spawn(move || {
            std::thread::scope(|s| {
                let pool = ObjectPool::new(s, &ctx.repo, workers);
                for (job, input, reply) in rx {
                    let (ctx, pool) = (&ctx, pool.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("cfs-pull {}", job.label))
                        .spawn_scoped(s, move || {
                            let _ = reply.send(worker::process(ctx, &pool, &job, input));
                        });
                    // A thread that cannot start drops its reply: the pull reports it.
                    drop(spawned);
                }
                drop(pool);
            });
            let _ = stopped_tx.send(());
        })
        .map_err(|source| PullError::Io {
            image,
            what: "starting the pull's threads",
            source,
        })?;
    Ok(Engine { tx, stopped })
}

/// Fetches and verifies every job, largest first, at most `parallel` at a time.
///
/// Nothing is registered here. On failure the caller gets the error and the blobs that were
/// verified before it.
pub(crate) async fn run_jobs(
    ctx: &Arc<Ctx>,
    source: &dyn OpenedSource,
    mut jobs: Vec<Job>,
    parallel: usize,
    workers: usize,
) -> Result<Vec<Verified>, (PullError, Vec<Verified>)> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    jobs.sort_by(|a, b| b.req.size.cmp(&a.req.size).then(a.index.cmp(&b.index)));
    let reqs: Vec<BlobRequest> = jobs.iter().map(|j| j.req.clone()).collect();
    let inputs = match source.blobs(&reqs).await {
        Ok(inputs) => inputs,
        Err((_, source)) => {
            let e = PullError::Source {
                image: ctx.image.clone(),
                source,
            };
            return Err((e, Vec::new()));
        }
    };
    let engine = start_engine(Arc::clone(ctx), workers).map_err(|e| (e, Vec::new()))?;
    let result = drive(ctx, &engine, jobs, inputs, parallel).await;
    // Every started worker has replied; let the threads end before the result is returned.
    let Engine { tx, stopped } = engine;
    drop(tx);
    let _ = stopped.await;
    result
}

type Running<'a> = BoxFuture<'a, (usize, Result<Verified, PullError>)>;
type Finishing<'a> = BoxFuture<'a, (usize, Result<(), String>)>;

async fn drive<'a>(
    ctx: &'a Arc<Ctx>,
    engine: &Engine,
    jobs: Vec<Job>,
    inputs: Vec<BlobInput<'a>>,
    parallel: usize,
) -> Result<Vec<Verified>, (PullError, Vec<Verified>)> {
    let mut done = Vec::new();
    // Blobs of unknown size: skopeo, told 0 bytes, always complains at FinishPipe. Their bytes
    // are verified by digest, which is what decides (the complaint still explains a failure).
    let size_unknown: HashSet<usize> = jobs
        .iter()
        .filter(|j| !j.req.exact_size)
        .map(|j| j.index)
        .collect();
    let mut labels: BTreeMap<usize, (String, String)> = jobs
        .iter()
        .map(|j| (j.index, (j.label.clone(), j.req.hex.clone())))
        .collect();
    let mut queue: VecDeque<(Job, BlobInput<'a>)> = jobs.into_iter().zip(inputs).collect();
    let mut running: FuturesUnordered<Running<'a>> = FuturesUnordered::new();
    let mut finishing: FuturesUnordered<Finishing<'a>> = FuturesUnordered::new();
    let mut finish_errors: BTreeMap<usize, String> = BTreeMap::new();
    let mut first_error: Option<PullError> = None;
    loop {
        while running.len() < parallel
            && first_error.is_none()
            && let Some((job, input)) = queue.pop_front()
        {
            let (reply, result) = oneshot::channel();
            ctx.events.send(PullEvent::BlobStarted {
                index: job.index,
                digest: job.req.digest.clone(),
                size: job.req.size,
            });
            let index = job.index;
            let gone = {
                let (image, label, hex) =
                    (ctx.image.clone(), job.label.clone(), job.req.hex.clone());
                move || PullError::Fetch {
                    image,
                    layer: label,
                    digest: hex,
                    message: "the worker thread died".into(),
                }
            };
            match input {
                BlobInput::Local(reader) => {
                    let reader = worker::LocalInput::new(
                        reader,
                        Arc::clone(&ctx.cancel),
                        ctx.events.clone(),
                        index,
                    );
                    let _ = engine.tx.send((job, Box::new(reader), reply));
                    running.push(Box::pin(async move {
                        (index, result.await.unwrap_or_else(|_| Err(gone())))
                    }));
                }
                BlobInput::Remote { reader, finish } => {
                    let (tx, rx) = mpsc::channel(channel::CHANNEL_DEPTH);
                    let (size, exact) = (job.req.size, job.req.exact_size);
                    let _ = engine
                        .tx
                        .send((job, Box::new(channel::ChannelReader::new(rx)), reply));
                    let (reader_tx, reader_rx) = oneshot::channel();
                    let events = &ctx.events;
                    running.push(Box::pin(async move {
                        let reader = channel::pump(reader, index, size, exact, tx, events).await;
                        let _ = reader_tx.send(reader);
                        (index, result.await.unwrap_or_else(|_| Err(gone())))
                    }));
                    finishing.push(Box::pin(async move {
                        let drain = async {
                            match reader_rx.await {
                                Ok(mut r) => {
                                    tokio::io::copy(&mut r, &mut tokio::io::sink()).await.ok()
                                }
                                Err(_) => None,
                            }
                        };
                        let (extra, fin) = futures_util::future::join(drain, finish).await;
                        let r = match (fin, extra) {
                            (Err(e), _) => Err(e),
                            (Ok(()), Some(n)) if n > 0 => {
                                Err(format!("{n} bytes more than the manifest's size"))
                            }
                            (Ok(()), _) => Ok(()),
                        };
                        (index, r)
                    }));
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, r)) = running.next() => match r {
                Ok(d) => done.push(d),
                Err(e) => {
                    // A fetch failure is better explained by the source's own error.
                    let e = match e {
                        PullError::Fetch { image, layer, digest, mut message } => {
                            while !finish_errors.contains_key(&index)
                                && let Some((i, r)) = finishing.next().await
                            {
                                if let Err(m) = r {
                                    finish_errors.insert(i, m);
                                }
                                if i == index {
                                    break;
                                }
                            }
                            if let Some(m) = finish_errors.get(&index) {
                                message = format!("{message}: {m}");
                            }
                            PullError::Fetch { image, layer, digest, message }
                        }
                        e => e,
                    };
                    first_error = Some(e);
                    // Stop at once: dropping the readers makes the source give up on the rest.
                    break;
                }
            },
            Some((index, r)) = finishing.next(), if !finishing.is_empty() => {
                if let Err(m) = r {
                    finish_errors.insert(index, m);
                }
            }
        }
    }
    if let Some(e) = first_error {
        // Stop the other workers: their pumps go with `running`, local readers see the flag.
        ctx.cancel.store(true, Ordering::Relaxed);
        return Err((e, done));
    }
    while let Some((index, r)) = finishing.next().await {
        if let Err(m) = r {
            finish_errors.insert(index, m);
        }
    }
    if let Some((index, m)) = finish_errors
        .into_iter()
        .find(|(index, _)| !size_unknown.contains(index))
    {
        let (layer, digest) = labels.remove(&index).unwrap_or_default();
        // The source's verdict on a blob we verified ourselves is odd but decisive: keep only
        // the others.
        done.retain(|d: &Verified| d.index != index);
        return Err((
            PullError::Fetch {
                image: ctx.image.clone(),
                layer,
                digest,
                message: m,
            },
            done,
        ));
    }
    Ok(done)
}
