//! `cfsctl setup-root [--sysroot DIR] [--cmdline STRING]`: in the initramfs, mounts the image
//! the kernel command line names as the verified new root (`cfs_boot::setup_root`; docs/boot.md,
//! "The initramfs: setup-root"). One line on success; on a refusal the error names what is
//! wrong and nothing is mounted.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The arguments of `setup-root`.
#[derive(clap::Args, Debug)]
pub struct SetupRootArgs {
    /// Where the physical root is mounted; the new root is mounted on it.
    #[arg(long, default_value = "/sysroot", value_name = "DIR")]
    sysroot: PathBuf,
    /// The kernel command line to read the composefs argument from [default: /proc/cmdline].
    #[arg(long, value_name = "STRING")]
    cmdline: Option<String>,
}

/// Runs setup-root.
pub fn run(args: &SetupRootArgs) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("setup-root mounts the root filesystem: it needs root (CAP_SYS_ADMIN)");
    }
    let cmdline = match &args.cmdline {
        Some(c) => c.clone(),
        None => std::fs::read_to_string("/proc/cmdline")
            .context("reading the kernel command line /proc/cmdline")?,
    };
    let outcome = cfs_boot::setup_root::setup_root(&args.sysroot, &cmdline)
        .with_context(|| format!("setup-root {}", args.sysroot.display()))?;
    println!(
        "setup-root: mounted image {} at {} ({}); /etc and /var from {}; the physical root at {}",
        outcome.image.to_hex(),
        args.sysroot.display(),
        if outcome.require_verity {
            "verity=require"
        } else {
            "insecure: fs-verity not required"
        },
        outcome.state.display(),
        args.sysroot.join("sysroot").display()
    );
    Ok(())
}
