//! Finding the kernel in an image tree the way composefs-rs 0.9.4 does (its
//! `get_boot_resources`), in its order: the BLS entries in `/boot/loader/entries/*.conf` (by
//! name), then the UKIs (`*.efi`) under `/boot/EFI/Linux` and `/usr/lib/modules/<kver>/`
//! (depth first, by name), then `/usr/lib/modules/<kver>/vmlinuz` with its `initramfs.img`
//! (by kernel version). `prepare-boot` uses the first; docs/boot.md, "Boot entries".
//!
//! Differences, all refusals or omissions of things that are not kernels: UKI add-ons
//! (`*.addon.efi`, `/boot/loader/addons`) are not candidates; a `vmlinuz` or
//! `initramfs.img` that is not a regular file (a symlink, perhaps out of the tree) is an error
//! where composefs-rs skips it silently; Android boot images are not supported.
//!
//! This works on the [`FileSystem`] alone; the contents of the few small text files it reads
//! (BLS entries, os-release) come through a callback, so the repository stays outside.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use cfs_image::{Directory, FileSystem, Inode, Leaf, LeafContent, RegularFile};

use crate::bls::{BlsEntry, check_entry_id};
use crate::error::BootError;
use crate::osrel::OsRelease;

/// The largest BLS entry or os-release file read into memory.
pub const TEXT_MAX: u64 = 64 * 1024;
/// How many symlinks resolving os-release may follow (the kernel's limit).
const SYMLINK_HOPS: usize = 40;

/// Reads a regular file of the image: `(path in the image, file, limit)` → its bytes.
pub type ReadFile<'a> = dyn FnMut(&str, &RegularFile, u64) -> Result<Vec<u8>, BootError> + 'a;

/// A kernel found in the image.
#[derive(Debug, Clone)]
pub enum BootSource {
    /// A BLS type 1 entry shipped in `/boot/loader/entries`.
    Bls {
        /// Its file name (`NAME.conf`).
        name: String,
        /// Its text.
        entry: BlsEntry,
        /// The files it names (`linux`, `initrd`, `efi` values, paths in the image).
        files: Vec<(String, Arc<Leaf>)>,
    },
    /// A UKI.
    Uki {
        /// Its path in the image.
        path: String,
        /// Its path below the directory searched (`/boot/EFI/Linux` or
        /// `/usr/lib/modules/<kver>`): where it goes below `EFI/Linux/` of the boot directory.
        rel: Vec<String>,
        /// The file.
        leaf: Arc<Leaf>,
    },
    /// `/usr/lib/modules/<kver>/vmlinuz` (and its `initramfs.img`).
    Vmlinuz {
        /// The kernel version (the directory name).
        kver: String,
        /// The kernel.
        vmlinuz: Arc<Leaf>,
        /// `initramfs.img` beside it, if any.
        initramfs: Option<Arc<Leaf>>,
    },
}

impl BootSource {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Bls { name, .. } => format!("BLS entry /boot/loader/entries/{name}"),
            Self::Uki { path, .. } => format!("UKI {path}"),
            Self::Vmlinuz { kver, .. } => format!("kernel /usr/lib/modules/{kver}/vmlinuz"),
        }
    }
}

/// What kind of inode this is, for messages.
fn kind(inode: &Inode) -> &'static str {
    match inode {
        Inode::Directory(_) => "a directory",
        Inode::Leaf(l) => match l.content {
            LeafContent::Regular(_) => "a regular file",
            LeafContent::Symlink(_) => "a symlink",
            LeafContent::CharDevice(_) => "a character device",
            LeafContent::BlockDevice(_) => "a block device",
            LeafContent::Fifo => "a FIFO",
            LeafContent::Socket => "a socket",
        },
    }
}

/// The components of an absolute path in the image: no empty, `.` or `..` components.
fn components<'p>(path: &'p str, by: &str) -> Result<Vec<&'p str>, BootError> {
    let bad = |why| BootError::BadPath {
        path: path.to_owned(),
        by: by.to_owned(),
        why,
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("not an absolute path in the image"))?;
    let comps: Vec<&str> = rest.split('/').collect();
    for c in &comps {
        if c.is_empty() || *c == "." || *c == ".." {
            return Err(bad("has an empty, '.' or '..' component"));
        }
    }
    Ok(comps)
}

/// The inode at an absolute path, through directories only (a symlink on the way is an
/// error, never followed); `None` if absent.
fn lookup<'a>(fs: &'a FileSystem, path: &str, by: &str) -> Result<Option<&'a Inode>, BootError> {
    let comps = components(path, by)?;
    let mut dir: &Directory = &fs.root;
    let mut walked = String::new();
    for (i, c) in comps.iter().enumerate() {
        walked.push('/');
        walked.push_str(c);
        let Some(inode) = dir.get(OsStr::new(c)) else {
            return Ok(None);
        };
        if i + 1 == comps.len() {
            return Ok(Some(inode));
        }
        match inode {
            Inode::Directory(d) => dir = d,
            other => {
                return Err(BootError::NotRegular {
                    path: walked,
                    kind: kind(other),
                });
            }
        }
    }
    Ok(None)
}

/// The directory at `path`, `None` if absent; an error if something else is there.
fn lookup_dir<'a>(fs: &'a FileSystem, path: &str) -> Result<Option<&'a Directory>, BootError> {
    match lookup(fs, path, "the boot file search")? {
        None => Ok(None),
        Some(Inode::Directory(d)) => Ok(Some(d)),
        Some(other) => Err(BootError::NotRegular {
            path: path.to_owned(),
            kind: kind(other),
        }),
    }
}

/// The regular file at `path`, named by `by`: absent or anything else is an error.
fn regular_file(fs: &FileSystem, path: &str, by: &str) -> Result<Arc<Leaf>, BootError> {
    match lookup(fs, path, by)? {
        None => Err(BootError::Missing {
            path: path.to_owned(),
            by: by.to_owned(),
        }),
        Some(Inode::Leaf(l)) if matches!(l.content, LeafContent::Regular(_)) => Ok(Arc::clone(l)),
        Some(other) => Err(BootError::NotRegular {
            path: path.to_owned(),
            kind: kind(other),
        }),
    }
}

/// The regular file's content of a leaf known to be regular.
pub fn regular(leaf: &Leaf) -> Option<&RegularFile> {
    match &leaf.content {
        LeafContent::Regular(f) => Some(f),
        _ => None,
    }
}

/// A name of the image as UTF-8 (the boot directory's names are written from it).
fn utf8<'a>(name: &'a OsStr, dir: &str) -> Result<&'a str, BootError> {
    name.to_str().ok_or_else(|| BootError::BadPath {
        path: format!("{dir}/{}", name.to_string_lossy()),
        by: "the boot file search".into(),
        why: "not UTF-8",
    })
}

/// Reads a text file of the image (at most [`TEXT_MAX`] bytes, UTF-8).
fn read_text(read: &mut ReadFile<'_>, path: &str, leaf: &Leaf) -> Result<String, BootError> {
    let file = regular(leaf).ok_or_else(|| BootError::NotRegular {
        path: path.to_owned(),
        kind: "not a regular file",
    })?;
    if file.size() > TEXT_MAX {
        return Err(BootError::TooLarge {
            path: path.to_owned(),
            size: file.size(),
            limit: TEXT_MAX,
            what: "a text file",
        });
    }
    let bytes = read(path, file, TEXT_MAX)?;
    String::from_utf8(bytes).map_err(|_| BootError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// Every kernel the image offers, in composefs-rs's order (the first is the one to use).
pub fn find_boot_sources(
    fs: &FileSystem,
    read: &mut ReadFile<'_>,
) -> Result<Vec<BootSource>, BootError> {
    let mut out = Vec::new();
    // 1. BLS entries.
    if let Some(entries) = lookup_dir(fs, "/boot/loader/entries")? {
        for (name, inode) in entries.entries() {
            if !name.as_bytes().ends_with(b".conf") {
                continue;
            }
            let name = utf8(name, "/boot/loader/entries")?;
            let path = format!("/boot/loader/entries/{name}");
            let leaf = match inode {
                Inode::Leaf(l) if matches!(l.content, LeafContent::Regular(_)) => l,
                other => {
                    return Err(BootError::NotRegular {
                        path,
                        kind: kind(other),
                    });
                }
            };
            let entry = BlsEntry::parse(&read_text(read, &path, leaf)?);
            let mut files = Vec::new();
            for f in entry.files() {
                let leaf = regular_file(fs, &f, &path)?;
                files.push((f, leaf));
            }
            out.push(BootSource::Bls {
                name: name.to_owned(),
                entry,
                files,
            });
        }
    }
    // 2. UKIs.
    if let Some(dir) = lookup_dir(fs, "/boot/EFI/Linux")? {
        find_ukis(dir, "/boot/EFI/Linux", &mut out)?;
    }
    let modules = lookup_dir(fs, "/usr/lib/modules")?;
    if let Some(modules) = modules {
        for (kver, inode) in modules.entries() {
            if let Inode::Directory(d) = inode {
                let kver = utf8(kver, "/usr/lib/modules")?;
                find_ukis(d, &format!("/usr/lib/modules/{kver}"), &mut out)?;
            }
        }
    }
    // 3. /usr/lib/modules/<kver>/vmlinuz.
    if let Some(modules) = modules {
        for (kver, inode) in modules.entries() {
            let Inode::Directory(d) = inode else {
                continue;
            };
            let Some(vmlinuz) = d.get(OsStr::new("vmlinuz")) else {
                continue;
            };
            let kver = utf8(kver, "/usr/lib/modules")?;
            let file = |name: &str, inode: &Inode| match inode {
                Inode::Leaf(l) if matches!(l.content, LeafContent::Regular(_)) => Ok(Arc::clone(l)),
                other => Err(BootError::NotRegular {
                    path: format!("/usr/lib/modules/{kver}/{name}"),
                    kind: kind(other),
                }),
            };
            let vmlinuz = file("vmlinuz", vmlinuz)?;
            let initramfs = d
                .get(OsStr::new("initramfs.img"))
                .map(|i| file("initramfs.img", i))
                .transpose()?;
            out.push(BootSource::Vmlinuz {
                kver: kver.to_owned(),
                vmlinuz,
                initramfs,
            });
        }
    }
    Ok(out)
}

/// The UKIs below `dir` (depth first, by name; add-ons skipped).
fn find_ukis(dir: &Directory, base: &str, out: &mut Vec<BootSource>) -> Result<(), BootError> {
    // (directory, its path below `base`), visited in name order.
    let mut stack: Vec<(&Directory, Vec<String>)> = vec![(dir, Vec::new())];
    let mut found = Vec::new();
    while let Some((d, rel)) = stack.pop() {
        let mut subdirs = Vec::new();
        for (name, inode) in d.entries() {
            let mut path = rel.clone();
            if let Inode::Directory(sub) = inode {
                path.push(utf8(name, base)?.to_owned());
                subdirs.push((sub.as_ref(), path));
                continue;
            }
            let bytes = name.as_bytes();
            if !bytes.ends_with(b".efi") || bytes.ends_with(b".addon.efi") {
                continue;
            }
            path.push(utf8(name, base)?.to_owned());
            let full = format!("{base}/{}", path.join("/"));
            let leaf = match inode {
                Inode::Leaf(l) if matches!(l.content, LeafContent::Regular(_)) => Arc::clone(l),
                other => {
                    return Err(BootError::NotRegular {
                        path: full,
                        kind: kind(other),
                    });
                }
            };
            found.push((
                path.clone(),
                BootSource::Uki {
                    path: full,
                    rel: path,
                    leaf,
                },
            ));
        }
        // Depth first in name order: push subdirectories reversed.
        stack.extend(subdirs.into_iter().rev());
    }
    // Files and directories interleave by name in composefs-rs's walk: sort by path.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(found.into_iter().map(|(_, s)| s));
    Ok(())
}

/// The image's os-release: `/etc/os-release`, else `/usr/lib/os-release` (os-release(5)),
/// symlinks followed inside the image (absolute targets from the image's root, `..` never
/// above it); `None` if neither exists.
pub fn os_release(
    fs: &FileSystem,
    read: &mut ReadFile<'_>,
) -> Result<Option<OsRelease>, BootError> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(leaf) = resolve(fs, path)? {
            return Ok(Some(OsRelease::parse(&read_text(read, path, &leaf)?)));
        }
    }
    Ok(None)
}

/// Resolves `path` in the image, following symlinks as the kernel would in a chroot of it;
/// `Ok(None)` if it does not exist; the leaf it names otherwise (a directory is an error).
fn resolve(fs: &FileSystem, path: &str) -> Result<Option<Arc<Leaf>>, BootError> {
    let mut dirs: Vec<&Directory> = vec![&fs.root];
    let mut todo: Vec<Vec<u8>> = path
        .as_bytes()
        .split(|&b| b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            if dirs.len() > 1 {
                dirs.pop();
            }
            continue;
        }
        let Some(dir) = dirs.last() else {
            return Ok(None);
        };
        let last = todo.iter().all(|c| c.is_empty() || c == b".");
        match dir.get(OsStr::from_bytes(&c)) {
            None => return Ok(None),
            Some(Inode::Directory(d)) => {
                if last {
                    return Err(BootError::NotRegular {
                        path: path.to_owned(),
                        kind: "a directory",
                    });
                }
                dirs.push(d);
            }
            Some(Inode::Leaf(l)) => match &l.content {
                LeafContent::Symlink(target) => {
                    hops += 1;
                    if hops > SYMLINK_HOPS {
                        return Err(BootError::BadPath {
                            path: path.to_owned(),
                            by: "os-release lookup".into(),
                            why: "more than 40 symlinks (a loop?)",
                        });
                    }
                    let t = target.as_bytes();
                    if t.starts_with(b"/") {
                        dirs.truncate(1);
                    }
                    todo.extend(t.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
                _ if last => return Ok(Some(Arc::clone(l))),
                _ => return Ok(None),
            },
        }
    }
    Err(BootError::NotRegular {
        path: path.to_owned(),
        kind: "a directory",
    })
}

/// Checks the names `source` gives the boot directory when no `--entry-id` is given: the
/// BLS entry's file name, the kernel version.
pub fn check_default_id(source: &BootSource) -> Result<(), BootError> {
    match source {
        BootSource::Bls { name, .. } => {
            let stem = name.strip_suffix(".conf").unwrap_or(name);
            check_entry_id(stem, "the image's BLS entry file name")
        }
        BootSource::Vmlinuz { kver, .. } => check_entry_id(kver, "the kernel version"),
        BootSource::Uki { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests;
