//! `cfsctl image ...`, `cfsctl create-image` and `cfsctl compute-id`: composefs images from
//! dumpfiles and directories, and dumpfiles from images.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cfs_image::scan::{ObjectStore, ScanOptions, scan};
use cfs_image::{FormatOptions, dumpfile, erofs};
use cfs_repository::{FsVerityHasher, HashAlgorithm, Repository};
use clap::Subcommand;

/// Image subcommands that work on files, without a repository.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Write the composefs EROFS image a dumpfile describes (like `mkcomposefs --from-file`).
    FromDump {
        /// The dumpfile (composefs-dump(5)); `-` reads standard input.
        dumpfile: PathBuf,
        /// Where to write the image; `-` writes standard output.
        #[arg(short = 'o', long = "output", value_name = "IMAGE")]
        output: PathBuf,
        /// Lowest composefs format version to write.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_version: u32,
        /// Highest composefs format version to write (used only if the tree needs it).
        #[arg(long, default_value_t = 1, value_name = "N")]
        max_version: u32,
        /// Also print the image's fs-verity digest (its image ID) to standard output.
        #[arg(long)]
        print_digest: bool,
        /// Hash algorithm of the printed digest.
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
    },
    /// Print the dumpfile of a composefs EROFS image (like `composefs-info dump`).
    Dump {
        /// The image file.
        image: PathBuf,
    },
}

/// Runs an `image` subcommand.
pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::FromDump {
            dumpfile: input,
            output,
            min_version,
            max_version,
            print_digest,
            hash,
        } => {
            let text = read_input(&input)?;
            let fs =
                dumpfile::parse(&text).with_context(|| format!("parsing {}", input.display()))?;
            let image = erofs::write(
                &fs,
                FormatOptions {
                    min_version,
                    max_version,
                },
            )?;
            if output.as_os_str() == "-" {
                let mut out = std::io::stdout().lock();
                out.write_all(&image)?;
                out.flush()?;
            } else {
                write_atomically(&output, &image)?;
            }
            if print_digest {
                println!("{}", FsVerityHasher::digest(hash, &image));
            }
        }
        ImageCommand::Dump { image } => {
            let bytes =
                std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
            let fs = erofs::read(&bytes).with_context(|| format!("reading {}", image.display()))?;
            let mut out = std::io::stdout().lock();
            dumpfile::write(&fs, &mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(data)
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so a
/// failed run leaves no half-written image.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `cfsctl create-image SRCDIR [NAME]`: stores the directory's files and its image; prints the
/// image ID.
pub fn create_image(repo: &Repository, srcdir: &Path, name: Option<&str>) -> Result<()> {
    let fs = scan(
        srcdir,
        ObjectStore::Repository(repo),
        ScanOptions::default(),
    )
    .with_context(|| format!("scanning {}", srcdir.display()))?;
    let id = cfs_image::repo::store_image(repo, &fs, FormatOptions::default())?;
    if let Some(name) = name {
        repo.set_image_ref(name, &id)?;
    }
    println!("{id}");
    Ok(())
}

/// `cfsctl compute-id SRCDIR`: the image ID `create-image` would print, without storing
/// anything.
pub fn compute_id(srcdir: &Path, hash: HashAlgorithm) -> Result<()> {
    let fs = scan(srcdir, ObjectStore::HashOnly(hash), ScanOptions::default())
        .with_context(|| format!("scanning {}", srcdir.display()))?;
    let id = cfs_image::repo::image_id(&fs, hash, FormatOptions::default())?;
    println!("{id}");
    Ok(())
}
