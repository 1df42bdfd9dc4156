//! Which images are mounted right now, so that gc keeps them.
//!
//! [`crate::mount`] gives every overlay it makes the source `cfs:<alg>:<image id>` (what
//! `findmnt` shows in its SOURCE column). The kernel keeps no other trace of which image a
//! mount serves: the EROFS mount is detached and overlayfs shows its layers as
//! `/proc/self/fd/N`. [`mounted_images`] reads the mount table of every mount namespace it can
//! see and returns the images named there:
//!
//! - every process's table (`/proc/PID/mountinfo`), once per namespace *and root*: a chrooted
//!   process sees only the mounts under its root, so its table does not stand for the others
//!   of its namespace;
//! - namespaces no process is in, kept alive by a bind mount of their `nsfs` file
//!   (`unshare --mount=FILE`, `ip netns`-style): entered with `setns` from a helper thread.
//!
//! Nothing is recorded on disk, so nothing goes stale when an image is unmounted with plain
//! `umount`. What this cannot see: a mount already unmounted (also lazily, `umount -l`) that
//! open files or a mount stacked on it still use, and namespaces of processes this user may not
//! inspect. An image counts as mounted when an overlay names it, whichever repository the mount
//! reads objects from: the scan keeps an image too many rather than one too few.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cfs_repository::{HashAlgorithm, ObjectId};

/// The prefix of the overlay `source` that marks a cfs mount.
const SOURCE_PREFIX: &str = "cfs:";

/// The overlay `source` of a mount of image `id`.
pub fn overlay_source(id: &ObjectId) -> String {
    format!("{SOURCE_PREFIX}{id:#}")
}

/// A mounted image, as one mount table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedImage {
    /// The image ID.
    pub image: ObjectId,
    /// Where it is mounted, as seen from the namespace's processes.
    pub mountpoint: PathBuf,
    /// The mount namespace (`mnt:[INODE]`), or `None` for the caller's own.
    pub namespace: Option<String>,
}

/// What one mount table says: cfs overlays, and bind mounts of mount namespaces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountTable {
    /// (image, mount point) of every cfs overlay.
    pub images: Vec<(ObjectId, PathBuf)>,
    /// (`mnt:[INODE]`, mount point) of every `nsfs` bind mount of a mount namespace.
    pub namespaces: Vec<(String, PathBuf)>,
}

/// Every image of `algorithm` mounted in any mount namespace this process can inspect.
///
/// Fails only if the caller's own mount table cannot be read (no `/proc`): then nothing can be
/// known, and gc must not guess. Other tables that cannot be read (processes that exit
/// meanwhile, or belong to other users when not root) are skipped.
pub fn mounted_images(algorithm: HashAlgorithm) -> io::Result<Vec<MountedImage>> {
    let proc = Path::new("/proc");
    let own_table = std::fs::read(proc.join("self/mountinfo")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading /proc/self/mountinfo (needed to find mounted images): {e}"),
        )
    })?;
    let own_ns = namespace_of(&proc.join("self"));
    let mut scan = Scan {
        algorithm,
        own_ns: own_ns.clone(),
        namespaces_read: HashSet::new(),
        views_read: HashSet::new(),
        pinned: Vec::new(),
        out: Vec::new(),
    };
    if let (Some(ns), Some(root)) = (&own_ns, root_of(&proc.join("self"))) {
        scan.namespaces_read.insert(ns.clone());
        scan.views_read.insert((ns.clone(), root));
    }
    scan.take(&own_table, own_ns.as_deref(), Path::new("/"));

    // Every process's view (namespace and root) not read yet.
    if let Ok(entries) = std::fs::read_dir(proc) {
        for entry in entries.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            let dir = entry.path();
            let (Some(ns), Some(root)) = (namespace_of(&dir), root_of(&dir)) else {
                continue;
            };
            let view = (ns.clone(), root);
            if scan.views_read.contains(&view) {
                continue;
            }
            // Marked as read only once read: a process that exits in between leaves the
            // namespace to its other processes.
            let Ok(table) = std::fs::read(dir.join("mountinfo")) else {
                continue;
            };
            scan.views_read.insert(view);
            scan.namespaces_read.insert(ns.clone());
            scan.take(&table, Some(&ns), &dir.join("root"));
        }
    }

    // Namespaces that only a bind mount of their nsfs file keeps alive.
    while let Some((ns, path)) = scan.pinned.pop() {
        if scan.namespaces_read.contains(&ns) {
            continue;
        }
        let Ok(table) = read_table_in_namespace(&path) else {
            continue;
        };
        scan.namespaces_read.insert(ns.clone());
        // Its paths are relative to its own root, which this process cannot name, so
        // namespaces pinned inside it are not followed further.
        let images = parse_mountinfo(&table, algorithm).images;
        scan.found(images, Some(&ns));
    }
    Ok(scan.out)
}

/// The state of one [`mounted_images`] scan.
struct Scan {
    algorithm: HashAlgorithm,
    own_ns: Option<String>,
    /// Namespaces read (`mnt:[INODE]`), and (namespace, root device and inode) views read.
    namespaces_read: HashSet<String>,
    views_read: HashSet<(String, (u64, u64))>,
    /// Bind-mounted namespaces seen: (`mnt:[INODE]`, a path that opens it from here).
    pinned: Vec<(String, PathBuf)>,
    out: Vec<MountedImage>,
}

impl Scan {
    /// Takes a table read in namespace `ns`, whose paths start at `base` from here.
    fn take(&mut self, table: &[u8], ns: Option<&str>, base: &Path) {
        let table = parse_mountinfo(table, self.algorithm);
        self.found(table.images, ns);
        for (pinned_ns, at) in table.namespaces {
            let rel = at.strip_prefix("/").unwrap_or(&at);
            self.pinned.push((pinned_ns, base.join(rel)));
        }
    }

    fn found(&mut self, images: Vec<(ObjectId, PathBuf)>, ns: Option<&str>) {
        let namespace = ns
            .filter(|ns| Some(*ns) != self.own_ns.as_deref())
            .map(str::to_owned);
        self.out
            .extend(images.into_iter().map(|(image, mountpoint)| MountedImage {
                image,
                mountpoint,
                namespace: namespace.clone(),
            }));
    }
}

/// `mnt:[INODE]` of a process (`/proc/PID` or `/proc/self`).
fn namespace_of(proc_dir: &Path) -> Option<String> {
    std::fs::read_link(proc_dir.join("ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// (device, inode) of a process's root directory.
fn root_of(proc_dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(proc_dir.join("root"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Reads the mount table of the mount namespace whose `nsfs` file is at `path`, from a
/// thread that enters it (`setns` needs a thread that shares no filesystem context).
fn read_table_in_namespace(path: &Path) -> io::Result<Vec<u8>> {
    let ns = std::fs::File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: only CLONE_FS (root, cwd, umask) is unshared, and only for this thread,
            // which ends right after; file descriptors stay shared.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Mount),
            )?;
            std::fs::read("/proc/thread-self/mountinfo")
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
}

/// What a `mountinfo` table (proc(5)) says:
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
/// Lines that do not parse are skipped; they cannot be cfs mounts.
pub fn parse_mountinfo(table: &[u8], algorithm: HashAlgorithm) -> MountTable {
    let mut out = MountTable::default();
    for line in table.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // The optional fields end at a lone "-", which never comes before field 6.
        let Some(dash) = fields.iter().skip(6).position(|f| *f == b"-") else {
            continue;
        };
        let dash = dash + 6;
        let (Some(root), Some(mountpoint), Some(fstype), Some(source)) = (
            fields.get(3),
            fields.get(4),
            fields.get(dash + 1),
            fields.get(dash + 2),
        ) else {
            continue;
        };
        let mountpoint = || PathBuf::from(std::ffi::OsString::from_vec(unescape(mountpoint)));
        match *fstype {
            b"overlay" => {
                let source = unescape(source);
                if let Some(id) = std::str::from_utf8(&source)
                    .ok()
                    .and_then(|s| s.strip_prefix(SOURCE_PREFIX))
                    .and_then(|s| ObjectId::parse_for(algorithm, s).ok())
                {
                    out.images.push((id, mountpoint()));
                }
            }
            b"nsfs" => {
                if let Ok(ns) = std::str::from_utf8(root)
                    && ns.starts_with("mnt:[")
                {
                    out.namespaces.push((ns.to_owned(), mountpoint()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cfs_overlays_only() {
        let id = ObjectId::from_bytes(HashAlgorithm::Sha256, &[0xab; 32]).expect("id");
        let other = ObjectId::from_bytes(HashAlgorithm::Sha512, &[0xcd; 64]).expect("id");
        let table = format!(
            "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n\
             90 29 0:50 / /mnt/with\\040space ro,relatime shared:40 master:3 - overlay {} ro,lowerdir+=/proc/self/fd/7\n\
             91 29 0:51 / /mnt/plain ro - overlay overlay ro,lowerdir=/a:/b\n\
             92 29 0:52 / /mnt/other ro - overlay {} ro\n\
             93 29 0:53 / /mnt/fake ro - tmpfs {} rw\n\
             94 29 0:4 mnt:[4026532301] /run/pin/ns rw - nsfs nsfs rw\n\
             95 29 0:4 net:[4026532399] /run/netns/x rw - nsfs nsfs rw\n\
             garbage\n",
            overlay_source(&id),
            overlay_source(&other),
            overlay_source(&id),
        );
        let found = parse_mountinfo(table.as_bytes(), HashAlgorithm::Sha256);
        assert_eq!(found.images, vec![(id, PathBuf::from("/mnt/with space"))]);
        assert_eq!(
            found.namespaces,
            vec![("mnt:[4026532301]".to_owned(), PathBuf::from("/run/pin/ns"))]
        );
    }

    #[test]
    fn unescapes_octal_only_where_valid() {
        assert_eq!(unescape(br"a\040b\134c"), b"a b\\c");
        assert_eq!(unescape(br"a\09b\"), br"a\09b\");
        assert_eq!(unescape(br"\777"), br"\777");
    }

    #[test]
    fn reads_this_machines_tables() {
        // Whatever is mounted here, the scan of the real /proc must work.
        mounted_images(HashAlgorithm::Sha256).expect("scan");
    }
}
