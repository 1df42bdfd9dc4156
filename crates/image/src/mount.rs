//! Mounting a composefs image with the new mount API (`fsopen`/`fsconfig`/`fsmount`/
//! `move_mount`, through rustix).
//!
//! 1. The EROFS image is mounted straight from its file (file-backed EROFS, Linux 6.12+): the
//!    `source` is `/proc/self/fd/N` of the descriptor whose digest was checked, so the kernel
//!    mounts exactly the file that was verified, not whatever the path names by then. Where
//!    that is refused (older kernels, a repository on tmpfs), the same descriptor goes through
//!    a read-only loop device.
//! 2. That mount stays *detached* (never attached anywhere in the mount tree; on kernels before
//!    6.15 only for the instant overlayfs needs, see [`mount_composefs`]) and becomes the
//!    lower layer of a read-only overlayfs with `metacopy=on,redirect_dir=on`; the repository's
//!    `objects/` directory is a data-only lower layer, where the redirect xattrs of the image's
//!    files find their contents. With `verity=require` (repositories that enforce verity) the
//!    kernel checks each object's fs-verity digest against the image's metacopy xattr on open.
//! 3. Only the overlay is attached, at the mount point. Its `source` names the image
//!    (`composefs:<hex>`, as composefs-rs names its mounts and bootc checks; see
//!    [`crate::mounts`]): that is how gc finds the images in use.
//!
//! Layers are passed as `lowerdir+`/`datadir+` (Linux 6.8+); on kernels that do not know these
//! keys the older `lowerdir=LOWER::DATA` syntax (6.5+) is used instead.
//!
//! Failures carry the messages the kernel logs into the filesystem context, which say far more
//! than the errno.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use cfs_repository::{ObjectId, Repository, VerityMode};
use rustix::fs::{CWD, Mode};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create, fsconfig_set_flag,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::loopdev::{self, LoopError};
use crate::mounts::overlay_source;
use crate::repo::{ImageError, open_verified_image};

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The image could not be found or failed its digest check.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A mount system call failed.
    #[error("{step}: {errno}{}", kernel_log(.log))]
    Mount {
        /// What was being done.
        step: String,
        /// The error.
        errno: Errno,
        /// Messages the kernel logged into the filesystem context.
        log: Vec<String>,
    },
    /// A loop device for the image could not be set up.
    #[error("mounting the image through a loop device: {0}")]
    Loop(#[from] LoopError),
    /// Opening a directory failed.
    #[error("opening {path}: {errno}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

fn kernel_log(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", log.join("; "))
    }
}

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Pass `verity=require` to overlayfs: every file's object must have fs-verity with the
    /// digest the image records.
    pub require_verity: bool,
    /// The image being mounted: named in the overlay's `source`, so that gc sees the mount
    /// and keeps the image's objects (see [`crate::mounts`]).
    pub image: ObjectId,
}

/// A filesystem context (`fsopen`), which can tell what the kernel logged about it.
pub struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    /// `fsopen(fstype)`.
    pub fn open(fstype: &'static str) -> Result<Self, MountError> {
        let fd =
            fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|errno| MountError::Mount {
                step: format!("fsopen({fstype})"),
                errno,
                log: Vec::new(),
            })?;
        Ok(Self { fd, fstype })
    }

    /// Drains the context's message log.
    fn log(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        // Each read returns one message; the log holds at most a few dozen.
        for _ in 0..64 {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned()),
                _ => break,
            }
        }
        out
    }

    fn fail(&self, step: String, errno: Errno) -> MountError {
        MountError::Mount {
            step,
            errno,
            log: self.log(),
        }
    }

    /// `fsconfig(SET_STRING, key, value)`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), MountError> {
        fsconfig_set_string(&self.fd, key, value)
            .map_err(|e| self.fail(format!("{}: setting {key}={value}", self.fstype), e))
    }

    /// Creates the superblock and returns a detached, read-only mount of it.
    fn mount(&self) -> Result<OwnedFd, MountError> {
        self.mount_with(MountAttrFlags::MOUNT_ATTR_RDONLY)
    }

    /// Creates the superblock and returns a detached mount of it with `attributes`. A failure
    /// to create it is a [`MountError::Mount`] whose step contains "creating the filesystem".
    pub fn mount_with(&self, attributes: MountAttrFlags) -> Result<OwnedFd, MountError> {
        fsconfig_create(&self.fd)
            .map_err(|e| self.fail(format!("{}: creating the filesystem", self.fstype), e))?;
        fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attributes)
            .map_err(|e| self.fail(format!("{}: fsmount", self.fstype), e))
    }
}

/// `/proc/self/fd/N`: a path naming exactly the file or mount behind a descriptor.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mounts an EROFS image from an open file; returns the detached mount.
///
/// Where the kernel cannot mount the file itself (`ENOTBLK`: Linux before 6.12, or a file on
/// tmpfs), the same descriptor is attached to a read-only, auto-clearing loop device
/// ([`crate::loopdev`]) and EROFS mounts that; the device goes away with the mount.
pub fn mount_erofs(image: &File) -> Result<OwnedFd, MountError> {
    let mount_source = |source: &str| {
        let ctx = FsContext::open("erofs")?;
        ctx.set("source", source)?;
        // A read-only superblock: a block device (the loop device) is then opened read-only.
        fsconfig_set_flag(&ctx.fd, "ro").map_err(|e| ctx.fail("erofs: setting ro".into(), e))?;
        ctx.mount()
    };
    match mount_source(&fd_path(image.as_fd())) {
        Err(MountError::Mount {
            errno: Errno::NOTBLK,
            ..
        }) => {
            let device = loopdev::attach_read_only(image)?;
            mount_source(&fd_path(device.as_fd()))
        }
        other => other,
    }
}

/// Overlays a mounted composefs image (`erofs`, e.g. from [`mount_erofs`]) on the object
/// directory `objects`; returns the detached read-only overlay mount.
pub fn mount_overlay(
    erofs: BorrowedFd<'_>,
    objects: BorrowedFd<'_>,
    options: MountOptions,
) -> Result<OwnedFd, MountError> {
    let lower = fd_path(erofs);
    let data = fd_path(objects);
    let configure = |ctx: &FsContext, legacy: bool| -> Result<(), MountError> {
        ctx.set("source", &overlay_source(&options.image))?;
        ctx.set("metacopy", "on")?;
        ctx.set("redirect_dir", "on")?;
        if options.require_verity {
            ctx.set("verity", "require")?;
        }
        if legacy {
            ctx.set("lowerdir", &format!("{lower}::{data}"))
        } else {
            ctx.set("lowerdir+", &lower)?;
            ctx.set("datadir+", &data)
        }
    };
    let ctx = FsContext::open("overlay")?;
    match configure(&ctx, false) {
        Ok(()) => {}
        // Kernels before 6.8 do not know lowerdir+/datadir+: use the `::` syntax.
        Err(MountError::Mount {
            errno: Errno::INVAL,
            step,
            ..
        }) if step.contains("lowerdir+") || step.contains("datadir+") => {
            let ctx = FsContext::open("overlay")?;
            configure(&ctx, true)?;
            return ctx.mount();
        }
        Err(e) => return Err(e),
    }
    ctx.mount()
}

/// Attaches a detached mount at `mountpoint`.
pub fn attach(mount: BorrowedFd<'_>, mountpoint: &Path) -> Result<(), MountError> {
    move_mount(
        mount,
        "",
        CWD,
        mountpoint,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|errno| MountError::Mount {
        step: format!("attaching the mount at {}", mountpoint.display()),
        errno,
        log: Vec::new(),
    })
}

/// A directory where a mount is attached for a moment, removed (lazily unmounted, then the
/// directory deleted) on drop: for kernels (before 6.15) on which overlayfs cannot take a
/// layer from a detached mount. The directory is a fresh one under the temporary directory
/// (`$TMPDIR`, else `/tmp`).
pub struct TemporaryAttachment {
    dir: PathBuf,
    mounted: bool,
}

impl TemporaryAttachment {
    /// Attaches `mount` on a new private directory.
    pub fn new(mount: BorrowedFd<'_>) -> Result<Self, MountError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(".cfs-erofs-{}-{n}", std::process::id()));
        rustix::fs::mkdir(&dir, Mode::from_raw_mode(0o700)).map_err(|errno| MountError::Open {
            path: dir.clone(),
            errno,
        })?;
        let mut this = Self {
            dir,
            mounted: false,
        };
        attach(mount, &this.dir)?;
        this.mounted = true;
        Ok(this)
    }

    /// Where the mount is attached.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TemporaryAttachment {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Mounts a composefs image from its (already verified) file over the object directory
/// `objects`; returns the detached read-only overlay mount.
///
/// The EROFS mount stays detached where the kernel allows a detached mount as an overlayfs
/// layer (Linux 6.15+). Older kernels refuse (`overlayfs: failed to clone lowerpath`, EINVAL),
/// because overlayfs clones its layers and could only clone mounts of the caller's mount
/// namespace: there the EROFS mount is attached on a fresh private directory under the
/// temporary directory just long enough for overlayfs to take its clone, then lazily unmounted
/// and the directory removed.
pub fn mount_composefs(
    image: &File,
    objects: BorrowedFd<'_>,
    options: MountOptions,
) -> Result<OwnedFd, MountError> {
    let erofs = mount_erofs(image)?;
    match mount_overlay(erofs.as_fd(), objects, options) {
        Err(MountError::Mount {
            errno: Errno::INVAL,
            step,
            ..
        }) if step.contains("creating the filesystem") => {
            let _attached = TemporaryAttachment::new(erofs.as_fd())?;
            mount_overlay(erofs.as_fd(), objects, options)
        }
        other => other,
    }
}

/// Mounts the repository's image `name` (an image ID or image ref) read-only at `mountpoint`.
///
/// The image's own digest is checked first (see [`open_verified_image`]); `verity=require` is
/// used when the repository enforces verity. Needs `CAP_SYS_ADMIN`.
pub fn mount_image(repo: &Repository, name: &str, mountpoint: &Path) -> Result<(), MountError> {
    let (id, image) = open_verified_image(repo, name)?;
    // The repository's own descriptor: opened without following a symlink.
    let overlay = mount_composefs(
        &image,
        repo.objects_dir(),
        MountOptions {
            require_verity: repo.verity() == VerityMode::Enforced,
            image: id,
        },
    )?;
    attach(overlay.as_fd(), mountpoint)
}
