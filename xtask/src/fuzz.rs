//! `cargo xtask fuzz`: builds the libFuzzer targets in `fuzz/` with the stable toolchain (the
//! sanitizer-coverage flags cargo-fuzz would pass, without `-Z` flags, so no nightly is needed)
//! and runs them, each for `--seconds` (or 20 s each with `--smoke`, for CI), from the committed
//! seed corpus `fuzz/corpus/TARGET` plus a working corpus under the target directory. Any crash,
//! leak of a time or memory limit, or panic fails the command and leaves the input in
//! `target/fuzz-artifacts/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

/// The targets, in `fuzz/fuzz_targets/`.
const TARGETS: &[&str] = &[
    "tar_split",
    "splitstream",
    "dumpfile",
    "erofs",
    "manifest",
    "tar_erofs",
];
/// The host target: flags given through RUSTFLAGS then apply to the targets, not build scripts.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// Run every target briefly (20 s each): the CI smoke test.
    #[arg(long)]
    smoke: bool,
    /// Seconds per target.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Only these targets (default: all).
    targets: Vec<String>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"))
}

/// Builds and runs the fuzz targets.
pub fn run(args: Args) -> Result<()> {
    let root = crate::project_root();
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "unknown fuzz target {t}; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    let build_dir = target_dir().join("fuzz-build");
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg=fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
    .join(" ");
    crate::run_command(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root.join("fuzz"))
            .args(["build", "--release", "--target", TRIPLE])
            .env("CARGO_TARGET_DIR", &build_dir)
            .env("RUSTFLAGS", flags),
    )?;
    let seconds = if args.smoke { 20 } else { args.seconds };
    let artifacts = target_dir().join("fuzz-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    for t in &targets {
        let work = target_dir().join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&work)?;
        let tmp = target_dir().join("fuzz-tmp").join(t);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        println!("fuzzing {t} for {seconds} s");
        crate::run_command(
            Command::new(build_dir.join(TRIPLE).join("release").join(t))
                .arg(format!("-max_total_time={seconds}"))
                .args(["-malloc_limit_mb=512", "-rss_limit_mb=2048", "-timeout=20"])
                .args(["-max_len=65536", "-print_final_stats=1"])
                .arg(format!("-artifact_prefix={}/{t}-", artifacts.display()))
                .arg(&work)
                .arg(root.join("fuzz/corpus").join(t))
                // tar_split and tar_erofs keep their scratch repository here (not in /dev/shm).
                .env("CFS_FUZZ_TMP", &tmp),
        )?;
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
