//! `--progress-fd N`: a pull's progress as JSON lines on a file descriptor the caller opened
//! (in the spirit of bootc's `--progress-fd`), one object per line, schema in docs/cli.md.
//!
//! Every object has `"version": 1` and a `"type"`: `start`, `resolved`, `layer_start`,
//! `layer_progress` (at most every 100 ms per layer, and once more when the layer is done),
//! `layer_done`, `layer_skipped`, `message`, then `done` or `error` as the last line. A reader
//! that goes away does not fail the pull: writing stops with one warning.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cfs_oci::events::{CONFIG_INDEX, PullEvent};
use cfs_oci::pull::PullResult;
use serde_json::{Value, json};

/// The schema version of every line.
pub const VERSION: u32 = 1;
/// The least time between two `layer_progress` lines of one layer.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The writer of one pull's progress lines.
pub struct ProgressFd {
    out: Option<File>,
    /// Per layer: bytes read so far, bytes already reported, when last reported.
    layers: HashMap<usize, (u64, u64, Instant)>,
}

impl ProgressFd {
    /// Takes a duplicate of `fd` (which must be open for writing); the caller's descriptor
    /// stays its own.
    pub fn open(fd: RawFd) -> Result<Self> {
        if fd < 0 {
            bail!("--progress-fd {fd}: not a file descriptor");
        }
        // SAFETY: the descriptor is only borrowed for the duration of the `fcntl_dupfd_cloexec`
        // call; if it is not open the call fails with EBADF (reported below) and nothing else
        // is done with it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = rustix::io::fcntl_dupfd_cloexec(borrowed, 3)
            .with_context(|| format!("--progress-fd {fd}: not an open file descriptor"))?;
        let flags = rustix::fs::fcntl_getfl(&dup)
            .with_context(|| format!("--progress-fd {fd}: reading its flags"))?;
        let mode = flags & rustix::fs::OFlags::ACCMODE;
        if mode == rustix::fs::OFlags::RDONLY {
            bail!("--progress-fd {fd}: the descriptor is open for reading only");
        }
        Ok(Self {
            out: Some(File::from(dup)),
            layers: HashMap::new(),
        })
    }

    fn line(&mut self, mut v: Value) {
        let Some(out) = &mut self.out else { return };
        v["version"] = VERSION.into();
        let mut text = v.to_string();
        text.push('\n');
        if let Err(e) = out.write_all(text.as_bytes()) {
            eprintln!("cfsctl: warning: --progress-fd: {e}; no more progress is written there");
            self.out = None;
        }
    }

    /// The first line: what is pulled and under which name.
    pub fn start(&mut self, image: &str, name: Option<&str>) {
        self.line(json!({"type": "start", "image": image, "name": name}));
    }

    /// One pull event.
    pub fn event(&mut self, event: &PullEvent) {
        let layer = |i: usize| -> Value {
            if i == CONFIG_INDEX {
                "config".into()
            } else {
                i.into()
            }
        };
        match event {
            PullEvent::Message(text) => self.line(json!({"type": "message", "text": text})),
            PullEvent::Resolved {
                manifest_digest,
                blobs,
                to_fetch,
                bytes_to_fetch,
            } => self.line(json!({
                "type": "resolved",
                "manifest_digest": manifest_digest,
                "layers": blobs,
                "to_fetch": to_fetch,
                "bytes_to_fetch": bytes_to_fetch,
            })),
            PullEvent::BlobStarted {
                index,
                digest,
                size,
            } => {
                self.layers.insert(*index, (0, 0, Instant::now()));
                self.line(json!({"type": "layer_start", "index": layer(*index), "digest": digest, "size": size}));
            }
            PullEvent::BlobProgress { index, bytes } => {
                let now = Instant::now();
                let entry = self.layers.entry(*index).or_insert((0, 0, now));
                entry.0 += bytes;
                if now.duration_since(entry.2) >= PROGRESS_EVERY {
                    let done = entry.0;
                    entry.1 = done;
                    entry.2 = now;
                    self.line(
                        json!({"type": "layer_progress", "index": layer(*index), "bytes": done}),
                    );
                }
            }
            PullEvent::BlobDone { index } => {
                if let Some((done, reported, _)) = self.layers.remove(index)
                    && done != reported
                {
                    self.line(
                        json!({"type": "layer_progress", "index": layer(*index), "bytes": done}),
                    );
                }
                self.line(json!({"type": "layer_done", "index": layer(*index)}));
            }
            PullEvent::BlobSkipped { index, digest } => {
                self.line(
                    json!({"type": "layer_skipped", "index": layer(*index), "digest": digest}),
                );
            }
            _ => {}
        }
    }

    /// The last line of a pull that succeeded.
    pub fn done(&mut self, result: &PullResult) {
        let mut v = result_json(result);
        v["type"] = "done".into();
        self.line(v);
    }

    /// The last line of a pull that failed.
    pub fn error(&mut self, message: &str) {
        self.line(json!({"type": "error", "message": message}));
    }
}

/// A pull's result as `oci pull --json` prints it (and the `done` line carries).
pub fn result_json(r: &PullResult) -> Value {
    json!({
        "name": r.name,
        "image_id": r.image_id,
        "manifest_digest": r.manifest_digest,
        "list_digest": r.list_digest,
        "platform": r.platform.as_ref().map(ToString::to_string),
        "artifact": r.artifact,
        "fetched": r.fetched,
        "fetched_bytes": r.fetched_bytes,
        "reused": r.reused,
        "moved_from": r.moved_from,
    })
}
