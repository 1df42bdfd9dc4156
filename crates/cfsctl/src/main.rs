//! `cfsctl`: the command-line front end of cfs. It parses arguments, calls the library crates
//! and prints; all logic lives in the libraries.

mod generate;
mod image;
mod mount;
mod oci;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cfs_repository::{FsVerityHasher, HashAlgorithm, InitVerity, Repository};
use clap::{CommandFactory, Parser, Subcommand};

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
    /// Create a repository. Verity is enforced; where the filesystem cannot do fs-verity this
    /// fails unless --insecure is given.
    Init {
        /// Hash algorithm of object names and image IDs.
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
        /// Create a repository whose objects the kernel does not verify.
        #[arg(long)]
        insecure: bool,
    },
    /// Check the repository: re-hash every object, decode every stream, resolve every ref.
    /// Exits non-zero if anything is wrong.
    Fsck {
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        /// Remove corrupt objects and every stream and image that needs a missing or corrupt
        /// object, so that the next pull of the image fetches and restores them; lists the
        /// names to re-pull.
        #[arg(long)]
        repair: bool,
    },
    /// Remove objects, streams and images that no ref reaches and no mount uses.
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// OCI images and layers.
    #[command(subcommand)]
    Oci(oci::OciCommand),
    /// composefs images as files: from dumpfiles, to dumpfiles.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Store a directory's files and its composefs image in the repository; prints the image
    /// ID.
    CreateImage {
        /// The directory to store.
        srcdir: PathBuf,
        /// Also name the image with this image ref.
        name: Option<String>,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: image::DirRules,
    },
    /// Print the image ID `create-image` would give a directory, without storing anything
    /// (no repository needed).
    ComputeId {
        /// Hash algorithm (the repository's, for IDs to match).
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
        /// The directory.
        srcdir: PathBuf,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: image::DirRules,
    },
    /// List the composefs images in the repository: ID, image refs, where mounted.
    Images,
    /// Remove image refs (by name, or every ref of an image ID); `cfsctl gc` then frees what
    /// nothing else names or mounts.
    Rmi {
        /// Image ref names or image IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Mount a stored image read-only (needs root). The image's digest is checked first.
    Mount {
        /// Image ID or image ref name.
        image: String,
        /// An existing directory.
        mountpoint: PathBuf,
    },
    /// List the mounted images (in every mount namespace this user can see); gc keeps them.
    Mounts,
    /// Write a stored stream (by content id or ref name), re-created byte for byte, to stdout.
    Cat {
        /// Content id (e.g. oci-layer-sha256:...) or stream ref name.
        stream: String,
    },
    /// Print the fs-verity digest of files, as `fsverity digest` does.
    Digest {
        /// Hash algorithm.
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a shell completion script (e.g. `cfsctl completions bash >
    /// /etc/bash_completion.d/cfsctl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR (what `cargo xtask man` commits as docs/man/).
    #[command(hide = true)]
    GenerateMan {
        /// The directory to write `cfsctl.1`, `cfsctl-oci.1`, … into.
        dir: PathBuf,
    },
}

fn digest(hash: HashAlgorithm, files: &[PathBuf]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = std::io::stdout().lock();
    for path in files {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let id = FsVerityHasher::digest_reader(hash, file)
            .with_context(|| format!("reading {}", path.display()))?;
        // The name's raw bytes, as `fsverity digest` prints them (not lossily re-encoded).
        write!(out, "{id:#} ")?;
        out.write_all(path.as_os_str().as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The repository path: --repo, else $CFS_REPO, else /var/lib/cfs (root) or
/// $XDG_DATA_HOME/cfs (others).
fn repo_path(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("CFS_REPO").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    if rustix::process::geteuid().is_root() {
        return Ok("/var/lib/cfs".into());
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(d).join("cfs"));
    }
    let home = std::env::var_os("HOME")
        .context("cannot find a repository: set --repo, CFS_REPO or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/cfs"))
}

fn open(arg: Option<PathBuf>) -> Result<Repository> {
    let path = repo_path(arg)?;
    Ok(Repository::open(&path)?)
}

/// Exit status for "ran fine, found problems".
struct Failed;

fn run(cli: Cli) -> Result<Option<Failed>> {
    match cli.command {
        Command::Digest { hash, files } => digest(hash, &files)?,
        Command::Completions { shell } => generate::completions(Cli::command(), shell)?,
        Command::GenerateMan { dir } => generate::man_pages(Cli::command(), &dir)?,
        Command::Init { hash, insecure } => {
            let path = repo_path(cli.repo)?;
            let mode = if insecure {
                InitVerity::Insecure
            } else {
                InitVerity::Require
            };
            let repo = Repository::init(&path, hash, mode)?;
            println!(
                "initialised {} ({}, verity {})",
                path.display(),
                repo.algorithm(),
                repo.verity()
            );
        }
        Command::Fsck { json, repair: true } => {
            // By path: a damaged layout (which `open` refuses) is repaired first.
            let path = repo_path(cli.repo)?;
            let r = Repository::repair_path(&path, Some(&cfs_image::repo::ErofsImageObjects), 0)?;
            if json {
                let mut v = serde_json::to_value(&r)?;
                v["before"]["ok"] = r.before.ok().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for p in &r.before.problems {
                    println!("{}: {}: {}", p.path, p.kind, p.message);
                }
                for l in &r.layout {
                    println!("repaired layout {l}");
                }
                for o in &r.strays {
                    println!("removed stray {o}");
                }
                for o in &r.objects {
                    println!("removed corrupt object {o}");
                }
                for s in &r.streams {
                    println!("removed stream {s}");
                }
                for i in &r.images {
                    println!("removed image {i}");
                }
                for n in &r.refs {
                    match n.strip_prefix("images/refs/oci/") {
                        // The composefs image of a pulled image: its re-pull rebuilds it.
                        Some(x) => println!("needs a re-pull: {n} (the pull of {x} rebuilds it)"),
                        None => println!("needs a re-pull: {n}"),
                    }
                }
                println!(
                    "repaired: {} problems found; removed {} objects, {} streams, {} images; {} refs to re-pull",
                    r.before.problems.len(),
                    r.objects.len(),
                    r.streams.len(),
                    r.images.len(),
                    r.refs.len()
                );
            }
        }
        Command::Fsck {
            json,
            repair: false,
        } => {
            // By path: a damaged layout (which `open` refuses) is reported, not an error.
            let path = repo_path(cli.repo)?;
            let report =
                Repository::fsck_path(&path, Some(&cfs_image::repo::ErofsImageObjects), 0)?;
            if json {
                let mut v = serde_json::to_value(&report)?;
                v["ok"] = report.ok().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for p in &report.problems {
                    println!("{}: {}: {}", p.path, p.kind, p.message);
                }
                println!(
                    "{}: {} objects ({} bytes), {} streams, {} refs, {} images checked, {} problems",
                    if report.ok() { "ok" } else { "FAILED" },
                    report.objects,
                    report.bytes,
                    report.streams,
                    report.refs,
                    report.images,
                    report.problems.len()
                );
            }
            if !report.ok() {
                return Ok(Some(Failed));
            }
        }
        Command::Gc { dry_run } => {
            let repo = open(cli.repo)?;
            let report = repo.gc(Some(&cfs_image::repo::ErofsImageObjects), dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for s in &report.streams {
                println!("{verb} stream {s}");
            }
            for i in &report.images {
                println!("{verb} image {i}");
            }
            for i in &report.mounted {
                println!("kept image {i} (mounted, no ref names it)");
            }
            for o in &report.objects {
                println!("{verb} object {o}");
            }
            for l in &report.temp_links {
                println!("removed temporary link {l} (left by a killed process)");
            }
            println!(
                "{verb} {} objects ({} bytes), {} streams, {} images; kept {} objects",
                report.objects.len(),
                report.bytes,
                report.streams.len(),
                report.images.len(),
                report.kept_objects
            );
        }
        Command::Oci(cmd) => oci::run(&std::sync::Arc::new(open(cli.repo)?), cmd)?,
        Command::Image(cmd) => image::run(cmd)?,
        Command::CreateImage {
            srcdir,
            name,
            rules,
        } => image::create_image(&open(cli.repo)?, &srcdir, name.as_deref(), &rules)?,
        Command::ComputeId {
            hash,
            srcdir,
            rules,
        } => image::compute_id(&srcdir, hash, &rules)?,
        Command::Mount { image, mountpoint } => mount::run(&open(cli.repo)?, &image, &mountpoint)?,
        Command::Mounts => mount::list(&open(cli.repo)?)?,
        Command::Images => image::list_images(&open(cli.repo)?)?,
        Command::Rmi { names } => image::remove_images(&open(cli.repo)?, &names)?,
        Command::Cat { stream } => {
            let repo = open(cli.repo)?;
            let reader = repo.open_stream(&stream)?;
            let mut out = std::io::stdout().lock();
            reader.write_to(&repo, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(None)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CFS_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(Failed)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cfsctl: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by `: `, leaving out a cause whose text the message
/// before it already ends with (library errors often show their source in their own text).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_leaves_out_repeated_causes() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner).context("writing x: disk on fire");
        assert_eq!(error_chain(&e), "writing x: disk on fire");
        let e = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(error_chain(&e), "outer: root cause");
    }
}
