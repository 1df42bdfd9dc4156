//! Booting from cfs (docs/boot.md): the composefs kernel argument that names the image to
//! boot ([`karg`]), writing boot entries for a bootable image ([`prepare`], over [`find`],
//! [`bls`], [`uki`], [`osrel`], [`write`]), the deployment's state directory ([`state`]), and,
//! in the initramfs, mounting that image as the verified root.

pub mod bls;
pub mod error;
pub mod find;
pub mod karg;
pub mod osrel;
pub mod prepare;
pub mod setup_root;
pub mod state;
pub mod uki;
pub mod write;

pub use error::BootError;
