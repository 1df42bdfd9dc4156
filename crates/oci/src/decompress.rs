//! Decompressing layer blobs as they stream in: gzip (every member, as `gzip -d` does), zstd
//! (every frame; skippable frames are skipped) or nothing.
//!
//! zstd's decoder memory is its window, which the *frame* chooses (up to 2 GiB and more with
//! `zstd --long=31`): each frame's header is read before it is decoded and a window above
//! [`ZSTD_WINDOW_MAX`] is refused with [`ZstdError::WindowTooLarge`], naming both sizes.
//!
//! The format is recognised from the first bytes, not taken from the media type: some sources
//! label uncompressed tars as gzip (skopeo's `docker-archive:` manifests do), and a blob that
//! is not what its media type says must still be read correctly, or fail its diff_id check.

use std::io::{self, BufRead, BufReader, Read};

use zstd::zstd_safe::{self, DCtx, DParameter, InBuffer, OutBuffer};

use crate::manifest::Compression;

/// Largest zstd window accepted, in bytes: 8 MiB (window log 23), the window every zstd level
/// up to 19 uses, and what RFC 8878 asks every decoder to support. Frames made with
/// `--ultra -20`..`-22` (32..128 MiB) or `--long` (128 MiB and up) are refused. With one
/// decoder per layer and as many layers at once as cores, this keeps a pull's decoders within
/// 8 MiB a core (a 2-core pull's peak RSS is in docs/performance.md).
pub const ZSTD_WINDOW_MAX: u64 = 1 << ZSTD_WINDOW_LOG_MAX;
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Recognises the compression of a blob from its first bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) || is_zstd_skippable(head) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A zstd skippable frame: magic 0x184D2A50..=0x184D2A5F, little-endian.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

/// A decompressing reader.
pub enum Decompressor<R: BufRead> {
    /// Pass-through.
    None(R),
    /// gzip, all members.
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    /// zstd, all frames, windows bounded.
    Zstd(Box<ZstdDecoder<R>>),
}

/// The buffered input of a [`Decompressor`] made by [`Decompressor::new`]: the sniffed first
/// bytes, then the rest.
pub type Sniffed<R> = BufReader<io::Chain<io::Cursor<Vec<u8>>, R>>;

impl<R: Read> Decompressor<Sniffed<R>> {
    /// Looks at the first bytes of `input` and decompresses accordingly. Returns the format
    /// found, too.
    pub fn new(mut input: R) -> io::Result<(Self, Compression)> {
        let mut head = [0u8; 4];
        let mut n = 0;
        while n < head.len() {
            match input.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let kind = sniff(&head[..n]);
        let input =
            BufReader::with_capacity(128 * 1024, io::Cursor::new(head[..n].to_vec()).chain(input));
        let d = match kind {
            Compression::None => Decompressor::None(input),
            Compression::Gzip => {
                Decompressor::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(input)))
            }
            Compression::Zstd => Decompressor::Zstd(Box::new(ZstdDecoder::new(input)?)),
        };
        Ok((d, kind))
    }
}

impl<R: BufRead> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::None(r) => r.read(buf),
            Decompressor::Gzip(r) => r.read(buf),
            Decompressor::Zstd(r) => r.read(buf),
        }
    }
}

/// Why a zstd stream could not be decoded. Reported inside an [`io::Error`] (kind
/// `InvalidData`, or `UnexpectedEof` for a cut frame) by [`Decompressor`]'s `read`.
#[derive(Debug, thiserror::Error)]
pub enum ZstdError {
    /// A frame's header asks for a window larger than [`ZSTD_WINDOW_MAX`].
    #[error(
        "zstd frame at compressed byte {offset} needs a decoder window of {} ({window} bytes); \
         at most {} ({limit} bytes) is accepted, to bound a pull's memory (recompress the \
         layer without --long or --ultra)",
        human(*window),
        human(*limit)
    )]
    WindowTooLarge {
        /// Offset of the frame in the compressed blob.
        offset: u64,
        /// The window the frame asks for.
        window: u64,
        /// [`ZSTD_WINDOW_MAX`].
        limit: u64,
    },
    /// The blob ends inside a frame.
    #[error("zstd frame at compressed byte {offset}: the blob ends inside the frame (truncated)")]
    Truncated {
        /// Offset of the frame in the compressed blob.
        offset: u64,
    },
    /// The zstd library refused the data.
    #[error("zstd frame at compressed byte {offset}: {reason}")]
    Decode {
        /// Offset of the frame in the compressed blob.
        offset: u64,
        /// zstd's error name.
        reason: &'static str,
    },
}

/// `8 MiB`, `1.5 GiB`, `300 KiB`: a window size for messages.
fn human(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            let whole = n / unit;
            let tenths = (n % unit) * 10 / unit;
            return if tenths == 0 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenths} {name}")
            };
        }
    }
    format!("{n} bytes")
}

fn io_err(kind: io::ErrorKind, e: ZstdError) -> io::Error {
    io::Error::new(kind, e)
}

/// The window a zstd frame header asks for (RFC 8878 §3.1.1.1), from its first bytes; `Ok(None)`
/// when `head` is not a zstd frame (skippable frames need no window), `Err(n)` when `n` bytes
/// of header are needed first.
fn frame_window(head: &[u8]) -> Result<Option<u64>, usize> {
    if head.len() < 4 {
        return Err(4);
    }
    if head[..4] != ZSTD_MAGIC {
        return Ok(None);
    }
    let Some(&descriptor) = head.get(4) else {
        return Err(5);
    };
    let single_segment = descriptor & 0x20 != 0;
    let dict_id_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs_len = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let len = 5 + usize::from(!single_segment) + dict_id_len + fcs_len;
    if head.len() < len {
        return Err(len);
    }
    if !single_segment {
        let wd = head[5];
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        return Ok(Some(base + (base / 8) * u64::from(wd & 7)));
    }
    // Single segment: the window is the frame content size.
    let mut fcs = [0u8; 8];
    fcs[..fcs_len].copy_from_slice(&head[len - fcs_len..len]);
    let size = u64::from_le_bytes(fcs);
    Ok(Some(if fcs_len == 2 { size + 256 } else { size }))
}

/// A zstd decoder over every frame of a blob that reads each frame's header before decoding
/// it and refuses windows above [`ZSTD_WINDOW_MAX`] (libzstd is also told the bound, so a
/// frame cannot get past it either way).
pub struct ZstdDecoder<R: BufRead> {
    input: R,
    dctx: DCtx<'static>,
    /// The current frame's header bytes, read ahead of decoding; fed to `dctx` first.
    head: Vec<u8>,
    /// How much of `head` `dctx` has taken.
    head_pos: usize,
    /// The next input byte starts a frame (or the input's end, between frames).
    at_frame_start: bool,
    /// Compressed bytes taken from `input`.
    offset: u64,
    /// Where the current frame starts.
    frame_offset: u64,
}

impl<R: BufRead> ZstdDecoder<R> {
    /// A decoder reading `input`.
    pub fn new(input: R) -> io::Result<Self> {
        let decode = |reason| {
            io_err(
                io::ErrorKind::Other,
                ZstdError::Decode { offset: 0, reason },
            )
        };
        let mut dctx = DCtx::try_create().ok_or_else(|| decode("cannot allocate a decoder"))?;
        dctx.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
            .map_err(|code| decode(zstd_safe::get_error_name(code)))?;
        Ok(Self {
            input,
            dctx,
            head: Vec::with_capacity(18),
            head_pos: 0,
            at_frame_start: true,
            offset: 0,
            frame_offset: 0,
        })
    }

    /// Moves input into `head` until it holds `n` bytes; false if the input ends first.
    fn take_head(&mut self, n: usize) -> io::Result<bool> {
        while self.head.len() < n {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let k = buf.len().min(n - self.head.len());
            self.head.extend_from_slice(&buf[..k]);
            self.input.consume(k);
            self.offset += k as u64;
        }
        Ok(true)
    }

    /// Reads the next frame's header into `head` and checks its window. False at the end of
    /// the input (between frames).
    fn start_frame(&mut self) -> io::Result<bool> {
        self.head.clear();
        self.head_pos = 0;
        self.frame_offset = self.offset;
        let offset = self.frame_offset;
        let truncated = || {
            io_err(
                io::ErrorKind::UnexpectedEof,
                ZstdError::Truncated { offset },
            )
        };
        loop {
            match frame_window(&self.head) {
                Err(need) => {
                    if !self.take_head(need)? {
                        return if self.head.is_empty() {
                            Ok(false)
                        } else {
                            Err(truncated())
                        };
                    }
                }
                Ok(Some(window)) if window > ZSTD_WINDOW_MAX => {
                    return Err(io_err(
                        io::ErrorKind::InvalidData,
                        ZstdError::WindowTooLarge {
                            offset,
                            window,
                            limit: ZSTD_WINDOW_MAX,
                        },
                    ));
                }
                // A frame within the bound, a skippable frame or garbage (libzstd refuses).
                Ok(_) => return Ok(true),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at_frame_start {
                if !self.start_frame()? {
                    return Ok(0);
                }
                self.at_frame_start = false;
            }
            let from_head = self.head_pos < self.head.len();
            let src = if from_head {
                &self.head[self.head_pos..]
            } else {
                self.input.fill_buf()?
            };
            let offset = self.frame_offset;
            if src.is_empty() {
                return Err(io_err(
                    io::ErrorKind::UnexpectedEof,
                    ZstdError::Truncated { offset },
                ));
            }
            let mut input = InBuffer::around(src);
            let mut output = OutBuffer::around(&mut *buf);
            let hint = self
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(|code| {
                    let reason = zstd_safe::get_error_name(code);
                    io_err(
                        io::ErrorKind::InvalidData,
                        ZstdError::Decode { offset, reason },
                    )
                })?;
            let (used, produced) = (input.pos, output.pos());
            if from_head {
                self.head_pos += used;
            } else {
                self.input.consume(used);
                self.offset += used as u64;
            }
            // 0: the frame is decoded and flushed; the next byte starts another.
            if hint == 0 {
                self.at_frame_start = true;
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn roundtrip(compressed: &[u8]) -> (Vec<u8>, Compression) {
        let (mut d, kind) = Decompressor::new(compressed).expect("new");
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("decompress");
        (out, kind)
    }

    #[test]
    fn gzip_multi_member() {
        let mut blob = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).expect("write");
            blob.extend(e.finish().expect("finish"));
        }
        assert_eq!(
            roundtrip(&blob),
            (b"hello world".to_vec(), Compression::Gzip)
        );
    }

    #[test]
    fn zstd_frames_and_skippable() {
        let mut blob = Vec::new();
        // A skippable frame first: magic 0x184D2A53, length 3, payload.
        blob.extend([0x53, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        blob.extend(zstd::encode_all(&b"hello "[..], 3).expect("zstd"));
        blob.extend([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
        blob.extend(zstd::encode_all(&b"world"[..], 3).expect("zstd"));
        assert_eq!(
            roundtrip(&blob),
            (b"hello world".to_vec(), Compression::Zstd)
        );
    }

    fn refusal(blob: &[u8]) -> ZstdError {
        let (mut d, kind) = Decompressor::new(blob).expect("new");
        assert_eq!(kind, Compression::Zstd);
        let e = d.read_to_end(&mut Vec::new()).expect_err("must be refused");
        *e.into_inner()
            .expect("a zstd error")
            .downcast::<ZstdError>()
            .expect("a ZstdError")
    }

    #[test]
    fn zstd_windows_above_the_bound_are_refused_naming_them() {
        // A frame asking for a 2 GiB window (window descriptor: exponent 21, mantissa 0),
        // after a normal frame: the error names the window, the bound and the frame's offset.
        let first = zstd::encode_all(&b"hello"[..], 3).expect("zstd");
        let mut blob = first.clone();
        blob.extend([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0, 0, 0]);
        let e = refusal(&blob);
        assert!(
            matches!(e, ZstdError::WindowTooLarge { offset, window: 0x8000_0000, limit }
                if offset == first.len() as u64 && limit == ZSTD_WINDOW_MAX),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("2 GiB") && msg.contains("8 MiB"), "{msg}");

        // Mantissa: 2^23 + 1/8 of it, just above the bound.
        let e = refusal(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, (13 << 3) | 1, 0]);
        assert!(msg_has(&e, "9 MiB"), "{e}");
        // Single segment: the window is the frame content size (8-byte field, 1 GiB).
        let mut single = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        single.extend((1u64 << 30).to_le_bytes());
        assert!(msg_has(&refusal(&single), "1 GiB"));
        // A frame the encoder made with a 128 MiB window (size unknown, as when streaming).
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(27).expect("window log");
        enc.write_all(&[7u8; 4096]).expect("write");
        let e = refusal(&enc.finish().expect("finish"));
        assert!(msg_has(&e, "128 MiB"), "{e}");
        // Cut inside the header.
        assert!(matches!(
            refusal(&[0x28, 0xb5, 0x2f, 0xfd, 0x00]),
            ZstdError::Truncated { offset: 0 }
        ));
    }

    fn msg_has(e: &ZstdError, what: &str) -> bool {
        matches!(e, ZstdError::WindowTooLarge { .. }) && e.to_string().contains(what)
    }

    #[test]
    fn zstd_windows_within_the_bound_decode() {
        // Level 19 streamed (8 MiB window in the header), and a frame exactly at the bound.
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (level, log) in [(19, None), (3, Some(ZSTD_WINDOW_LOG_MAX))] {
            let mut enc = zstd::stream::Encoder::new(Vec::new(), level).expect("encoder");
            if let Some(log) = log {
                enc.window_log(log).expect("window log");
            }
            enc.write_all(&data).expect("write");
            let blob = enc.finish().expect("finish");
            assert_eq!(roundtrip(&blob), (data.clone(), Compression::Zstd));
        }
        // Cut inside a frame's data: an error, not a short read.
        let blob = zstd::encode_all(&data[..], 3).expect("zstd");
        let e = refusal(&blob[..blob.len() / 2]);
        assert!(matches!(e, ZstdError::Truncated { offset: 0 }), "{e:?}");
    }

    #[test]
    fn plain_and_tiny() {
        assert_eq!(roundtrip(b"ab"), (b"ab".to_vec(), Compression::None));
        assert_eq!(roundtrip(b""), (Vec::new(), Compression::None));
        let mut bad = GZIP_MAGIC.to_vec();
        bad.extend([0u8; 20]);
        let (mut d, _) = Decompressor::new(&bad[..]).expect("new");
        assert!(d.read_to_end(&mut Vec::new()).is_err());
    }
}
