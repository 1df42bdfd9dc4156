//! The one error type of boot-entry writing ([`BootError`]): every variant names the file,
//! entry, argument or limit that is wrong. It lives below the modules that return it, so none
//! of them depends on another for it.

use std::path::PathBuf;

use cfs_repository::ObjectId;

use crate::karg::KargError;

/// Why a boot entry cannot be found, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// An I/O error on a file of the boot directory, the state directory or the repository.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing`, `creating`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file of the image that boot-entry writing reads into memory is above its bound.
    #[error("{path} in the image is {size} bytes, more than the {limit}-byte limit for {what}")]
    TooLarge {
        /// The path in the image (or the section of a UKI).
        path: String,
        /// Its size.
        size: u64,
        /// The bound.
        limit: u64,
        /// What kind of file it is.
        what: &'static str,
    },
    /// A boot file of the image is not a regular file (a symlink, a directory, a device).
    #[error(
        "{path} in the image is {kind}, not a regular file: boot files are copied only from regular files of the image"
    )]
    NotRegular {
        /// The path in the image.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A path a boot entry names is not in the image.
    #[error("{path} (named by {by}) is not in the image")]
    Missing {
        /// The path in the image.
        path: String,
        /// The entry or rule that names it.
        by: String,
    },
    /// A path from the image or the command line that cannot be used below the boot directory.
    #[error("{path:?} (from {by}): {why}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Where it came from.
        by: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A text file of the image is not UTF-8.
    #[error("{path} in the image is not UTF-8")]
    NotUtf8 {
        /// The path in the image.
        path: String,
    },
    /// An entry id (`--entry-id`, a kernel version, a BLS entry's file name) that cannot name
    /// files in the boot directory.
    #[error("invalid boot entry id {id:?} (from {by}): {why}")]
    BadEntryId {
        /// The id.
        id: String,
        /// Where it came from.
        by: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `--cmdline` argument that cannot be written into an entry.
    #[error("invalid kernel argument {arg:?}: {why}")]
    BadCmdlineArg {
        /// The argument.
        arg: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The image has no kernel at any place composefs-rs looks.
    #[error(
        "no kernel found in the image: no BLS entry in /boot/loader/entries/*.conf, no UKI \
         (*.efi) under /boot/EFI/Linux or /usr/lib/modules/<kver>/, no \
         /usr/lib/modules/<kver>/vmlinuz"
    )]
    NoKernel,
    /// `/usr/lib/modules/<kver>/vmlinuz` without its `initramfs.img`.
    #[error("kernel /usr/lib/modules/{kver}/vmlinuz has no initramfs.img beside it")]
    NoInitramfs {
        /// The kernel version.
        kver: String,
    },
    /// A UKI whose PE structure or sections cannot be read.
    #[error("UKI {path}: {why}")]
    Uki {
        /// The path in the image.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A UKI whose `.cmdline` names no image, or an image other than this one.
    #[error("UKI {path}: its .cmdline {cmdline:?} {why}")]
    UkiKarg {
        /// The path in the image.
        path: String,
        /// The `.cmdline` section.
        cmdline: String,
        /// What is wrong with its composefs argument.
        why: String,
    },
    /// The composefs argument of a UKI could not be parsed.
    #[error("UKI {path}: .cmdline: {source}")]
    UkiKargParse {
        /// The path in the image.
        path: String,
        /// The parse error.
        source: KargError,
    },
    /// `--cmdline` given for a UKI, whose command line is sealed inside it.
    #[error(
        "cannot add --cmdline arguments to a UKI ({path}): its command line is sealed in its .cmdline section"
    )]
    CmdlineForUki {
        /// The UKI's path in the image.
        path: String,
    },
    /// A stored file's bytes are not the ones the image names (an insecure repository whose
    /// object was replaced or damaged).
    #[error("{path}: the stored object has {what} {actual}, the image names {expected}")]
    ObjectMismatch {
        /// The path in the image.
        path: String,
        /// `digest` or `size`.
        what: &'static str,
        /// What the image names.
        expected: String,
        /// What was read.
        actual: String,
    },
    /// The repository path has no parent directory for the state directory.
    #[error("the repository {} has no parent directory for state/deploy", .0.display())]
    NoRepoParent(PathBuf),
    /// A repository operation failed.
    #[error(transparent)]
    Repo(#[from] cfs_repository::Error),
    /// Writing or storing the bootable image failed.
    #[error("storing the bootable image: {0}")]
    Image(#[from] cfs_image::repo::ImageError),
    /// The boot transformation refused the tree.
    #[error("the boot transformation: {0}")]
    Transform(#[from] cfs_image::transform::TransformError),
}

impl BootError {
    /// An [`BootError::Io`] on `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

/// A digest, for messages.
pub(crate) fn show(id: &ObjectId) -> String {
    id.to_string()
}
