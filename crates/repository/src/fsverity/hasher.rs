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
//!
//! Speed: data blocks are hashed straight from the caller's buffer, two at a time where possible.
//! With SHA-256 on an x86-64 CPU with the SHA extensions, the two blocks go through
//! [`sha256_ni`], which interleaves two independent SHA-256 computations: a single SHA-256 stream
//! is bound by the latency of the `sha256rnds2` instruction, and the second stream fills the
//! pipeline slots the first leaves idle. Everything else uses the `sha2` crate. Figures and
//! how to measure them: `docs/performance.md`.

use sha2::Digest;
use sha2::digest::Output;

use crate::digest::{HashAlgorithm, ObjectId};

/// fs-verity's Merkle tree block size (and data block size), fixed at 4 KiB for cfs.
pub const BLOCK_SIZE: usize = 4096;
const LOG_BLOCK_SIZE: u8 = 12;
/// More than enough levels: with 32-byte digests, 8 levels cover 2^12 * 128^7 bytes = 2^61 bytes.
const MAX_LEVELS: usize = 10;

/// One 4 KiB tree block.
type Block = [u8; BLOCK_SIZE];

/// A hash function as the tree uses it: on whole 4 KiB blocks, one or two at a time.
trait BlockHash: Digest {
    /// The hash of one block.
    fn hash_block(block: &Block) -> Output<Self> {
        Self::digest(block)
    }

    /// The hashes of two independent blocks (faster than two [`Self::hash_block`] calls where
    /// the hash can interleave them).
    fn hash_block_pair(a: &Block, b: &Block) -> [Output<Self>; 2] {
        [Self::hash_block(a), Self::hash_block(b)]
    }
}

impl BlockHash for sha2::Sha512 {}

impl BlockHash for sha2::Sha256 {
    fn hash_block(block: &Block) -> Output<Self> {
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = sha256_ni::Sha256Ni::detect() {
            let [h] = ni.digest_blocks([block]);
            return h.into();
        }
        Self::digest(block)
    }

    fn hash_block_pair(a: &Block, b: &Block) -> [Output<Self>; 2] {
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = sha256_ni::Sha256Ni::detect() {
            return ni.digest_blocks([a, b]).map(Into::into);
        }
        [Self::digest(a), Self::digest(b)]
    }
}

/// One level of the tree: a partially filled block of hashes (or, for level 0, of data).
struct Level {
    buf: Box<Block>,
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
struct Tree<D: BlockHash> {
    /// `levels[0]` buffers data; `levels[i]` (i ≥ 1) buffers hashes of level i-1 blocks.
    levels: Vec<Level>,
    size: u64,
    _digest: std::marker::PhantomData<D>,
}

impl<D: BlockHash> Tree<D> {
    fn new() -> Self {
        Self {
            levels: vec![Level::new()],
            size: 0,
            _digest: std::marker::PhantomData,
        }
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
            let h = D::hash_block(&self.levels[up].buf);
            self.levels[up].len = 0;
            self.push_hash(up, &h);
        }
        let l = &mut self.levels[up];
        l.buf[l.len..l.len + hash.len()].copy_from_slice(hash);
        l.len += hash.len();
    }

    /// Hashes the data blocks at the front of `data` straight from it, in pairs, keeping the
    /// last block back (it may be the file's last, which the tree treats specially). Returns
    /// what is left: at most one block.
    fn hash_from_input<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        while let Some((a, rest)) = data.split_first_chunk::<BLOCK_SIZE>() {
            match rest.split_first_chunk::<BLOCK_SIZE>() {
                Some((b, after)) if !after.is_empty() => {
                    let [ha, hb] = D::hash_block_pair(a, b);
                    self.push_hash(0, &ha);
                    self.push_hash(0, &hb);
                    data = after;
                }
                _ if !rest.is_empty() => {
                    let h = D::hash_block(a);
                    self.push_hash(0, &h);
                    data = rest;
                }
                _ => break,
            }
        }
        data
    }

    fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let l0 = &mut self.levels[0];
            if l0.len == BLOCK_SIZE {
                // The buffered block is not the last: hash it, together with the next block of
                // input if that is not the last either.
                let hashes = match data.split_first_chunk::<BLOCK_SIZE>() {
                    Some((next, rest)) if !rest.is_empty() => {
                        data = rest;
                        let [a, b] = D::hash_block_pair(&l0.buf, next);
                        [Some(a), Some(b)]
                    }
                    _ => [Some(D::hash_block(&l0.buf)), None],
                };
                l0.len = 0;
                for h in hashes.iter().flatten() {
                    self.push_hash(0, h);
                }
                continue;
            }
            if l0.len == 0 {
                data = self.hash_from_input(data);
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
            let h = D::hash_block(&l.buf);
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

/// SHA-256 of whole 4 KiB blocks with the x86 SHA extensions, several blocks interleaved.
///
/// The `sha2` crate also uses these instructions, but one message at a time, through an API that
/// cannot interleave. The round structure is the one Intel documents for `sha256rnds2`,
/// `sha256msg1` and `sha256msg2`: the state lives in two registers as (A, B, E, F) and
/// (C, D, G, H); each `sha256rnds2` does two rounds with two message-plus-constant words.
#[cfg(target_arch = "x86_64")]
mod sha256_ni {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_extract_epi32, _mm_loadu_si128, _mm_set_epi32,
        _mm_set_epi64x, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
        _mm_shuffle_epi8, _mm_shuffle_epi32,
    };

    use super::{BLOCK_SIZE, Block};

    /// SHA-256 round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// SHA-256 initial hash value (FIPS 180-4, 5.3.3): a, b, c, d, e, f, g, h.
    const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    /// The message schedule of the padding block that ends every 4 KiB message (0x80, zeroes,
    /// the length in bits as a big-endian u64), plus the round constants: the same for every
    /// block, so computed once, at compile time.
    const PAD_WK: [u32; 64] = {
        let mut w = [0u32; 64];
        w[0] = 0x8000_0000;
        w[15] = (BLOCK_SIZE as u32) * 8;
        let mut t = 16;
        while t < 64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
            t += 1;
        }
        let mut i = 0;
        while i < 64 {
            w[i] = w[i].wrapping_add(K[i]);
            i += 1;
        }
        w
    };

    /// Proof that the CPU has the SHA extensions (and the SSE levels the code uses): only
    /// [`Sha256Ni::detect`] makes one.
    #[derive(Clone, Copy)]
    pub(super) struct Sha256Ni(());

    impl Sha256Ni {
        /// `Some` if this CPU can run the code (a cached check, cheap to repeat).
        #[inline]
        pub(super) fn detect() -> Option<Self> {
            let ok = std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse2")
                && std::arch::is_x86_feature_detected!("ssse3")
                && std::arch::is_x86_feature_detected!("sse4.1");
            ok.then_some(Self(()))
        }

        /// The SHA-256 digests of `N` independent 4 KiB messages, computed interleaved.
        #[inline]
        pub(super) fn digest_blocks<const N: usize>(self, blocks: [&Block; N]) -> [[u8; 32]; N] {
            // SAFETY: `self` exists only if `detect` found every feature `digest_blocks`
            // enables, so the CPU can execute it.
            unsafe { digest_blocks(blocks) }
        }
    }

    /// Four words as a vector, the first in the lowest lane (the order `sha256rnds2` and the
    /// message-schedule instructions expect).
    #[inline(always)]
    #[allow(unused_unsafe)] // `_mm_set_epi32` is safe to call from Rust 1.87 on (MSRV 1.85)
    fn words(w: &[u32], at: usize) -> __m128i {
        // SAFETY: `_mm_set_epi32` is SSE2, part of the x86-64 baseline; it touches no memory.
        unsafe {
            _mm_set_epi32(
                w[at + 3] as i32,
                w[at + 2] as i32,
                w[at + 1] as i32,
                w[at] as i32,
            )
        }
    }

    /// See [`Sha256Ni::digest_blocks`].
    ///
    /// # Safety
    /// The CPU must support SHA, SSE2, SSSE3 and SSE4.1.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[allow(unused_unsafe)] // intrinsics are safe to call here from Rust 1.87 on (MSRV 1.85)
    unsafe fn digest_blocks<const N: usize>(blocks: [&Block; N]) -> [[u8; 32]; N] {
        // SAFETY: the caller guarantees the target features the intrinsics need. The only
        // memory accesses are `_mm_loadu_si128` reads of 16 bytes at offset 64 * c + 16 * j
        // (c < 64, j < 4) of a 4096-byte block, so in bounds; `loadu` needs no alignment.
        unsafe {
            // Byte order within each 32-bit word: SHA-256 reads big-endian words.
            let bswap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
            let abef0 = _mm_set_epi32(H0[0] as i32, H0[1] as i32, H0[4] as i32, H0[5] as i32);
            let cdgh0 = _mm_set_epi32(H0[2] as i32, H0[3] as i32, H0[6] as i32, H0[7] as i32);
            let mut abef = [abef0; N];
            let mut cdgh = [cdgh0; N];

            // Four rounds of every message, with message words plus constants `wk`.
            macro_rules! rounds4 {
                ($s:expr, $wk:expr) => {{
                    let wk = $wk;
                    cdgh[$s] = _mm_sha256rnds2_epu32(cdgh[$s], abef[$s], wk);
                    abef[$s] =
                        _mm_sha256rnds2_epu32(abef[$s], cdgh[$s], _mm_shuffle_epi32(wk, 0x0e));
                }};
            }

            for c in 0..BLOCK_SIZE / 64 {
                let (abef_in, cdgh_in) = (abef, cdgh);
                // Message words of the 64-byte chunk c of each stream, four per vector.
                let mut w = [[_mm_set_epi64x(0, 0); 4]; N];
                for s in 0..N {
                    let chunk = blocks[s][c * 64..].as_ptr();
                    for (j, wj) in w[s].iter_mut().enumerate() {
                        *wj = _mm_shuffle_epi8(_mm_loadu_si128(chunk.add(16 * j).cast()), bswap);
                    }
                }
                // Four rounds of every stream with message words 4i..4i+4, which live in
                // w[s][a]; for i ≥ 4 they are first computed from the previous sixteen words
                // (w[s][a], w[s][b], w[s][c], w[s][d] hold words 4i-16.., 4i-12.., 4i-8..,
                // 4i-4..): W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four at once.
                // Written out rather than looped so that every index is a constant and the
                // words stay in registers.
                macro_rules! group {
                    ($i:literal, $a:literal, $b:literal, $c:literal, $d:literal) => {
                        for s in 0..N {
                            if $i >= 4 {
                                let t = _mm_add_epi32(
                                    _mm_sha256msg1_epu32(w[s][$a], w[s][$b]),
                                    _mm_alignr_epi8::<4>(w[s][$d], w[s][$c]),
                                );
                                w[s][$a] = _mm_sha256msg2_epu32(t, w[s][$d]);
                            }
                            rounds4!(s, _mm_add_epi32(w[s][$a], words(&K, 4 * $i)));
                        }
                    };
                }
                group!(0, 0, 1, 2, 3);
                group!(1, 1, 2, 3, 0);
                group!(2, 2, 3, 0, 1);
                group!(3, 3, 0, 1, 2);
                group!(4, 0, 1, 2, 3);
                group!(5, 1, 2, 3, 0);
                group!(6, 2, 3, 0, 1);
                group!(7, 3, 0, 1, 2);
                group!(8, 0, 1, 2, 3);
                group!(9, 1, 2, 3, 0);
                group!(10, 2, 3, 0, 1);
                group!(11, 3, 0, 1, 2);
                group!(12, 0, 1, 2, 3);
                group!(13, 1, 2, 3, 0);
                group!(14, 2, 3, 0, 1);
                group!(15, 3, 0, 1, 2);
                for s in 0..N {
                    abef[s] = _mm_add_epi32(abef[s], abef_in[s]);
                    cdgh[s] = _mm_add_epi32(cdgh[s], cdgh_in[s]);
                }
            }

            // The padding block, whose schedule is a constant.
            let (abef_in, cdgh_in) = (abef, cdgh);
            for i in 0..16 {
                for s in 0..N {
                    rounds4!(s, words(&PAD_WK, 4 * i));
                }
            }

            let mut out = [[0u8; 32]; N];
            for s in 0..N {
                let abef = _mm_add_epi32(abef[s], abef_in[s]);
                let cdgh = _mm_add_epi32(cdgh[s], cdgh_in[s]);
                let state = [
                    _mm_extract_epi32::<3>(abef),
                    _mm_extract_epi32::<2>(abef),
                    _mm_extract_epi32::<3>(cdgh),
                    _mm_extract_epi32::<2>(cdgh),
                    _mm_extract_epi32::<1>(abef),
                    _mm_extract_epi32::<0>(abef),
                    _mm_extract_epi32::<1>(cdgh),
                    _mm_extract_epi32::<0>(cdgh),
                ];
                for (o, v) in out[s].chunks_exact_mut(4).zip(state) {
                    o.copy_from_slice(&(v as u32).to_be_bytes());
                }
            }
            out
        }
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

    /// The SHA-NI code against `sha2`, alone and interleaved, on blocks whose bytes differ in
    /// every word (and on the all-zero and all-ones blocks).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sha256_ni_matches_sha2() {
        let Some(ni) = sha256_ni::Sha256Ni::detect() else {
            eprintln!("no SHA extensions on this CPU: nothing to compare");
            return;
        };
        let blocks: Vec<Block> = (0u32..6)
            .map(|seed| match seed {
                0 => [0u8; BLOCK_SIZE],
                1 => [0xff; BLOCK_SIZE],
                _ => std::array::from_fn(|i| (i as u32 * seed).wrapping_mul(2_654_435_761) as u8),
            })
            .collect();
        for a in &blocks {
            let want_a = sha2::Sha256::digest(a).to_vec();
            assert_eq!(ni.digest_blocks([a])[0].to_vec(), want_a);
            for b in &blocks {
                let [got_a, got_b] = ni.digest_blocks([a, b]);
                assert_eq!(got_a.to_vec(), want_a);
                assert_eq!(got_b.to_vec(), sha2::Sha256::digest(b).to_vec());
            }
        }
    }

    #[test]
    fn known_vectors() {
        // `fsverity digest` of an empty file and of a file holding "hello\n" (fsverity-utils 1.5).
        assert_eq!(
            FsVerityHasher::digest(HashAlgorithm::Sha256, b"").to_string(),
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"
        );
        assert_eq!(
            FsVerityHasher::digest(HashAlgorithm::Sha256, b"hello\n").to_string(),
            "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"
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
