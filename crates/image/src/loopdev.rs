//! Read-only loop devices over an open file (`LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE`, through
//! rustix's ioctl), for where EROFS cannot mount a file directly: kernels before 6.12 (no
//! file-backed EROFS) and files on filesystems whose page cache EROFS cannot read from (tmpfs).
//! Both show as `ENOTBLK` when the file is given as the mount source.
//!
//! The device reads the very descriptor it is given (the one whose digest was checked), is
//! read-only, and has `LO_FLAGS_AUTOCLEAR`: once the EROFS mount on it is gone and the
//! [`LoopDevice`] dropped, the kernel detaches it by itself, so no device outlives its mount.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, Setter, ioctl};

/// `LOOP_CTL_GET_FREE` (linux/loop.h): returns the number of a free loop device, creating one
/// if needed.
const LOOP_CTL_GET_FREE: Opcode = 0x4C82;
/// `LOOP_CONFIGURE` (Linux 5.8+): binds a file and sets the flags in one step.
const LOOP_CONFIGURE: Opcode = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// `LOOP_CTL_GET_FREE`, whose result is the ioctl's return value.
struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument and touches no user memory; its output is the
// ioctl's return value (a device number).
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::INVAL)
    }
}

/// An attached loop device; the kernel detaches it once it is dropped and nothing mounts it.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    fd: OwnedFd,
}

impl AsFd for LoopDevice {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why a loop device could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {errno}")]
pub struct LoopError {
    /// What was being done.
    pub step: String,
    /// The error.
    pub errno: Errno,
}

/// Attaches `file` (read-only, auto-clearing) to a free loop device.
pub fn attach_read_only(file: &File) -> Result<LoopDevice, LoopError> {
    let control = rustix::fs::open(
        "/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| LoopError {
        step: "opening /dev/loop-control".into(),
        errno,
    })?;
    let backing = u32::try_from(file.as_raw_fd()).map_err(|_| LoopError {
        step: "passing the image's descriptor".into(),
        errno: Errno::BADF,
    })?;
    // Another process may take the free device between asking and configuring (EBUSY), and
    // udev may not have made its node yet (ENOENT): ask again.
    let mut last = Errno::BUSY;
    for _ in 0..64 {
        // SAFETY: GetFree's opcode and (absent) argument match LOOP_CTL_GET_FREE.
        let n = unsafe { ioctl(&control, GetFree) }.map_err(|errno| LoopError {
            step: "finding a free loop device".into(),
            errno,
        })?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let fd =
            match rustix::fs::openat(CWD, &path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(errno @ Errno::NOENT) => {
                    last = errno;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Err(errno) => {
                    return Err(LoopError {
                        step: format!("opening {}", path.display()),
                        errno,
                    });
                }
            };
        let info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        let config = LoopConfig {
            fd: backing,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which LoopConfig lays out
        // exactly (repr(C), size checked above); the kernel only reads it.
        match unsafe { ioctl(&fd, Setter::<LOOP_CONFIGURE, LoopConfig>::new(config)) } {
            Ok(()) => return Ok(LoopDevice { path, fd }),
            Err(Errno::BUSY) => last = Errno::BUSY,
            Err(errno) => {
                return Err(LoopError {
                    step: format!("attaching the image to {}", path.display()),
                    errno,
                });
            }
        }
    }
    Err(LoopError {
        step: "finding a free loop device (64 tries)".into(),
        errno: last,
    })
}
