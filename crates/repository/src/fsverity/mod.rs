//! fs-verity: the userspace digest computation and the kernel ioctls.

mod hasher;
mod ioctl;

pub use hasher::{BLOCK_SIZE, FsVerityHasher};
pub use ioctl::{VerityError, enable_verity, measure_verity};
