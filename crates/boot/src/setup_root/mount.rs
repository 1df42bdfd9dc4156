//! Executing a [`Plan`](super::plan::Plan): the mounts that make the verified image the new
//! root at SYSROOT, with the new mount API (`fsopen`/`fsmount`/`open_tree`/`move_mount`).
//!
//! Everything is built as *detached* mounts first, so that a failure leaves nothing behind
//! (a detached mount vanishes with its descriptor):
//! 1. the image: EROFS + read-only overlayfs over the repository's `objects/`, source
//!    `composefs:<hex>`, `verity=require` when planned ([`cfs_image::mount::mount_composefs`]);
//! 2. `/etc`: a writable overlayfs, lower the image's `/etc`, upper and work dirs
//!    `<state>/etc/{upper,work}`;
//! 3. `/var`: a bind mount (`open_tree` clone) of `<state>/var`;
//! 4. `/sysroot`: a recursive clone of the physical root (SYSROOT as it is before).
//!
//! The state directories are created only once the detached image is known to have `/etc`,
//! `/var` and `/sysroot`. Then the mounts are attached: the image on SYSROOT, the other three
//! on the image's directories, each target named by a descriptor opened (no symlink followed)
//! before anything is attached. If attaching fails half-way, SYSROOT's new mount and everything on it is detached
//! again. Kernels before 6.15 refuse an overlayfs layer taken from a detached mount: there the
//! `/etc` overlay is made right after the image is attached (its lower then lies in the mount
//! tree), still before anything else is attached.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use cfs_image::mount::{FsContext, MountError as ImageMountError, MountOptions, fd_path};
use cfs_repository::ObjectId;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountAttrFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags};

use super::plan::Plan;
use crate::state::deploy_dir;

/// The overlay `source` of the `/etc` overlay (not an image: gc does not count it).
const ETC_SOURCE: &str = "cfs-etc";

/// Why the root could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The SYSROOT directory cannot be opened.
    #[error("cannot open the sysroot {path}: {errno}")]
    Sysroot {
        /// SYSROOT.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// A state directory cannot be created or opened (a symlink in its path is refused).
    #[error(
        "the deployment's state directory {path}: {errno} (creating or opening it, \
         symlinks not followed)"
    )]
    State {
        /// The directory.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The image lacks a directory something is mounted on.
    #[error("the image {id} has no directory /{dir} ({errno}): cannot mount {what} on it")]
    ImageDir {
        /// The image (hex).
        id: String,
        /// `etc`, `var` or `sysroot`.
        dir: &'static str,
        /// What would be mounted there.
        what: &'static str,
        /// Why (`ENOENT`, or `ENOTDIR`/`ELOOP` for a file or symlink).
        errno: Errno,
    },
    /// Making a mount failed.
    #[error("{what}: {source}")]
    Mount {
        /// Which mount.
        what: &'static str,
        /// The kernel's answer.
        source: ImageMountError,
    },
    /// A bind mount (`open_tree`) or attaching (`move_mount`) failed.
    #[error("{step}: {errno}")]
    Attach {
        /// What was being done.
        step: String,
        /// Why.
        errno: Errno,
    },
}

/// The deployment's state directories, opened (and created where missing).
#[derive(Debug)]
pub struct StateDirs {
    /// `<sysroot>/state/deploy/<hex>`.
    pub path: PathBuf,
    etc_upper: OwnedFd,
    etc_work: OwnedFd,
    var: OwnedFd,
}

/// Opens the directory `sysroot` (the physical root).
pub fn open_sysroot(sysroot: &Path) -> Result<OwnedFd, MountError> {
    rustix::fs::open(
        sysroot,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| MountError::Sysroot {
        path: sysroot.to_owned(),
        errno,
    })
}

/// Creates (where missing) and opens `<sysroot>/state/deploy/<hex>/{etc/upper,etc/work,var}`,
/// component by component from `sysroot_fd`, never following a symlink.
pub fn prepare_state(
    sysroot_fd: BorrowedFd<'_>,
    sysroot: &Path,
    id: &ObjectId,
) -> Result<StateDirs, MountError> {
    let path = deploy_dir(sysroot, id);
    let rel = deploy_dir(Path::new(""), id);
    let open = |sub: &str| open_dir_creating(sysroot_fd, &rel.join(sub), &path.join(sub));
    Ok(StateDirs {
        etc_upper: open("etc/upper")?,
        etc_work: open("etc/work")?,
        var: open("var")?,
        path,
    })
}

/// `mkdir -p` of `rel` under `root`, one component at a time, no symlink followed.
fn open_dir_creating(root: BorrowedFd<'_>, rel: &Path, full: &Path) -> Result<OwnedFd, MountError> {
    let fail = |errno| MountError::State {
        path: full.to_owned(),
        errno,
    };
    let mut dir = rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(fail)?;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(fail(Errno::INVAL));
        };
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail(e)),
        }
        dir = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail)?;
    }
    Ok(dir)
}

/// A directory of the (detached) image mount, opened without following a symlink.
fn image_dir(
    root: BorrowedFd<'_>,
    id: &ObjectId,
    dir: &'static str,
    what: &'static str,
) -> Result<OwnedFd, MountError> {
    rustix::fs::openat(
        root,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| MountError::ImageDir {
        id: id.to_hex(),
        dir,
        what,
        errno,
    })
}

/// The writable `/etc` overlay: lower the image's `etc`, upper/work the state's.
fn mount_etc(lower: BorrowedFd<'_>, state: &StateDirs) -> Result<OwnedFd, ImageMountError> {
    let configure = |legacy: bool| -> Result<OwnedFd, ImageMountError> {
        let ctx = FsContext::open("overlay")?;
        ctx.set("source", ETC_SOURCE)?;
        if legacy {
            ctx.set("lowerdir", &fd_path(lower))?;
        } else {
            ctx.set("lowerdir+", &fd_path(lower))?;
        }
        ctx.set("upperdir", &fd_path(state.etc_upper.as_fd()))?;
        ctx.set("workdir", &fd_path(state.etc_work.as_fd()))?;
        ctx.mount_with(MountAttrFlags::empty())
    };
    match configure(false) {
        // Kernels before 6.8 do not know lowerdir+.
        Err(ImageMountError::Mount {
            errno: Errno::INVAL,
            step,
            ..
        }) if step.contains("lowerdir+") => configure(true),
        other => other,
    }
}

/// overlayfs refusing a layer on a detached mount (kernels before 6.15).
fn is_detached_layer_refusal(e: &ImageMountError) -> bool {
    matches!(e, ImageMountError::Mount { errno: Errno::INVAL, step, .. }
        if step.contains("creating the filesystem"))
}

fn clone_tree(from: BorrowedFd<'_>, recursive: bool, what: &Path) -> Result<OwnedFd, MountError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(from, "", flags).map_err(|errno| MountError::Attach {
        step: format!("bind-mounting {}", what.display()),
        errno,
    })
}

fn attach(mount: BorrowedFd<'_>, target: BorrowedFd<'_>, what: &Path) -> Result<(), MountError> {
    rustix::mount::move_mount(
        mount,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|errno| MountError::Attach {
        step: format!("attaching the mount at {}", what.display()),
        errno,
    })
}

/// Detaches SYSROOT's new top mount (and all on it) unless disarmed.
struct Undo<'a> {
    sysroot: &'a Path,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The error path is already being reported; a failure here leaves a mount the
            // message above explains.
            let _ = rustix::mount::unmount(self.sysroot, UnmountFlags::DETACH);
        }
    }
}

/// Whether to build the `/etc` overlay only after the image is attached, as on kernels
/// before 6.15 (`CFS_SETUP_ROOT_ATTACHED_LOWER=1`: for tests of that path on newer kernels).
fn attached_lower_forced() -> bool {
    std::env::var_os("CFS_SETUP_ROOT_ATTACHED_LOWER").is_some_and(|v| v == "1")
}

/// Mounts the planned image (`image`, verified, over the repository's `objects`) as the new
/// root at `sysroot` (opened as `sysroot_fd`), with `/etc`, `/var` and `/sysroot` as above.
/// The state directories are created ([`prepare_state`]) once the image is known to have the
/// directories they are mounted on. Returns the state directory.
pub fn mount_root(
    sysroot_fd: BorrowedFd<'_>,
    sysroot: &Path,
    image: &File,
    objects: BorrowedFd<'_>,
    plan: &Plan,
) -> Result<PathBuf, MountError> {
    let id = plan.image();
    let root = cfs_image::mount::mount_composefs(
        image,
        objects,
        MountOptions {
            require_verity: plan.require_verity,
            image: id,
        },
    )
    .map_err(|source| MountError::Mount {
        what: "mounting the image",
        source,
    })?;
    let etc_at = image_dir(root.as_fd(), &id, "etc", "the /etc overlay")?;
    let var_at = image_dir(root.as_fd(), &id, "var", "the state's var")?;
    let sysroot_at = image_dir(root.as_fd(), &id, "sysroot", "the physical root")?;
    let state = &prepare_state(sysroot_fd, sysroot, &id)?;
    let etc_failed = |source| MountError::Mount {
        what: "mounting the /etc overlay",
        source,
    };
    let etc = if attached_lower_forced() {
        None
    } else {
        match mount_etc(etc_at.as_fd(), state) {
            Ok(m) => Some(m),
            Err(e) if is_detached_layer_refusal(&e) => None,
            Err(e) => return Err(etc_failed(e)),
        }
    };
    let var = clone_tree(state.var.as_fd(), false, &state.path.join("var"))?;
    let physical = clone_tree(sysroot_fd, true, sysroot)?;

    attach(root.as_fd(), sysroot_fd, sysroot)?;
    let mut undo = Undo {
        sysroot,
        armed: true,
    };
    let etc = match etc {
        Some(m) => m,
        None => mount_etc(etc_at.as_fd(), state).map_err(etc_failed)?,
    };
    attach(etc.as_fd(), etc_at.as_fd(), &sysroot.join("etc"))?;
    attach(var.as_fd(), var_at.as_fd(), &sysroot.join("var"))?;
    attach(
        physical.as_fd(),
        sysroot_at.as_fd(),
        &sysroot.join("sysroot"),
    )?;
    undo.armed = false;
    Ok(state.path.clone())
}
