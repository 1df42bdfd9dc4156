//! `cfsctl image ...`, `cfsctl create-image` and `cfsctl compute-id`: composefs images from
//! dumpfiles and directories, and dumpfiles from images.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cfs_image::scan::{ObjectStore, ScanOptions, scan};
use cfs_image::transform::{self, XattrFilter};
use cfs_image::{ExternalFile, FileSystem, FormatOptions, dumpfile, erofs};
use cfs_repository::{FsVerityHasher, HashAlgorithm, Repository};
use clap::{Args, Subcommand};

/// The canonical-tree options of the commands that compute image IDs of container trees
/// (docs/image.md, "The canonical tree"): by default composefs-rs 0.9.4's OCI rules.
#[derive(Args, Debug, Clone, Default)]
pub struct Canonical {
    /// Which xattrs to keep: allowlist-only (security.capability only, as composefs-rs),
    /// keep-user-xattrs (also user.*), all (every xattr; no composefs-rs ID matches it).
    #[arg(long, value_name = "FILTER", default_value = "allowlist-only")]
    pub xattrs: XattrFilter,
    /// Also apply the boot rules (/boot and /sysroot emptied, security.selinux stripped), as
    /// composefs-rs's --bootable: the ID a sealed boot image carries.
    #[arg(long)]
    pub bootable: bool,
}

impl Canonical {
    /// Turns `fs` into the canonical tree these options describe; `read_external` reads a
    /// file the boot rules need (`/etc/selinux/config`) when it is not inline.
    pub fn apply(
        &self,
        fs: &mut FileSystem,
        read_external: impl FnOnce(&ExternalFile) -> Result<Vec<u8>, String>,
    ) -> Result<()> {
        transform::apply_oci(fs, self.xattrs);
        if self.bootable {
            transform::apply_boot(fs, read_external)?;
        }
        Ok(())
    }
}

/// Merges the image's layers into a tree and makes it the canonical tree `rules` describe.
pub fn oci_tree(repo: &Repository, name: &str, rules: &Canonical) -> Result<cfs_image::FileSystem> {
    let mut fs = cfs_oci::tree::image_tree(repo, name)
        .with_context(|| format!("building the tree of {name}"))?;
    rules
        .apply(&mut fs, |file| {
            let id = file.digest.as_ref().ok_or("no object digest")?;
            repo.read_object(id).map_err(|e| e.to_string())
        })
        .with_context(|| format!("the canonical tree of {name}"))?;
    Ok(fs)
}

/// How `create-image` and `compute-id` turn a directory into an image.
#[derive(Args, Debug, Clone, Default)]
pub struct DirRules {
    /// The canonical-tree rules.
    #[command(flatten)]
    pub canonical: Canonical,
    /// Store the directory exactly as scanned (no canonical-tree rules, every xattr,
    /// mkcomposefs's default format version): not an ID composefs-rs computes.
    #[arg(long, conflicts_with_all = ["xattrs", "bootable"])]
    pub no_oci_rules: bool,
}

impl DirRules {
    /// Turns `fs`, scanned from `srcdir`, into the tree these rules describe; returns the
    /// format to write it in.
    fn apply(&self, fs: &mut FileSystem, srcdir: &Path) -> Result<FormatOptions> {
        if self.no_oci_rules {
            return Ok(FormatOptions::default());
        }
        let config = srcdir.join("etc/selinux/config");
        self.canonical.apply(fs, |_| {
            std::fs::read(&config).map_err(|e| format!("{}: {e}", config.display()))
        })?;
        Ok(transform::OCI_FORMAT)
    }
}

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
pub fn create_image(
    repo: &Repository,
    srcdir: &Path,
    name: Option<&str>,
    rules: &DirRules,
) -> Result<()> {
    let mut fs = scan(
        srcdir,
        ObjectStore::Repository(repo),
        ScanOptions::default(),
    )
    .with_context(|| format!("scanning {}", srcdir.display()))?;
    let format = rules.apply(&mut fs, srcdir)?;
    let id = cfs_image::repo::store_image(repo, &fs, format)?;
    if let Some(name) = name {
        repo.set_image_ref(name, &id)?;
    }
    println!("{id}");
    Ok(())
}

/// `cfsctl compute-id SRCDIR`: the image ID `create-image` would print, without storing
/// anything.
pub fn compute_id(srcdir: &Path, hash: HashAlgorithm, rules: &DirRules) -> Result<()> {
    println!("{}", dir_image_id(srcdir, hash, rules)?);
    Ok(())
}

/// The image ID of a directory under `rules`, storing nothing.
pub fn dir_image_id(
    srcdir: &Path,
    hash: HashAlgorithm,
    rules: &DirRules,
) -> Result<cfs_repository::ObjectId> {
    let mut fs = scan(srcdir, ObjectStore::HashOnly(hash), ScanOptions::default())
        .with_context(|| format!("scanning {}", srcdir.display()))?;
    let format = rules.apply(&mut fs, srcdir)?;
    Ok(cfs_image::repo::image_id(&fs, hash, format)?)
}

/// `cfsctl images`: every composefs image in the repository with the image refs that name it
/// and where it is mounted; an image nothing names or mounts is marked as what the next gc
/// removes.
pub fn list_images(repo: &Repository, json: bool) -> Result<()> {
    let refs = repo.list_image_refs()?;
    let mounted = cfs_image::mounts::mounted_images(repo.algorithm())?;
    let mut rows = Vec::new();
    for id in repo.list_images()? {
        let hex = id.to_hex();
        let names: Vec<&str> = refs
            .iter()
            .filter(|r| r.target == hex)
            .map(|r| r.name.as_str())
            .collect();
        let at: Vec<_> = mounted.iter().filter(|m| m.image == id).collect();
        rows.push((hex, names, at));
    }
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(hex, names, at)| {
                serde_json::json!({
                    "composefs_id": hex,
                    "refs": names,
                    "mounts": at.iter().map(|m| serde_json::json!({
                        "mountpoint": m.mountpoint,
                        "namespace": m.namespace,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    writeln!(out, "COMPOSEFS ID\tNAMES\tMOUNTED AT")?;
    for (hex, names, at) in rows {
        let at: Vec<String> = at
            .iter()
            .map(|m| match &m.namespace {
                None => m.mountpoint.display().to_string(),
                Some(ns) => format!("{} ({ns})", m.mountpoint.display()),
            })
            .collect();
        let names = if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(",")
        };
        let at = if at.is_empty() {
            if names == "-" {
                "- (unused: the next gc removes it)".to_owned()
            } else {
                "-".to_owned()
            }
        } else {
            at.join(",")
        };
        writeln!(out, "{hex}\t{names}\t{at}")?;
    }
    Ok(())
}

/// A composefs image name that matches nothing, pointing to the OCI commands as well.
fn not_found(name: &str) -> anyhow::Error {
    crate::exit::NotFound(format!(
        "no composefs image or image ref {name:?} (see `cfsctl images`; OCI images are listed \
         by `cfsctl oci images` and removed by `cfsctl oci rm`)"
    ))
    .into()
}

/// `cfsctl rmi NAME|ID...`: removes image refs (an ID: every ref naming that image), so the
/// next gc frees the image unless it is mounted.
pub fn remove_images(repo: &Repository, names: &[String]) -> Result<()> {
    for name in names {
        let removed: Vec<String> = match cfs_repository::ObjectId::parse_for(repo.algorithm(), name)
        {
            Ok(id) => {
                let hex = id.to_hex();
                let mut removed = Vec::new();
                for r in repo.list_image_refs()? {
                    if r.target == hex {
                        repo.remove_image_ref(&r.name)?;
                        removed.push(r.name);
                    }
                }
                if removed.is_empty() && !repo.list_images()?.contains(&id) {
                    // Not an image: perhaps a ref whose name looks like an ID.
                    let is_ref = cfs_repository::names::check_ref_name(name).is_ok()
                        && repo.remove_image_ref(name)?;
                    if is_ref {
                        removed.push(name.clone());
                    } else {
                        return Err(not_found(name));
                    }
                }
                removed
            }
            Err(_) => {
                if repo
                    .remove_image_ref(name)
                    .with_context(|| format!("removing image ref {name:?}"))?
                {
                    vec![name.clone()]
                } else {
                    // A unique prefix of an image ID: every ref of that image.
                    let id = match repo.resolve_image(name) {
                        Ok(id) => id,
                        Err(cfs_repository::Error::NotFound { .. }) => {
                            return Err(not_found(name));
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let hex = id.to_hex();
                    let mut removed = Vec::new();
                    for r in repo.list_image_refs()? {
                        if r.target == hex {
                            repo.remove_image_ref(&r.name)?;
                            removed.push(r.name);
                        }
                    }
                    removed
                }
            }
        };
        if removed.is_empty() {
            println!("{name} has no names");
        }
        for r in removed {
            println!("removed image ref {r}");
        }
    }
    eprintln!("run `cfsctl gc` to free the space of images nothing names or mounts");
    Ok(())
}
