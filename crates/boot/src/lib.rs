//! Booting from cfs (docs/boot.md): the composefs kernel argument that names the image to
//! boot ([`karg`]), writing boot entries for a bootable image, and, in the initramfs,
//! mounting that image as the verified root.

pub mod karg;
pub mod setup_root;
pub mod state;
