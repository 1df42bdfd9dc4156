//! `cfsctl compute-karg DIR`, `cfsctl oci compute-karg NAME` and `cfsctl oci prepare-boot
//! NAME`: the composefs kernel argument and boot entries (docs/boot.md). The logic is in
//! cfs-boot; this parses, builds the image tree and prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cfs_boot::karg::ComposefsKarg;
use cfs_boot::prepare::{PrepareOptions, prepare_boot as prepare};
use cfs_repository::{HashAlgorithm, Repository, VerityMode};
use clap::Args;

use crate::image::{Canonical, DirRules};

/// The arguments of `compute-karg`.
#[derive(Args, Debug)]
pub struct ComputeKargArgs {
    /// Hash algorithm (the repository's that will hold the image).
    #[arg(long, default_value = "sha256")]
    hash: HashAlgorithm,
    /// Print the insecure form (`?` right after `=`): the initramfs mounts the image without
    /// requiring fs-verity.
    #[arg(long)]
    insecure: bool,
    /// The directory (the image's root filesystem).
    srcdir: PathBuf,
}

/// The arguments of `oci prepare-boot`.
#[derive(Args, Debug)]
pub struct PrepareBootArgs {
    /// Name or image ID (`sha256:<config digest>`).
    name: String,
    /// The boot directory (the ESP or /boot) to write the entry into.
    #[arg(long, value_name = "DIR")]
    bootdir: PathBuf,
    /// The entry id [default: the image's BLS entry name, the UKI's name, or the kernel
    /// version]: names `loader/entries/ID.conf` and `ID/`, or `EFI/Linux/ID.efi`.
    #[arg(long, value_name = "ID")]
    entry_id: Option<String>,
    /// An extra kernel argument for a BLS entry (repeatable; `KEY=VALUE` replaces the same
    /// key). Not allowed for UKIs, whose command line is sealed.
    #[arg(long, value_name = "ARG")]
    cmdline: Vec<String>,
}

/// The canonical rules of bootable images: composefs-rs's defaults plus the boot rules.
fn bootable() -> Canonical {
    Canonical {
        bootable: true,
        ..Canonical::default()
    }
}

/// `compute-karg DIR`.
pub fn compute_karg(args: &ComputeKargArgs) -> Result<()> {
    let rules = DirRules {
        canonical: bootable(),
        no_oci_rules: false,
    };
    let id = crate::image::dir_image_id(&args.srcdir, args.hash, &rules)?;
    println!("{}", ComposefsKarg::v1(id, args.insecure));
    Ok(())
}

/// `oci compute-karg NAME`.
pub fn oci_compute_karg(repo: &Repository, name: &str) -> Result<()> {
    let fs = crate::image::oci_tree(repo, name, &bootable())?;
    let id = cfs_image::repo::image_id(&fs, repo.algorithm(), cfs_image::transform::OCI_FORMAT)?;
    println!(
        "{}",
        ComposefsKarg::v1(id, repo.verity() == VerityMode::Insecure)
    );
    Ok(())
}

/// `oci prepare-boot NAME --bootdir DIR`.
pub fn prepare_boot(repo: &Repository, args: &PrepareBootArgs) -> Result<()> {
    // The tree after the OCI rules only: the kernel is found before /boot is emptied.
    let fs = crate::image::oci_tree(repo, &args.name, &Canonical::default())?;
    let repo_path = std::fs::canonicalize(repo.path())
        .with_context(|| format!("resolving {}", repo.path().display()))?;
    let parent = repo_path
        .parent()
        .ok_or_else(|| cfs_boot::BootError::NoRepoParent(repo_path.clone()))?;
    let opts = PrepareOptions {
        bootdir: &args.bootdir,
        entry_id: args.entry_id.as_deref(),
        cmdline: &args.cmdline,
        repo_parent: parent,
    };
    let done =
        prepare(repo, fs, &opts).with_context(|| format!("preparing {} for boot", args.name))?;
    for other in &done.ignored {
        eprintln!("note: also found {other}; using {}", done.source);
    }
    for w in &done.written {
        eprintln!("wrote {}", w.display());
    }
    eprintln!(
        "state directory {}; image kept from gc by image ref {} (remove with `cfsctl rmi {}`)",
        done.state_dir.display(),
        done.gc_ref,
        done.gc_ref
    );
    println!("{}", done.karg);
    Ok(())
}
