//! Project automation, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! Structured like rust-analyzer's xtask: this file only parses the command line and dispatches;
//! each command lives in its own module with its own `Args` type and `run` function. To add a
//! command, add a module, a variant to [`Command`] and an arm to the `match` in [`main`].
//!
//! Commands:
//! - `demo` ([`demo`]): the main job on built-in sample data (README's first command).
//! - `bench` ([`bench`]): the end-to-end pull benchmark against composefs-rs and the pull's
//!   stage bound on the big fixture ([`fixtures::big`]), written to docs/performance.md;
//!   `bench --many-files N` ([`many_files`]): peak RSS of each command on a layer of N files.
//! - `chaos` ([`chaos`]): SIGKILL pulls at random points, 100 times; fsck and re-pull each time.
//! - `check-cycles` ([`cycles`]): import cycles between the modules of each crate.
//! - `ci` ([`ci`]): everything CI checks (tools, fmt, clippy, cycles, fixtures, tests).
//! - `fixtures` ([`fixtures`]): build and cache the Debian OCI images used by end-to-end tests
//!   and benchmarks (see `docs/fixtures.md`).
//! - `peers` ([`peers`]): find or install the peers compared against (composefs-rs 0.9.4).
//! - `fuzz` ([`fuzz`]): build and run the libFuzzer targets in `fuzz/` (`--smoke` for CI).
//! - `man` ([`man`]): cfsctl's man pages into docs/man/ (`--check` in CI).
//! - `vm-test` ([`vm`]): the fs-verity tests in a QEMU guest with Debian's 6.12 kernel;
//!   `--boot`: booting from cfs, proved in QEMU (see `docs/vm-test.md`).

mod bench;
mod chaos;
mod ci;
mod cycles;
mod demo;
mod fixtures;
mod fuzz;
mod man;
mod many_files;
mod peers;
mod vm;
mod vm_guest;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Command line of `cargo xtask`.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "cfs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The xtask subcommands.
#[derive(Subcommand)]
enum Command {
    /// SIGKILL `cfsctl oci pull` at random points (100 times): fsck and re-pull after each.
    Chaos(chaos::Args),
    /// Report import cycles between sibling modules of each crate (fails if there is one).
    CheckCycles(cycles::Args),
    /// Run every check CI runs (installs the test tools with apt-get if missing).
    Ci(ci::Args),
    /// Benchmark pulls against their bounds and peers; writes docs/performance.md.
    Bench(bench::Args),
    /// Build, make a sample OCI image, pull it into a fresh repository, list it, show a file.
    Demo(demo::Args),
    /// Build (or reuse) the Debian OCI image fixtures under target/fixtures.
    Fixtures(fixtures::Args),
    /// Find (installing if missing) the peer implementations compared against: composefs-rs
    /// 0.9.4's cfsctl; prints its path.
    Peers(peers::Args),
    /// Generate cfsctl's man pages into docs/man/ (`--check`: fail if they are stale).
    Man(man::Args),
    /// Build and run the fuzz targets in fuzz/ (stable toolchain; `--smoke`: 20 s each).
    Fuzz(fuzz::Args),
    /// Boot Debian's 6.12 kernel in QEMU and run the fs-verity tests (enforced repository,
    /// verity=require mounts, tampered objects) inside it; `--boot`: boot a bootable image
    /// from cfs (prepare-boot, setup-root) and check the verified root.
    VmTest(vm::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Chaos(args) => chaos::run(args),
        Command::CheckCycles(args) => cycles::run(args),
        Command::Ci(args) => ci::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Fixtures(args) => fixtures::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Man(args) => man::run(args),
        Command::Peers(args) => peers::run(args),
        Command::VmTest(args) => vm::run(args),
    }
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.to_path_buf(), Path::to_path_buf)
}

/// Renders a command for messages: program and arguments, space separated.
pub fn display_command(cmd: &Process) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio and fails, naming the command, unless it exits 0.
pub fn run_command(cmd: &mut Process) -> Result<()> {
    let shown = display_command(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; fails, naming the command, unless it exits 0.
pub fn command_output(cmd: &mut Process) -> Result<Vec<u8>> {
    let shown = display_command(cmd);
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed: {}", out.status);
    }
    Ok(out.stdout)
}

/// Finds `program` on `PATH` (also looking in the sbin directories, which a non-login root shell
/// may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Makes sure every `(program, Debian package)` is available, installing the missing packages
/// with apt-get (as root on Debian); otherwise fails naming the packages.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let can_apt = Path::new("/etc/debian_version").exists()
        && find_program("apt-get").is_some()
        && rustix::process::geteuid().is_root();
    if !can_apt {
        bail!(
            "missing tools: install the Debian packages {} (as root: apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("installing {} with apt-get", missing.join(" "));
    run_command(Process::new("apt-get").arg("update").arg("-q"))?;
    run_command(
        Process::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for (program, package) in tools {
        if find_program(program).is_none() {
            bail!("{program} still missing after installing {package}");
        }
    }
    Ok(())
}
