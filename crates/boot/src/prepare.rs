//! `prepare-boot`: from an image's tree to a bootable deployment (docs/boot.md, "Boot
//! entries"). Finds the kernel as composefs-rs 0.9.4 does ([`crate::find`]), applies the
//! boot transformation and stores the bootable EROFS (its ID is what the kernel argument
//! names), makes it a gc root (image ref `deploy/<hex>`), creates the deployment's state
//! directory ([`crate::state`]), and writes the boot entry: BLS type 1
//! (`loader/entries/ID.conf`, `ID/vmlinuz`, `ID/initramfs.img`, or the files an image's own
//! BLS entry names) or a UKI copied to `EFI/Linux/` once its `.cmdline` is checked to name
//! this image.
//!
//! Order: every boot file is staged first (written under a temporary name and fsynced, its
//! bytes checked against the fs-verity digest and size the image records; a UKI's `.cmdline`
//! checked on the copy), then the image is stored with its gc root and the state directory is
//! created (the entry names them), then the old entry file is removed, the files renamed
//! into place, and the new entry renamed in last. An error before that point leaves the boot
//! directory as it was and no gc root; a crash after it leaves either no entry of this id or
//! the complete new one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cfs_image::transform::{OCI_FORMAT, apply_boot};
use cfs_image::{FileSystem, Leaf, RegularFile};
use cfs_repository::{FsVerityHasher, ObjectId, Repository, VerityMode};

use crate::bls::{BlsEntry, check_cmdline_arg, check_entry_id, one_line};
use crate::error::{BootError, show};
use crate::find::{BootSource, check_default_id, find_boot_sources, os_release, regular};
use crate::karg::ComposefsKarg;
use crate::state::create_deploy_dirs;
use crate::uki;
use crate::write::{BootDir, RelPath, Staged};

/// The image ref prefix of deployments: `deploy/<hex>` keeps a prepared image from gc.
pub const DEPLOY_REF_PREFIX: &str = "deploy/";

/// The gc root of the deployment booting `id`.
pub fn deploy_ref(id: &ObjectId) -> String {
    format!("{DEPLOY_REF_PREFIX}{}", id.to_hex())
}

/// What to prepare.
#[derive(Debug, Clone, Copy)]
pub struct PrepareOptions<'a> {
    /// The boot directory (the ESP or `/boot`).
    pub bootdir: &'a Path,
    /// The entry id (file names) instead of the image's (BLS entry name, kernel version).
    pub entry_id: Option<&'a str>,
    /// Extra kernel arguments (BLS entries only).
    pub cmdline: &'a [String],
    /// The directory that holds the repository: the state goes to its `state/deploy/`.
    pub repo_parent: &'a Path,
}

/// What was prepared.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The bootable image's composefs ID.
    pub id: ObjectId,
    /// The kernel argument naming it.
    pub karg: ComposefsKarg,
    /// The kernel used.
    pub source: String,
    /// Other kernels the image offers (composefs-rs, too, uses only the first).
    pub ignored: Vec<String>,
    /// The files written, the entry last.
    pub written: Vec<PathBuf>,
    /// The deployment's state directory.
    pub state_dir: PathBuf,
    /// The image ref that keeps the image from gc.
    pub gc_ref: String,
}

/// Prepares `fs` (an image's merged tree after the OCI rules, `transform::apply_oci`, with
/// `/boot` still in it) for boot; see the module documentation.
pub fn prepare_boot(
    repo: &Repository,
    mut fs: FileSystem,
    opts: &PrepareOptions<'_>,
) -> Result<Prepared, BootError> {
    if let Some(id) = opts.entry_id {
        check_entry_id(id, "--entry-id")?;
    }
    for arg in opts.cmdline {
        check_cmdline_arg(arg)?;
    }
    let mut read = |path: &str, file: &RegularFile, limit: u64| read_file(repo, path, file, limit);
    let sources = find_boot_sources(&fs, &mut read)?;
    let Some(source) = sources.first().cloned() else {
        return Err(BootError::NoKernel);
    };
    let ignored = sources.iter().skip(1).map(BootSource::describe).collect();
    if opts.entry_id.is_none() {
        check_default_id(&source)?;
    }
    let osrel = match &source {
        BootSource::Vmlinuz { .. } => os_release(&fs, &mut read)?,
        _ => None,
    };
    match &source {
        BootSource::Uki { path, .. } if !opts.cmdline.is_empty() => {
            return Err(BootError::CmdlineForUki { path: path.clone() });
        }
        BootSource::Vmlinuz {
            kver,
            initramfs: None,
            ..
        } => return Err(BootError::NoInitramfs { kver: kver.clone() }),
        _ => {}
    }

    // The bootable image's bytes and ID (stored only once the boot files are staged).
    apply_boot(&mut fs, |ext| {
        let id = ext.digest.as_ref().ok_or("no object digest")?;
        repo.read_object(id).map_err(|e| e.to_string())
    })?;
    let image = cfs_image::erofs::write(&fs, OCI_FORMAT)
        .map_err(|e| BootError::Image(cfs_image::repo::ImageError::Write(e)))?;
    drop(fs);
    let id = FsVerityHasher::digest(repo.algorithm(), &image);
    let karg = ComposefsKarg::v1(id, repo.verity() == VerityMode::Insecure);

    let boot = BootDir::open(opts.bootdir)?;
    let written = stage_and_commit(
        repo,
        &boot,
        &source,
        osrel.as_ref(),
        &image,
        &id,
        &karg,
        opts,
    );
    if written.is_err() {
        boot.remove_created_dirs();
    }
    let (written, gc_ref, state_dir) = written?;
    Ok(Prepared {
        id,
        karg,
        source: source.describe(),
        ignored,
        written,
        state_dir,
        gc_ref,
    })
}

/// Stages the boot files, stores the image with its gc root and state directory, commits
/// the files; returns (files written, gc ref, state directory).
#[allow(clippy::too_many_arguments)]
fn stage_and_commit(
    repo: &Repository,
    boot: &BootDir,
    source: &BootSource,
    osrel: Option<&crate::osrel::OsRelease>,
    image: &[u8],
    id: &ObjectId,
    karg: &ComposefsKarg,
    opts: &PrepareOptions<'_>,
) -> Result<(Vec<PathBuf>, String, PathBuf), BootError> {
    let plan = match source {
        BootSource::Uki { path, rel, leaf } => stage_uki(repo, boot, path, rel, leaf, karg, opts)?,
        _ => {
            let (conf, entry, files) = type1(source, osrel, karg, opts)?;
            stage_type1(repo, boot, &conf, &entry, &files)?
        }
    };

    // The image, its gc root, its state: all before the entry that names them.
    let stored = repo.ensure_object(image)?;
    if stored != *id {
        return Err(BootError::ObjectMismatch {
            path: "the bootable image".into(),
            what: "digest",
            expected: show(id),
            actual: show(&stored),
        });
    }
    repo.register_image(id)?;
    let gc_ref = deploy_ref(id);
    repo.set_image_ref(&gc_ref, id)?;
    let state_dir = create_deploy_dirs(opts.repo_parent, id)?;
    let written = plan.commit(boot)?;
    Ok((written, gc_ref, state_dir))
}

/// Boot files staged under temporary names, renamed into place by [`Plan::commit`] (dropped
/// instead, they are removed).
enum Plan {
    /// A BLS type 1 entry: its files, then the entry file.
    Type1 {
        entry_rel: RelPath,
        files: Vec<Staged>,
        entry: Staged,
    },
    /// A UKI.
    Uki(Staged),
}

impl Plan {
    /// Old entry out, files in, entry in; returns the paths written, the entry last.
    fn commit(self, boot: &BootDir) -> Result<Vec<PathBuf>, BootError> {
        match self {
            Self::Type1 {
                entry_rel,
                files,
                entry,
            } => {
                boot.remove(&entry_rel)?;
                let mut written = Vec::new();
                for s in files {
                    written.push(s.path());
                    s.commit()?;
                }
                written.push(entry.path());
                entry.commit()?;
                Ok(written)
            }
            Self::Uki(s) => {
                let written = s.path();
                s.commit()?;
                Ok(vec![written])
            }
        }
    }
}

/// Files of a type 1 entry: destination below the boot directory → (path in the image, file).
type Type1Files = BTreeMap<String, (String, Arc<Leaf>)>;

/// The entry file name, its text and its files, as composefs-rs lays them out.
fn type1(
    source: &BootSource,
    osrel: Option<&crate::osrel::OsRelease>,
    karg: &ComposefsKarg,
    opts: &PrepareOptions<'_>,
) -> Result<(String, BlsEntry, Type1Files), BootError> {
    let mut files = Type1Files::new();
    let (conf, mut entry) = match source {
        BootSource::Vmlinuz {
            kver,
            vmlinuz,
            initramfs,
        } => {
            let id = opts.entry_id.unwrap_or(kver);
            let mut lines = vec!["# File created by composefs".to_owned()];
            if let Some(title) = osrel.and_then(|o| o.pretty_name()).map(|t| one_line(&t)) {
                lines.push(format!("title {title}"));
            }
            let version = osrel
                .and_then(|o| o.version())
                .map(|v| one_line(&v))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| kver.clone());
            lines.push(format!("version {version}"));
            lines.push(format!("linux /{id}/vmlinuz"));
            lines.push(format!("initrd /{id}/initramfs.img"));
            files.insert(
                format!("/{id}/vmlinuz"),
                (
                    format!("/usr/lib/modules/{kver}/vmlinuz"),
                    Arc::clone(vmlinuz),
                ),
            );
            if let Some(i) = initramfs {
                files.insert(
                    format!("/{id}/initramfs.img"),
                    (
                        format!("/usr/lib/modules/{kver}/initramfs.img"),
                        Arc::clone(i),
                    ),
                );
            }
            (format!("{id}.conf"), BlsEntry { lines })
        }
        BootSource::Bls {
            name,
            entry,
            files: named,
        } => {
            let mut entry = entry.clone();
            let (conf, moved) = match opts.entry_id {
                Some(id) => (format!("{id}.conf"), entry.relocate(id)),
                None => (name.clone(), Vec::new()),
            };
            for (path, leaf) in named {
                let dest = moved
                    .iter()
                    .find(|(old, _)| old == path)
                    .map_or(path.clone(), |(_, new)| new.clone());
                if let Some((other, _)) = files.get(&dest)
                    && other != path
                {
                    return Err(BootError::BadPath {
                        path: dest,
                        by: format!("/boot/loader/entries/{name}"),
                        why: "two different files of the entry would be written there",
                    });
                }
                files.insert(dest, (path.clone(), Arc::clone(leaf)));
            }
            (conf, entry)
        }
        BootSource::Uki { path, .. } => {
            return Err(BootError::Uki {
                path: path.clone(),
                why: "a UKI is installed as it is, not as a type 1 entry".into(),
            });
        }
    };
    entry.adjust_cmdline(&karg.to_string(), opts.cmdline);
    Ok((conf, entry, files))
}

/// Stages every file of a type 1 entry and the entry itself.
fn stage_type1(
    repo: &Repository,
    boot: &BootDir,
    conf: &str,
    entry: &BlsEntry,
    files: &Type1Files,
) -> Result<Plan, BootError> {
    let entry_rel = RelPath::from_components(&["loader", "entries", conf], "the entry file name")?;
    let mut staged: Vec<Staged> = Vec::new();
    for (dest, (path, leaf)) in files {
        let rel = RelPath::parse(dest, "the boot entry")?;
        let file = regular(leaf).ok_or_else(|| BootError::NotRegular {
            path: path.clone(),
            kind: "not a regular file",
        })?;
        staged.push(boot.stage(&rel, |out| copy_verified(repo, path, file, out))?);
    }
    let text = entry.to_text();
    let entry_staged = boot.stage(&entry_rel, |out| {
        out.write_all(text.as_bytes())
            .map_err(BootError::io("writing", boot.join(&entry_rel)))
    })?;
    Ok(Plan::Type1 {
        entry_rel,
        files: staged,
        entry: entry_staged,
    })
}

/// Stages the UKI's copy and checks the copy's `.cmdline`.
fn stage_uki(
    repo: &Repository,
    boot: &BootDir,
    path: &str,
    rel: &[String],
    leaf: &Leaf,
    karg: &ComposefsKarg,
    opts: &PrepareOptions<'_>,
) -> Result<Plan, BootError> {
    let mut dest: Vec<&str> = vec!["EFI", "Linux"];
    let renamed = opts.entry_id.map(|id| format!("{id}.efi"));
    match (&renamed, rel.split_last()) {
        (Some(name), Some((_, dirs))) => {
            dest.extend(dirs.iter().map(String::as_str));
            dest.push(name);
        }
        _ => dest.extend(rel.iter().map(String::as_str)),
    }
    let rel = RelPath::from_components(&dest, path)?;
    let file = regular(leaf).ok_or_else(|| BootError::NotRegular {
        path: path.to_owned(),
        kind: "not a regular file",
    })?;
    let staged = boot.stage(&rel, |out| copy_verified(repo, path, file, out))?;
    // The check reads the copy that will be booted, not the repository's object.
    let cache = object::ReadCache::new(&staged.file);
    uki::check_cmdline(&cache, path, repo.algorithm(), &karg.id, karg.insecure)?;
    drop(cache);
    Ok(Plan::Uki(staged))
}

/// Reads a small file of the image (at most `limit` bytes), checked against its digest.
fn read_file(
    repo: &Repository,
    path: &str,
    file: &RegularFile,
    limit: u64,
) -> Result<Vec<u8>, BootError> {
    if file.size() > limit {
        return Err(BootError::TooLarge {
            path: path.to_owned(),
            size: file.size(),
            limit,
            what: "a file read into memory",
        });
    }
    let mut out = Vec::new();
    copy_verified(repo, path, file, &mut out)?;
    Ok(out)
}

/// Copies a file of the image to `out`: inline bytes, or the object's bytes, whose size and
/// fs-verity digest must be the ones the image records (so an insecure repository's replaced
/// object is never written to the boot directory).
fn copy_verified(
    repo: &Repository,
    path: &str,
    file: &RegularFile,
    out: &mut dyn Write,
) -> Result<(), BootError> {
    let io_err = |what| BootError::io(what, PathBuf::from(path));
    let ext = match file {
        RegularFile::Inline(data) => return out.write_all(data).map_err(io_err("writing")),
        RegularFile::External(ext) => ext,
    };
    let id = ext
        .digest
        .as_ref()
        .ok_or_else(|| BootError::ObjectMismatch {
            path: path.to_owned(),
            what: "digest",
            expected: "an object digest".into(),
            actual: "none recorded".into(),
        })?;
    let mut src: File = repo.open_object(id)?;
    let mut hasher = FsVerityHasher::new(repo.algorithm());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading the object of")(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        if hasher.size() > ext.size {
            break;
        }
        out.write_all(chunk).map_err(io_err("copying"))?;
    }
    if hasher.size() != ext.size {
        return Err(BootError::ObjectMismatch {
            path: path.to_owned(),
            what: "size",
            expected: ext.size.to_string(),
            actual: if hasher.size() > ext.size {
                format!("more than {}", ext.size)
            } else {
                hasher.size().to_string()
            },
        });
    }
    let actual = hasher.finalize();
    if actual != *id {
        return Err(BootError::ObjectMismatch {
            path: path.to_owned(),
            what: "digest",
            expected: show(id),
            actual: show(&actual),
        });
    }
    Ok(())
}
