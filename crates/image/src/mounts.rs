//! Which images are mounted right now, so that gc keeps them.
//!
//! [`crate::mount`] gives every overlay it makes the source `cfs:<alg>:<image id>` (what
//! `findmnt` shows in its SOURCE column). The kernel keeps no other trace of which image a
//! mount serves: the EROFS mount is detached and overlayfs shows its layers as
//! `/proc/self/fd/N`. [`mounted_images`] reads the mount tables of every mount namespace it can
//! see (`/proc/PID/mountinfo`, one process per namespace, so mounts made inside a container or
//! by `unshare -m` count too) and returns the images named there. Nothing is recorded on disk,
//! so nothing goes stale when an image is unmounted with plain `umount`.
//!
//! An image counts as mounted when an overlay names it, whichever repository the mount reads
//! objects from: the scan keeps an image too many rather than one too few.

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStringExt;
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

/// Every image of `algorithm` mounted in any mount namespace this process can inspect.
///
/// Fails only if the caller's own mount table cannot be read (no `/proc`): then nothing can be
/// known, and gc must not guess. Other processes' namespaces that cannot be read (processes
/// that exit meanwhile, or belong to other users when not root) are skipped.
pub fn mounted_images(algorithm: HashAlgorithm) -> io::Result<Vec<MountedImage>> {
    let proc = Path::new("/proc");
    let own_ns = std::fs::read_link(proc.join("self/ns/mnt")).ok();
    let own_table = std::fs::read(proc.join("self/mountinfo")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading /proc/self/mountinfo (needed to find mounted images): {e}"),
        )
    })?;
    let mut out: Vec<MountedImage> = parse_mountinfo(&own_table, algorithm)
        .into_iter()
        .map(|(image, mountpoint)| MountedImage {
            image,
            mountpoint,
            namespace: None,
        })
        .collect();

    let mut seen: HashSet<PathBuf> = own_ns.into_iter().collect();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let Ok(ns) = std::fs::read_link(dir.join("ns/mnt")) else {
            continue;
        };
        if !seen.insert(ns.clone()) {
            continue;
        }
        let Ok(table) = std::fs::read(dir.join("mountinfo")) else {
            continue;
        };
        let namespace = ns.to_string_lossy().into_owned();
        out.extend(
            parse_mountinfo(&table, algorithm)
                .into_iter()
                .map(|(image, mountpoint)| MountedImage {
                    image,
                    mountpoint,
                    namespace: Some(namespace.clone()),
                }),
        );
    }
    Ok(out)
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
            .and_then(|s| s.strip_prefix(SOURCE_PREFIX))
            .and_then(|s| ObjectId::parse_for(algorithm, s).ok())
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
             garbage\n",
            overlay_source(&id),
            overlay_source(&other),
            overlay_source(&id),
        );
        let found = parse_mountinfo(table.as_bytes(), HashAlgorithm::Sha256);
        assert_eq!(found, vec![(id, PathBuf::from("/mnt/with space"))]);
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
