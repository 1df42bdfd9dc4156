//! `setup-root`, run in the initramfs (docs/boot.md, "The initramfs: setup-root"): with the
//! physical root mounted at SYSROOT, mount the image the kernel command line names from the
//! repository `SYSROOT/composefs` as the new root at SYSROOT, verified; `/etc` and `/var` from
//! the deployment's state directory; the physical root kept at `SYSROOT/sysroot`. The caller
//! then switches root to SYSROOT.
//!
//! [`plan`] decides from the command line and the repository's facts (no I/O), [`verify`]
//! opens and checks the image, [`mount`] makes the mounts. Every refusal comes before the
//! first mount; a failure after it undoes what was attached.

pub mod mount;
pub mod plan;
pub mod verify;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use cfs_repository::ObjectId;

pub use mount::MountError;
pub use plan::{Plan, PlanError, RepoFacts};
pub use verify::VerifyError;

/// Why setup-root refused or failed; nothing is left mounted.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The command line does not allow a root to be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The repository or image failed a check.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// What was mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupOutcome {
    /// The image now mounted at SYSROOT.
    pub image: ObjectId,
    /// Whether it is mounted with `verity=require`.
    pub require_verity: bool,
    /// The deployment's state directory (on the physical root, as seen before).
    pub state: PathBuf,
}

/// The repository on a physical root: `<sysroot>/composefs`.
pub fn repository_path(sysroot: &Path) -> PathBuf {
    sysroot.join("composefs")
}

/// Runs setup-root on `sysroot` for the kernel command line `cmdline`.
pub fn setup_root(sysroot: &Path, cmdline: &str) -> Result<SetupOutcome, SetupError> {
    let sysroot_fd = mount::open_sysroot(sysroot)?;
    let repo_path = repository_path(sysroot);
    let repo = verify::open_repository(&repo_path)?;
    let facts = RepoFacts {
        algorithm: repo.algorithm(),
        verity: repo.verity(),
    };
    let plan = plan::plan(cmdline, &repo_path, facts)?;
    let image = verify::open_image(&repo, &plan.image())?;
    let state = mount::mount_root(
        sysroot_fd.as_fd(),
        sysroot,
        &image,
        repo.objects_dir(),
        &plan,
    )?;
    Ok(SetupOutcome {
        image: plan.image(),
        require_verity: plan.require_verity,
        state,
    })
}
