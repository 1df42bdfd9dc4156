//! `cfsctl oci export|push|copy` (a submodule of `oci`, whose helpers it uses): getting images out of the repository (OCI layouts and
//! archives, registries through skopeo) and across from another cfs repository.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cfs_oci::export::{self, Compress, push::PushOptions};
use cfs_repository::Repository;
use clap::Args;

/// The arguments of `oci export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Name, image ID (or unique prefix) or digest of the stored image.
    name: String,
    /// oci:DIR[:TAG] (an OCI layout, created or added to) or oci-archive:FILE[:TAG] (a tar of
    /// one, replaced).
    dest: String,
    /// Write layers compressed (a new manifest digest; config and diff_ids stay) [default:
    /// none, the stored tars byte for byte].
    #[arg(long, value_name = "none|gzip|zstd", default_value = "none")]
    compress: Compress,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The arguments of `oci push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Name, image ID (or unique prefix) or digest of the stored image.
    name: String,
    /// docker://HOST/REPO[:TAG].
    dest: String,
    #[command(flatten)]
    registry: super::RegistryArgs,
    /// Compress layers with this before skopeo reads them [default: none: skopeo gzips them].
    #[arg(long, value_name = "none|gzip|zstd", default_value = "none")]
    compress: Compress,
    /// Directory for the temporary layout skopeo reads [default: $TMPDIR, else /var/tmp].
    #[arg(long, value_name = "DIR")]
    tmpdir: Option<PathBuf>,
}

/// The arguments of `oci copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from.
    #[arg(long, value_name = "REPO")]
    from: PathBuf,
    /// Name, image ID (or unique prefix) or digest in that repository.
    name: String,
    /// The name here [default: NAME].
    new_name: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `oci export`.
pub fn run_export(repo: &Repository, args: ExportArgs) -> Result<()> {
    let r = export::export(repo, &args.name, &args.dest, args.compress)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    eprintln!(
        "exported {} to {}: {} written ({}), {} already there; manifest {}",
        args.name,
        args.dest,
        blobs(r.written),
        super::human_size(r.bytes),
        r.existing,
        if r.manifest_kept {
            "kept byte for byte"
        } else {
            "new (layers differ from the stored manifest's)"
        }
    );
    println!("{}", r.manifest_digest);
    Ok(())
}

fn blobs(n: usize) -> String {
    if n == 1 {
        "1 blob".into()
    } else {
        format!("{n} blobs")
    }
}

/// `oci push`.
pub fn run_push(repo: &Repository, args: PushArgs) -> Result<()> {
    let opts = PushOptions {
        insecure_skip_tls_verification: !args.registry.tls_verify,
        creds: args.registry.creds()?,
        authfile: args.registry.authfile,
        cert_dir: args.registry.cert_dir,
        compress: args.compress,
        tmpdir: args.tmpdir,
    };
    let r = export::push::push(repo, &args.name, &args.dest, &opts)?;
    eprintln!(
        "pushed {} ({}) to {}",
        args.name, r.export.image_id, args.dest
    );
    println!("{}", r.pushed_digest);
    Ok(())
}

/// `oci copy`.
pub fn run_copy(repo: &Repository, args: CopyArgs) -> Result<()> {
    let src = Repository::open(&args.from).with_context(|| {
        format!(
            "opening the repository to copy from, {}",
            args.from.display()
        )
    })?;
    let r = cfs_oci::copy::copy_image(&src, repo, &args.name, args.new_name.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    eprintln!(
        "copied {} as {}: {} streams; objects: {} hardlinked, {} reflinked, {} copied, {} already here",
        args.name, r.name, r.streams, r.hardlinked, r.reflinked, r.copied, r.present
    );
    println!("{}", r.image_id);
    Ok(())
}
