//! `cargo xtask ci`: the project's whole check, as CI runs it (`.ci/run`) and as README.md
//! tells developers to run it: installs the tools the tests use, then format, lints, import
//! cycles (`cargo xtask check-cycles`, every crate), the fixtures, every test, a fuzzing smoke
//! run, the fs-verity tests in a VM (`cargo xtask vm-test`) and the boot from cfs in a VM
//! (`cargo xtask vm-test --boot`).

use std::process::Command;

use anyhow::Result;

use crate::{ensure_tools, project_root, run_command};

/// Programs the tests run against (the real peers), with their Debian packages.
pub const TEST_TOOLS: &[(&str, &str)] = &[
    ("fsverity", "fsverity"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("mkfs.erofs", "erofs-utils"),
    ("fsck.erofs", "erofs-utils"),
    ("docker-registry", "docker-registry"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("debootstrap", "debootstrap"),
    ("setfattr", "attr"),
    ("mkfs.ext4", "e2fsprogs"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("debugfs", "e2fsprogs"),
    ("strip", "binutils"),
    // tests/registry_errors.rs: a self-signed certificate and a bcrypt htpasswd line.
    ("openssl", "openssl"),
    ("python3", "python3"),
];

/// Arguments of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip installing tools (they must already be there).
    #[arg(long)]
    no_install: bool,
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(project_root());
    c
}

/// Runs every check; fails at the first that fails.
pub fn run(args: Args) -> Result<()> {
    if !args.no_install {
        ensure_tools(TEST_TOOLS)?;
    }
    let step = |name: &str| println!("\n==> {name}");
    step("cargo fmt --check");
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy");
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("man pages (docs/man/ generated from the code)");
    run_command(cargo().args(["xtask", "man", "--check"]))?;
    step("check-cycles (no import cycles between modules, every crate)");
    run_command(cargo().args(["xtask", "check-cycles"]))?;
    step("fixtures (Debian OCI images)");
    run_command(cargo().args(["xtask", "fixtures"]))?;
    step("cargo test");
    run_command(cargo().args(["test", "--workspace", "--all-targets"]))?;
    run_command(cargo().args(["test", "--workspace", "--doc"]))?;
    step("fuzz smoke (each target briefly)");
    run_command(cargo().args(["xtask", "fuzz", "--smoke"]))?;
    step("vm-test (fs-verity in a QEMU guest)");
    run_command(cargo().args(["xtask", "vm-test"]))?;
    step("vm-test --boot (boot a kernel from cfs in a QEMU guest)");
    run_command(cargo().args(["xtask", "vm-test", "--boot"]))?;
    println!("\nci: all checks passed");
    Ok(())
}
