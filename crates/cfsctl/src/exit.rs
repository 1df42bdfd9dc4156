//! cfsctl's exit statuses (docs/cli.md): 0 success, 1 failure (including fsck finding
//! problems), 2 usage (clap's own), 3 the named image does not exist — so scripts can tell
//! "not there" from "broken".

use std::process::ExitCode;

/// Exit status when the image (or image ref) named on the command line does not exist.
pub const NOT_FOUND: u8 = 3;

/// A name on the command line matches no image; its text says where to look instead.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// The exit status for an error: [`NOT_FOUND`] when any cause says a named image or ref does
/// not exist, else 1.
pub fn code(e: &anyhow::Error) -> ExitCode {
    use cfs_image::mount::MountError;
    use cfs_image::repo::ImageError;
    use cfs_oci::store::StoreError;
    use cfs_oci::tree::ImageTreeError;
    let repo = |e: &cfs_repository::Error| {
        matches!(
            e,
            cfs_repository::Error::NotFound {
                kind: "image" | "ref",
                ..
            }
        )
    };
    let image = |e: &ImageError| matches!(e, ImageError::Repository(r) if repo(r));
    let store = |e: &StoreError| matches!(e, StoreError::NotFound(_));
    // Errors marked `transparent` hide their inner error from the chain: look inside.
    let not_found = e.chain().any(|cause| {
        cause.downcast_ref::<NotFound>().is_some()
            || cause.downcast_ref::<StoreError>().is_some_and(store)
            || matches!(cause.downcast_ref::<ImageTreeError>(), Some(ImageTreeError::Store(s)) if store(s))
            || cause.downcast_ref::<cfs_repository::Error>().is_some_and(repo)
            || cause.downcast_ref::<ImageError>().is_some_and(image)
            || matches!(cause.downcast_ref::<MountError>(), Some(MountError::Image(i)) if image(i))
    });
    if not_found {
        ExitCode::from(NOT_FOUND)
    } else {
        ExitCode::FAILURE
    }
}
