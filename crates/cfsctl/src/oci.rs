//! `cfsctl oci ...`: OCI images and layers.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use cfs_repository::Repository;
use clap::Subcommand;

/// OCI subcommands.
#[derive(Subcommand, Debug)]
pub enum OciCommand {
    /// Import an uncompressed tar layer from stdin; prints its content id.
    ImportLayer,
    /// Write a stored layer, re-created byte for byte, to stdout (not to a terminal).
    Layer {
        /// The layer's diff_id (`sha256:<hex>` or hex) or its content id.
        diff_id: String,
    },
}

/// Accepts `sha256:<hex>`, `<hex>` or `oci-layer-sha256:<hex>`.
fn layer_cid(arg: &str) -> Result<String> {
    let hex = arg
        .strip_prefix("oci-layer-sha256:")
        .or_else(|| arg.strip_prefix("sha256:"))
        .unwrap_or(arg);
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        bail!("{arg:?} is not a layer diff_id (expected sha256:<64 lowercase hex digits>)");
    }
    Ok(cfs_oci::layer_content_id(hex))
}

/// Runs an OCI subcommand.
pub fn run(repo: &Repository, cmd: OciCommand) -> Result<()> {
    match cmd {
        OciCommand::ImportLayer => {
            let stdin = std::io::stdin().lock();
            let imported =
                cfs_oci::import_layer(repo, stdin).context("importing the layer from stdin")?;
            println!("{}", imported.content_id);
        }
        OciCommand::Layer { diff_id } => {
            let cid = layer_cid(&diff_id)?;
            let mut out = std::io::stdout().lock();
            if out.is_terminal() {
                bail!(
                    "refusing to write a tar layer to a terminal; redirect stdout to a file or pipe"
                );
            }
            let reader = repo.open_stream(&cid)?;
            reader.write_to(repo, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(())
}
