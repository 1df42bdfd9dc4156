//! The kernel's fs-verity ioctls (`FS_IOC_ENABLE_VERITY`, `FS_IOC_MEASURE_VERITY`) through
//! rustix, with "this filesystem cannot do verity" told apart from real failures.

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::ioctl::{Setter, Updater, ioctl, opcode};

use crate::digest::{HashAlgorithm, ObjectId};
use crate::fsverity::BLOCK_SIZE;

/// `struct fsverity_enable_arg` from `linux/fsverity.h`.
#[repr(C)]
#[derive(Debug)]
struct FsVerityEnableArg {
    version: u32,
    hash_algorithm: u32,
    block_size: u32,
    salt_size: u32,
    salt_ptr: u64,
    sig_size: u32,
    reserved1: u32,
    sig_ptr: u64,
    reserved2: [u64; 11],
}

/// `struct fsverity_digest` with room for the largest digest.
#[repr(C)]
struct FsVerityDigest {
    digest_algorithm: u16,
    digest_size: u16,
    digest: [u8; 64],
}

/// `FS_IOC_ENABLE_VERITY = _IOW('f', 133, struct fsverity_enable_arg)`.
const FS_IOC_ENABLE_VERITY: rustix::ioctl::Opcode = opcode::write::<FsVerityEnableArg>(b'f', 133);
/// `FS_IOC_MEASURE_VERITY = _IOWR('f', 134, struct fsverity_digest)`; the kernel's struct has a
/// flexible array, so the size in the opcode is that of the 4-byte header.
const FS_IOC_MEASURE_VERITY: rustix::ioctl::Opcode = opcode::read_write::<[u16; 2]>(b'f', 134);

/// Why verity could not be enabled or measured.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// The filesystem (or kernel) does not support fs-verity.
    #[error("the filesystem does not support fs-verity")]
    NotSupported,
    /// Measuring a file that has no verity enabled.
    #[error("fs-verity is not enabled on the file")]
    NotEnabled,
    /// Enabling verity on a file that is open for writing somewhere.
    #[error("the file is open for writing (ETXTBSY)")]
    FileBusy,
    /// The file has verity with a different algorithm than was asked for.
    #[error("the file's fs-verity uses hash algorithm {0}, not the repository's")]
    WrongAlgorithm(u16),
    /// Any other failure of the ioctl.
    #[error("fs-verity ioctl failed: {0}")]
    Io(#[from] std::io::Error),
}

fn classify(e: Errno) -> VerityError {
    match e {
        // EOPNOTSUPP: filesystem without verity; ENOTTY: no such ioctl (old kernel, tmpfs,
        // overlayfs, ...); ENOSYS for completeness.
        Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS => VerityError::NotSupported,
        Errno::NODATA => VerityError::NotEnabled,
        Errno::TXTBSY => VerityError::FileBusy,
        other => VerityError::Io(other.into()),
    }
}

/// Enables fs-verity on a file opened read-only (with no writable descriptor left open anywhere).
///
/// `EEXIST` (verity already enabled) counts as success.
pub fn enable_verity(fd: impl AsFd, algorithm: HashAlgorithm) -> Result<(), VerityError> {
    let arg = FsVerityEnableArg {
        version: 1,
        hash_algorithm: algorithm.kernel_id().into(),
        block_size: BLOCK_SIZE as u32,
        salt_size: 0,
        salt_ptr: 0,
        sig_size: 0,
        reserved1: 0,
        sig_ptr: 0,
        reserved2: [0; 11],
    };
    // SAFETY: FS_IOC_ENABLE_VERITY takes a pointer to `struct fsverity_enable_arg`, which
    // `FsVerityEnableArg` reproduces field for field with `repr(C)`; no pointers are passed
    // (salt and signature sizes are zero).
    let res = unsafe { ioctl(fd, Setter::<FS_IOC_ENABLE_VERITY, _>::new(arg)) };
    match res {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}

/// Reads the fs-verity digest the kernel holds for a file.
pub fn measure_verity(fd: impl AsFd, algorithm: HashAlgorithm) -> Result<ObjectId, VerityError> {
    let mut d = FsVerityDigest {
        digest_algorithm: 0,
        digest_size: 64,
        digest: [0; 64],
    };
    // SAFETY: FS_IOC_MEASURE_VERITY reads `digest_size` from the header and writes at most that
    // many digest bytes after it; `FsVerityDigest` is the kernel's header followed by 64 bytes.
    unsafe { ioctl(fd, Updater::<FS_IOC_MEASURE_VERITY, _>::new(&mut d)) }.map_err(classify)?;
    if d.digest_algorithm != u16::from(algorithm.kernel_id())
        || usize::from(d.digest_size) != algorithm.digest_len()
    {
        return Err(VerityError::WrongAlgorithm(d.digest_algorithm));
    }
    ObjectId::from_bytes(algorithm, &d.digest[..algorithm.digest_len()])
        .ok_or(VerityError::WrongAlgorithm(d.digest_algorithm))
}
