//! A streaming userspace fs-verity hasher, bit-exact with the kernel and `fsverity digest`.
//!
//! fs-verity builds a Merkle tree over the file: the data is cut into 4 KiB blocks (the last one
//! zero-padded), each block is hashed, the hashes are packed into 4 KiB blocks of the next level,
//! and so on until one block remains. The root hash (the hash of that top block; for a file of at
//! most one block, the hash of the padded data block; for an empty file, all zeroes) goes into a
//! 256-byte `fsverity_descriptor` together with the file size, and the file's digest is the hash
//! of that descriptor.
//!
//! The hasher keeps one partially filled block per tree level, so its memory is bounded by the
//! tree depth (at most 8 levels for 2^64 bytes) whatever the file size. Blocks are flushed lazily:
//! a full block is hashed only once more input arrives, because the last block of a level decides
//! whether that level is the top.

use sha2::Digest;

use crate::digest::{HashAlgorithm, ObjectId};

/// fs-verity's Merkle tree block size (and data block size), fixed at 4 KiB for cfs.
pub const BLOCK_SIZE: usize = 4096;
const LOG_BLOCK_SIZE: u8 = 12;
/// More than enough levels: with 32-byte digests, 8 levels cover 2^12 * 128^7 bytes = 2^61 bytes.
const MAX_LEVELS: usize = 10;

/// One level of the tree: a partially filled block of hashes (or, for level 0, of data).
struct Level {
    buf: Box<[u8; BLOCK_SIZE]>,
    len: usize,
    /// Whether this level has ever emitted a block to the level above.
    emitted: bool,
}

impl Level {
    fn new() -> Self {
        Self {
            buf: Box::new([0u8; BLOCK_SIZE]),
            len: 0,
            emitted: false,
        }
    }
}

/// The fs-verity hasher, generic over the hash function.
struct Tree<D: Digest> {
    /// `levels[0]` buffers data; `levels[i]` (i ≥ 1) buffers hashes of level i-1 blocks.
    levels: Vec<Level>,
    size: u64,
    _digest: std::marker::PhantomData<D>,
}

impl<D: Digest> Tree<D> {
    fn new() -> Self {
        Self {
            levels: vec![Level::new()],
            size: 0,
            _digest: std::marker::PhantomData,
        }
    }

    fn hash_block(block: &[u8]) -> sha2::digest::Output<D> {
        debug_assert_eq!(block.len(), BLOCK_SIZE);
        D::digest(block)
    }

    /// Appends the hash of a finished block of `level` to `level + 1`.
    fn push_hash(&mut self, level: usize, hash: &[u8]) {
        self.levels[level].emitted = true;
        let up = level + 1;
        if self.levels.len() <= up {
            assert!(
                up < MAX_LEVELS,
                "fs-verity tree deeper than any 64-bit file"
            );
            self.levels.push(Level::new());
        }
        if self.levels[up].len == BLOCK_SIZE {
            // Lazily flush the full block now that we know more follows it.
            let h = Self::hash_block(&self.levels[up].buf[..]);
            self.levels[up].len = 0;
            self.push_hash(up, &h);
        }
        let l = &mut self.levels[up];
        l.buf[l.len..l.len + hash.len()].copy_from_slice(hash);
        l.len += hash.len();
    }

    fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let l0 = &mut self.levels[0];
            if l0.len == BLOCK_SIZE {
                let h = Self::hash_block(&l0.buf[..]);
                l0.len = 0;
                self.push_hash(0, &h);
                continue;
            }
            if l0.len == 0 {
                // Fast path: hash whole blocks straight from the input, keeping the last block
                // (which may be the file's last) buffered.
                while data.len() > BLOCK_SIZE {
                    let (block, rest) = data.split_at(BLOCK_SIZE);
                    let h = Self::hash_block(block);
                    self.push_hash(0, &h);
                    data = rest;
                }
            }
            let l0 = &mut self.levels[0];
            let n = (BLOCK_SIZE - l0.len).min(data.len());
            l0.buf[l0.len..l0.len + n].copy_from_slice(&data[..n]);
            l0.len += n;
            data = &data[n..];
        }
    }

    fn root_hash(&mut self) -> Vec<u8> {
        let digest_len = <D as Digest>::output_size();
        if self.size == 0 {
            return vec![0u8; digest_len];
        }
        let mut level = 0;
        loop {
            let l = &mut self.levels[level];
            // Zero-pad the level's last block.
            l.buf[l.len..].fill(0);
            l.len = BLOCK_SIZE;
            let h = Self::hash_block(&l.buf[..]);
            l.len = 0;
            if !l.emitted {
                // Nothing above this block: it is the top of the tree.
                return h.to_vec();
            }
            self.push_hash(level, &h);
            level += 1;
        }
    }

    fn finalize(mut self, algorithm: HashAlgorithm) -> Vec<u8> {
        let root = self.root_hash();
        // struct fsverity_descriptor (linux/fsverity.h), 256 bytes.
        let mut desc = [0u8; 256];
        desc[0] = 1; // version
        desc[1] = algorithm.kernel_id();
        desc[2] = LOG_BLOCK_SIZE;
        desc[3] = 0; // salt_size
        // desc[4..8]: sig_size / reserved, zero
        desc[8..16].copy_from_slice(&self.size.to_le_bytes());
        desc[16..16 + root.len()].copy_from_slice(&root);
        // salt[32] and reserved[144] stay zero
        D::digest(desc).to_vec()
    }
}

enum Inner {
    Sha256(Tree<sha2::Sha256>),
    Sha512(Tree<sha2::Sha512>),
}

/// Computes the fs-verity digest of a byte stream fed in pieces of any size.
///
/// ```
/// use cfs_repository::{FsVerityHasher, HashAlgorithm};
/// let mut h = FsVerityHasher::new(HashAlgorithm::Sha256);
/// h.update(b"hello");
/// let id = h.finalize();
/// assert_eq!(id.to_string().len(), 64);
/// ```
pub struct FsVerityHasher {
    algorithm: HashAlgorithm,
    inner: Inner,
}

impl FsVerityHasher {
    /// A hasher for an empty stream.
    pub fn new(algorithm: HashAlgorithm) -> Self {
        let inner = match algorithm {
            HashAlgorithm::Sha256 => Inner::Sha256(Tree::new()),
            HashAlgorithm::Sha512 => Inner::Sha512(Tree::new()),
        };
        Self { algorithm, inner }
    }

    /// The algorithm this hasher uses.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        match &self.inner {
            Inner::Sha256(t) => t.size,
            Inner::Sha512(t) => t.size,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Sha256(t) => t.update(data),
            Inner::Sha512(t) => t.update(data),
        }
    }

    /// The fs-verity digest of everything fed.
    pub fn finalize(self) -> ObjectId {
        let bytes = match self.inner {
            Inner::Sha256(t) => t.finalize(self.algorithm),
            Inner::Sha512(t) => t.finalize(self.algorithm),
        };
        // The tree was built with this algorithm, so the length always fits.
        ObjectId::from_bytes(self.algorithm, &bytes).unwrap_or_else(|| unreachable!())
    }

    /// The fs-verity digest of a byte slice.
    pub fn digest(algorithm: HashAlgorithm, data: &[u8]) -> ObjectId {
        let mut h = Self::new(algorithm);
        h.update(data);
        h.finalize()
    }

    /// The fs-verity digest of everything a reader yields (reads in 128 KiB pieces).
    pub fn digest_reader(
        algorithm: HashAlgorithm,
        mut reader: impl std::io::Read,
    ) -> std::io::Result<ObjectId> {
        let mut h = Self::new(algorithm);
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(h.finalize()),
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl std::io::Write for FsVerityHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct, non-streaming transcription of the kernel's algorithm, to check the streaming
    /// hasher against for every split of the input.
    fn reference(alg: HashAlgorithm, data: &[u8]) -> String {
        fn h(alg: HashAlgorithm, b: &[u8]) -> Vec<u8> {
            match alg {
                HashAlgorithm::Sha256 => sha2::Sha256::digest(b).to_vec(),
                HashAlgorithm::Sha512 => sha2::Sha512::digest(b).to_vec(),
            }
        }
        fn pad(b: &[u8]) -> Vec<u8> {
            let mut v = b.to_vec();
            v.resize(v.len().div_ceil(BLOCK_SIZE).max(1) * BLOCK_SIZE, 0);
            v
        }
        let root = if data.is_empty() {
            vec![0u8; alg.digest_len()]
        } else {
            let mut level = pad(data);
            loop {
                let hashes: Vec<u8> = level.chunks(BLOCK_SIZE).flat_map(|b| h(alg, b)).collect();
                if level.len() == BLOCK_SIZE {
                    break hashes;
                }
                level = pad(&hashes);
            }
        };
        let mut desc = [0u8; 256];
        desc[0] = 1;
        desc[1] = alg.kernel_id();
        desc[2] = 12;
        desc[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        desc[16..16 + root.len()].copy_from_slice(&root);
        hex::encode(h(alg, &desc))
    }

    #[test]
    fn known_vectors() {
        // `fsverity digest` of an empty file and of a file holding "hello\n" (fsverity-utils 1.5).
        assert_eq!(
            FsVerityHasher::digest(HashAlgorithm::Sha256, b"").to_string(),
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"
        );
    }

    #[test]
    fn matches_reference_at_boundaries() {
        for alg in [HashAlgorithm::Sha256, HashAlgorithm::Sha512] {
            let per_block = BLOCK_SIZE / alg.digest_len();
            for size in [
                0,
                1,
                4095,
                4096,
                4097,
                8192,
                BLOCK_SIZE * per_block,
                BLOCK_SIZE * per_block + 1,
                BLOCK_SIZE * (per_block + 1),
            ] {
                let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
                let want = reference(alg, &data);
                for piece in [1, 100, 4096, 5000, usize::MAX] {
                    let mut hasher = FsVerityHasher::new(alg);
                    for c in data.chunks(piece.min(data.len().max(1))) {
                        hasher.update(c);
                    }
                    assert_eq!(
                        hasher.finalize().to_string(),
                        want,
                        "{alg} size {size} piece {piece}"
                    );
                }
            }
        }
    }
}
