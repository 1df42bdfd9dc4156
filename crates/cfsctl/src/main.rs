//! `cfsctl`: the command-line front end of cfs. It parses arguments, calls the library crates
//! and prints; all logic lives in the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cfs_repository::{FsVerityHasher, HashAlgorithm};
use clap::{Parser, Subcommand};

/// Store container images once, deduplicated by file, and mount them as verified trees.
#[derive(Parser, Debug)]
#[command(name = "cfsctl", version, about)]
struct Cli {
    /// The repository directory [default: $CFS_REPO, else /var/lib/cfs as root, else
    /// $XDG_DATA_HOME/cfs]
    #[arg(long, global = true, value_name = "DIR")]
    repo: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the fs-verity digest of files, as `fsverity digest` does.
    Digest {
        /// Hash algorithm.
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn digest(hash: HashAlgorithm, files: &[PathBuf]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for path in files {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let id = FsVerityHasher::digest_reader(hash, file)
            .with_context(|| format!("reading {}", path.display()))?;
        writeln!(out, "{id:#} {}", path.display())?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Digest { hash, files } => digest(hash, &files),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CFS_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfsctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
