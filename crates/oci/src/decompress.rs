//! Decompressing layer blobs as they stream in: gzip (every member, as `gzip -d` does), zstd
//! (every frame; skippable frames are skipped) or nothing.
//!
//! The format is recognised from the first bytes, not taken from the media type: some sources
//! label uncompressed tars as gzip (skopeo's `docker-archive:` manifests do), and a blob that
//! is not what its media type says must still be read correctly, or fail its diff_id check.

use std::io::{self, BufRead, BufReader, Read};

use crate::manifest::Compression;

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
    /// zstd, all frames.
    Zstd(Box<zstd::stream::read::Decoder<'static, R>>),
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
            Compression::Zstd => {
                let mut z = zstd::stream::read::Decoder::with_buffer(input)?;
                // Layers may be compressed with long windows (zstd --long).
                z.window_log_max(31)?;
                Decompressor::Zstd(Box::new(z))
            }
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
