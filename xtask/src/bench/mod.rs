//! `cargo xtask bench`: the end-to-end pull benchmark. By default ([`big`]) it measures cfs
//! against composefs-rs 0.9.4 ([`crate::peers`]), against `gzip -dc`/`zstd -dc`, and against
//! the bound made of its own stages measured alone ([`stages`]), on the big fixture image
//! ([`crate::fixtures::big`]) and on two scaling layers ([`scale`]); in one run, in alternating
//! rounds, medians of `--runs`; and writes the table into docs/performance.md between the
//! `bench:start`/`bench:end` markers.
//!
//! Other modes: `--small` (the earlier benchmark on the small Debian fixtures, [`small`]),
//! `--many-files N` (peak memory with N files, [`crate::many_files`]), and the hidden
//! `--stage STAGE FILE...` the benchmark runs to measure one stage.

mod big;
mod harness;
mod registry;
mod scale;
mod small;
mod stages;

use std::path::PathBuf;

use anyhow::{Result, ensure};

use crate::{ensure_tools, project_root};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// One run of everything but the scaling layers (about 3 minutes); implies --no-write.
    #[arg(long)]
    quick: bool,
    /// Leave out composefs-rs.
    #[arg(long)]
    no_peer: bool,
    /// Leave out the scaling layers (300,000 files; one 3 GiB file).
    #[arg(long)]
    no_scale: bool,
    /// Don't write docs/performance.md, only print.
    #[arg(long)]
    no_write: bool,
    /// Size of the RAM-backed scratch filesystem.
    #[arg(long, default_value = "6G")]
    scratch_size: String,
    /// Where the benchmark caches the big fixture and the scaling layers
    /// [default: $CARGO_TARGET_DIR/bench-cache, else target/bench-cache].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Measure this cfsctl instead of building target/release/cfsctl.
    #[arg(long)]
    cfsctl: Option<PathBuf>,
    /// Instead: the earlier benchmark on the small Debian fixtures (printed only).
    #[arg(long)]
    small: bool,
    /// Instead: peak memory of pull/create-image/mount/fsck/gc on one layer of this many
    /// empty files (docs/performance.md, "Memory with many files").
    #[arg(long, value_name = "N")]
    many_files: Option<usize>,
    /// With --many-files: keep the temporary directory (printed).
    #[arg(long, requires = "many_files")]
    keep: bool,
    /// Instead: run one stage of a pull alone over FILES (used by the benchmark itself).
    #[arg(long, hide = true, requires = "files")]
    stage: Option<stages::Stage>,
    /// The files of --stage.
    #[arg(hide = true)]
    files: Vec<PathBuf>,
}

/// Runs the benchmark.
pub fn run(mut args: Args) -> Result<()> {
    if let Some(stage) = args.stage {
        return stages::run(stage, &args.files);
    }
    if let Some(files) = args.many_files {
        return crate::many_files::run(files, args.cfsctl, args.keep);
    }
    ensure!(
        rustix::process::geteuid().is_root(),
        "the benchmark mounts scratch filesystems: run it as root"
    );
    ensure_tools(&[
        ("time", "time"),
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        ("tar", "tar"),
        ("mkfs.ext4", "e2fsprogs"),
        ("docker-registry", "docker-registry"),
    ])?;
    if args.quick {
        args.runs = 1;
        args.no_scale = true;
        args.no_write = true;
    }
    let root = project_root();
    let fixtures = crate::fixtures::ensure_default()?;
    let bin = match &args.cfsctl {
        Some(b) => std::fs::canonicalize(b)?,
        None => harness::build_cfsctl(&root)?,
    };
    let target = harness::target_dir(&root);
    let scratch = harness::Scratch {
        img: PathBuf::from(format!("/dev/shm/cfs-bench.{}.img", std::process::id())),
        mnt: target.join(format!("bench/mnt.{}", std::process::id())),
        size: args.scratch_size.clone(),
    };
    let n = args.runs.max(1);
    if args.small {
        return small::run(&bin, &fixtures, &scratch, n);
    }
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| target.join("bench-cache"));
    big::run(&big::Setup {
        root,
        bin,
        fixtures,
        cache,
        scratch,
        runs: n,
        peer: !args.no_peer,
        scale: !args.no_scale,
        write: !args.no_write,
        quick: args.quick,
    })
}
