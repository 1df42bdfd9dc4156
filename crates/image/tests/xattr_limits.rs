//! xattr limits, enforced the same way for every way a tree is built (a tree made by a library
//! caller, a dumpfile, a directory scan) and by the EROFS writer for every inode: names up to
//! 255 bytes, values up to 65535, the per-inode budget of 32767 (also for small files stored
//! inline); what exceeds them is refused naming the file and the limit, never truncated.
//! (Tar layers: `tests/hostile_xattr.rs`.)

use std::sync::Arc;

use cfs_image::erofs;
use cfs_image::scan::{ObjectStore, ScanOptions, scan};
use cfs_image::tree::{FileSystem, Inode, Leaf, LeafContent, RegularFile, Stat};
use cfs_image::{FormatOptions, dumpfile};
use cfs_repository::HashAlgorithm;

/// A tree with one small inline file `/f` carrying `xattrs`.
fn tree_with(xattrs: &[(Vec<u8>, Vec<u8>)]) -> FileSystem {
    let mut stat = Stat::with_mode(0o644);
    for (k, v) in xattrs {
        stat.xattrs
            .insert(k.clone().into_boxed_slice(), v.clone().into_boxed_slice());
    }
    let mut fs = FileSystem::new(Stat::with_mode(0o755));
    fs.root
        .insert(
            "f",
            Inode::Leaf(Arc::new(Leaf {
                stat,
                content: LeafContent::Regular(RegularFile::Inline(vec![b'd'; 100].into())),
            })),
        )
        .expect("insert");
    fs
}

fn user(name_len: usize) -> Vec<u8> {
    let mut n = b"user.".to_vec();
    n.resize(name_len, b'n');
    n
}

/// Writes `fs` (both format versions); Ok means it also read back identically.
fn write(fs: &FileSystem) -> Result<(), String> {
    for opts in [FormatOptions::default(), FormatOptions::exactly(0)] {
        let image = erofs::write(fs, opts).map_err(|e| e.to_string())?;
        let back = erofs::read(&image).expect("read back");
        assert!(back == *fs, "the image does not read back as the tree");
    }
    Ok(())
}

fn refused(fs: &FileSystem, needle: &str) {
    let e = write(fs).expect_err("must be refused");
    assert!(e.contains("/f") && e.contains(needle), "{e}");
}

#[test]
fn the_writer_refuses_names_values_and_budgets_beyond_the_limits() {
    // Full name 255 bytes (suffix 250): fine. 256, and suffixes of 256+ bytes: refused.
    assert_eq!(write(&tree_with(&[(user(255), b"v".to_vec())])), Ok(()));
    refused(&tree_with(&[(user(256), b"v".to_vec())]), "XATTR_NAME_MAX");
    refused(
        &tree_with(&[(user(5 + 300), b"v".to_vec())]),
        "XATTR_NAME_MAX",
    );
    // A layer's own trusted.overlay.X is escaped to trusted.overlay.overlay.X (8 bytes more):
    // at 255 bytes it still fits the entry header and reads back as it was.
    let mut own = b"trusted.overlay.".to_vec();
    own.resize(255, b'o');
    assert_eq!(write(&tree_with(&[(own, b"v".to_vec())])), Ok(()));

    // Values: 65535 fits the header field but not the per-inode budget; 65536/65537 neither.
    for len in [65535, 65536, 65537] {
        let needle = if len > 65535 { "65535" } else { "budget" };
        refused(&tree_with(&[(b"user.v".to_vec(), vec![b'x'; len])]), needle);
    }
    // Many small xattrs adding up beyond the budget.
    let many: Vec<_> = (0..2000)
        .map(|i| (format!("user.{i:05}").into_bytes(), vec![b'x'; 10]))
        .collect();
    refused(&tree_with(&many), "budget");

    // A small inline file with xattrs exactly at the budget: 12 + (7 + 8 + n) = 32767 is
    // written, its inline tail still within one block, and reads back; one byte more is not.
    let at_budget = 32767 - 12 - 7 - 8;
    assert_eq!(
        write(&tree_with(&[(b"user.big".to_vec(), vec![b'x'; at_budget])])),
        Ok(())
    );
    refused(
        &tree_with(&[(b"user.big".to_vec(), vec![b'x'; at_budget + 1])]),
        "budget",
    );
}

/// The hole this closes: the entry header stored `suffix.len() as u8`, so a 260-byte suffix
/// was recorded as 4 bytes long while all 260 were written, and the reader (and the kernel)
/// parsed the rest as entries of their own: here a forged `trusted.overlay.metacopy` and
/// `trusted.overlay.redirect` on an inline file, which overlayfs would have served from
/// another object.
#[test]
fn a_truncated_entry_header_cannot_forge_overlay_xattrs() {
    let mut suffix = b"AAAA".to_vec();
    let forged = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(&[name.len() as u8, 4, value.len() as u8, 0]);
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(b'p');
        }
    };
    forged(&mut suffix, b"overlay.metacopy", b"");
    forged(&mut suffix, b"overlay.redirect", b"/ab/cdef");
    let filler = 260 - suffix.len() - 4;
    suffix.extend_from_slice(&[filler as u8, 1, 0, 0]);
    suffix.resize(260, b'f');
    let mut name = b"user.".to_vec();
    name.extend_from_slice(&suffix);
    let fs = tree_with(&[(name, Vec::new())]);
    let e = erofs::write(&fs, FormatOptions::default()).expect_err("refused");
    assert!(e.to_string().starts_with("/f: xattr user.AAAA"), "{e}");
    // Without the NUL bytes (which no input can carry), the length limit refuses it.
    let mut name = b"user.".to_vec();
    name.extend(suffix.iter().map(|&b| if b == 0 { 1 } else { b }));
    let e = erofs::write(&tree_with(&[(name, Vec::new())]), FormatOptions::default())
        .expect_err("refused");
    assert!(e.to_string().contains("XATTR_NAME_MAX"), "{e}");
}

#[test]
fn device_numbers_beyond_32_bits_are_refused_not_truncated() {
    let mut fs = FileSystem::new(Stat::with_mode(0o755));
    fs.root
        .insert(
            "dev",
            Inode::Leaf(Arc::new(Leaf {
                stat: Stat::with_mode(0o600),
                content: LeafContent::CharDevice(1 << 32 | 5),
            })),
        )
        .expect("insert");
    let e = erofs::write(&fs, FormatOptions::default()).expect_err("refused");
    assert!(
        e.to_string().contains("/dev") && e.to_string().contains("rdev"),
        "{e}"
    );
}

#[test]
fn dumpfile_refusals_name_the_file_and_the_limit() {
    let root = "/ 4096 40755 2 0 0 0 0.0 - - -\n";
    let long = "n".repeat(251);
    for (xattr, needle) in [
        (format!("user.{long}=v"), "XATTR_NAME_MAX"),
        (format!("user.v={}", "x".repeat(65536)), "65535"),
        (format!("user.v={}", "x".repeat(40000)), "budget"),
    ] {
        let dump = format!("{root}/file 0 100644 1 0 0 0 0.0 - - - {xattr}\n");
        let e = dumpfile::parse(dump.as_bytes()).expect_err(needle);
        let e = e.to_string();
        assert!(e.contains("/file") && e.contains(needle), "{e}");
    }
    // At the limits: accepted, written, read back.
    let ok = format!(
        "{root}/file 0 100644 1 0 0 0 0.0 - - - user.{}=v\n",
        "n".repeat(250)
    );
    let fs = dumpfile::parse(ok.as_bytes()).expect("255-byte name");
    let image = erofs::write(&fs, FormatOptions::default()).expect("write");
    assert!(erofs::read(&image).expect("read") == fs);
}

/// Sets an xattr with setxattr(2); false when this filesystem or user cannot.
fn setxattr(path: &std::path::Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

#[test]
fn a_scanned_directory_meets_the_same_limits() {
    // tmpfs keeps values up to 64 KiB (ext4 only a block's worth).
    let base = std::path::Path::new("/dev/shm");
    if !base.is_dir() {
        eprintln!("skipping: no tmpfs at /dev/shm");
        return;
    }
    let tmp = tempfile::tempdir_in(base).expect("tmp");
    let file = tmp.path().join("f");
    std::fs::write(&file, b"small").expect("write");
    let store = ObjectStore::HashOnly(HashAlgorithm::Sha256);
    if !setxattr(&file, "user.big", &vec![b'x'; 40000]) {
        eprintln!("skipping: this filesystem refuses a 40000-byte user xattr");
        return;
    }
    let e = scan(tmp.path(), store, ScanOptions::default()).expect_err("over budget");
    let e = e.to_string();
    assert!(e.contains("/f") && e.contains("budget"), "{e}");

    // Many xattrs that only together exceed the budget.
    rustix::fs::lremovexattr(&file, "user.big").expect("remove");
    for i in 0..400 {
        assert!(setxattr(&file, &format!("user.{i:04}"), &[b'y'; 80]));
    }
    let e = scan(tmp.path(), store, ScanOptions::default()).expect_err("over budget");
    assert!(e.to_string().contains("budget"), "{e}");

    // Within the limits: scanned, written, read back.
    for i in 0..400 {
        rustix::fs::lremovexattr(&file, format!("user.{i:04}")).expect("remove");
    }
    assert!(setxattr(&file, &format!("user.{}", "n".repeat(250)), b"v"));
    let fs = scan(tmp.path(), store, ScanOptions::default()).expect("scan");
    let image = erofs::write(&fs, FormatOptions::default()).expect("write");
    assert!(erofs::read(&image).expect("read") == fs);
}

/// Found by the `tar_erofs` fuzz target: a file with data whose layer gave it its own
/// `trusted.overlay.whiteout` xattr (stored escaped, as mkcomposefs does) was read back as a
/// whiteout, so the object its data lives in was missing from the image's objects and gc
/// could have removed it from under a mounted image.
#[test]
fn a_file_with_its_own_whiteout_xattr_keeps_its_object() {
    use cfs_image::tree::ExternalFile;
    use cfs_repository::FsVerityHasher;
    let id = FsVerityHasher::digest(HashAlgorithm::Sha256, &[7u8; 100]);
    let mut stat = Stat::with_mode(0o644);
    stat.xattrs
        .insert(b"trusted.overlay.whiteout"[..].into(), b""[..].into());
    let mut fs = FileSystem::new(Stat::with_mode(0o755));
    fs.root
        .insert(
            "f",
            Inode::Leaf(Arc::new(Leaf {
                stat,
                content: LeafContent::Regular(RegularFile::External(Box::new(
                    ExternalFile::object(id, 100),
                ))),
            })),
        )
        .expect("insert");
    let image = erofs::write(&fs, FormatOptions::default()).expect("write");
    assert_eq!(
        erofs::referenced_objects(&image).expect("objects"),
        vec![id]
    );
    assert!(erofs::read(&image).expect("read") == fs);
}
