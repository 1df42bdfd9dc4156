//! Which images are mounted right now, so that gc keeps them.
//!
//! [`crate::mount`] gives every overlay it makes the source `composefs:<image id hex>` (what
//! `findmnt` shows in its SOURCE column): the name composefs-rs gives its mounts and bootc
//! checks on a booted root. The hex's length tells the algorithm. The source of older cfs
//! mounts, `cfs:<alg>:<image id hex>`, is still recognised. The kernel keeps no other trace of which image a
//! mount serves: the EROFS mount is detached and overlayfs shows its layers as
//! `/proc/self/fd/N`. [`mounted_images`] reads the mount table of every process
//! (`/proc/PID/mountinfo`), once per mount namespace *and root*: a chrooted process sees only
//! the mounts under its root, so its table does not stand for the others of its namespace.
//! Only procfs files are opened, so a hostile user cannot make the scan block or open
//! anything else.
//!
//! Nothing is recorded on disk, so nothing goes stale when an image is unmounted with plain
//! `umount`. What this cannot see: a mount already unmounted (also lazily, `umount -l`) that
//! open files or a mount stacked on it still use; namespaces no process of which shows the
//! mount (no process in them, e.g. kept by a bind mount of their nsfs file, or only chrooted
//! ones); and processes this user may not inspect. An image counts as mounted when an overlay
//! names it, whichever repository the mount reads objects from: the scan keeps an image too
//! many rather than one too few.

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use cfs_repository::{HashAlgorithm, ObjectId};

/// The prefix of the overlay `source` that names a composefs image (cfs's and composefs-rs's).
pub const SOURCE_PREFIX: &str = "composefs:";
/// The prefix older cfs versions used (`cfs:sha256:<hex>`); still read.
const LEGACY_SOURCE_PREFIX: &str = "cfs:";

/// The overlay `source` of a mount of image `id`: `composefs:<hex>`.
pub fn overlay_source(id: &ObjectId) -> String {
    format!("{SOURCE_PREFIX}{}", id.to_hex())
}

/// The image an overlay `source` names (`composefs:<hex>` or the older `cfs:<alg>:<hex>`), if
/// it is one of `algorithm`.
pub fn source_image(source: &str, algorithm: HashAlgorithm) -> Option<ObjectId> {
    source
        .strip_prefix(SOURCE_PREFIX)
        .or_else(|| source.strip_prefix(LEGACY_SOURCE_PREFIX))
        .and_then(|s| ObjectId::parse_for(algorithm, s).ok())
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
        views_read: HashSet::new(),
        out: Vec::new(),
    };
    if let (Some(ns), Some(root)) = (&own_ns, root_of(&proc.join("self"))) {
        scan.views_read.insert((ns.clone(), root));
    }
    scan.take(&own_table, own_ns.as_deref());

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
            // view to its other processes.
            let Ok(table) = std::fs::read(dir.join("mountinfo")) else {
                continue;
            };
            scan.views_read.insert(view);
            scan.take(&table, Some(&ns));
        }
    }
    Ok(scan.out)
}

/// The state of one [`mounted_images`] scan.
struct Scan {
    algorithm: HashAlgorithm,
    own_ns: Option<String>,
    /// (namespace `mnt:[INODE]`, root directory) views read.
    views_read: HashSet<(String, PathBuf)>,
    out: Vec<MountedImage>,
}

impl Scan {
    /// Takes a table read in namespace `ns`.
    fn take(&mut self, table: &[u8], ns: Option<&str>) {
        let namespace = ns
            .filter(|ns| Some(*ns) != self.own_ns.as_deref())
            .map(str::to_owned);
        self.out
            .extend(parse_mountinfo(table, self.algorithm).into_iter().map(
                |(image, mountpoint)| MountedImage {
                    image,
                    mountpoint,
                    namespace: namespace.clone(),
                },
            ));
    }
}

/// `mnt:[INODE]` of a process (`/proc/PID` or `/proc/self`).
fn namespace_of(proc_dir: &Path) -> Option<String> {
    std::fs::read_link(proc_dir.join("ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A process's root directory, as a path (`readlink`, which asks no filesystem anything: a
/// `stat` could block on a FUSE root of a user's choosing).
fn root_of(proc_dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(proc_dir.join("root")).ok()
}

/// The (image, mount point) of every cfs overlay in a `mountinfo` table (proc(5)):
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
/// Lines that do not parse are skipped; they cannot be cfs mounts.
pub fn parse_mountinfo(table: &[u8], algorithm: HashAlgorithm) -> Vec<(ObjectId, PathBuf)> {
    let mut out = Vec::new();
    for line in table.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // The optional fields end at a lone "-", which never comes before field 6.
        let Some(dash) = fields.iter().skip(6).position(|f| *f == b"-") else {
            continue;
        };
        let dash = dash + 6;
        let (Some(mountpoint), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if *fstype != b"overlay" {
            continue;
        }
        let source = unescape(source);
        let Some(id) = std::str::from_utf8(&source)
            .ok()
            .and_then(|s| source_image(s, algorithm))
        else {
            continue;
        };
        out.push((
            id,
            PathBuf::from(std::ffi::OsString::from_vec(unescape(mountpoint))),
        ));
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
             96 29 0:54 / /mnt/legacy ro - overlay cfs:{id:#} ro\n\
             97 29 0:55 / /mnt/by-ref ro - overlay composefs:refs/x ro\n\
             garbage\n",
            overlay_source(&id),
            overlay_source(&other),
            overlay_source(&id),
        );
        let found = parse_mountinfo(table.as_bytes(), HashAlgorithm::Sha256);
        assert_eq!(
            found,
            vec![
                (id, PathBuf::from("/mnt/with space")),
                (id, PathBuf::from("/mnt/legacy"))
            ]
        );
        assert_eq!(overlay_source(&id), format!("composefs:{}", id.to_hex()));
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
