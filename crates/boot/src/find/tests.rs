//! Unit tests of kernel discovery in an image tree: composefs-rs's order, refusals of
//! non-regular boot files and paths with `..`, os-release through symlinks, size bounds.

use std::ffi::OsString;
use std::sync::Arc;

use cfs_image::{Directory, FileSystem, Inode, Leaf, LeafContent, RegularFile, Stat};

use super::*;

fn file(data: &[u8]) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        stat: Stat::with_mode(0o644),
        content: LeafContent::Regular(RegularFile::Inline(data.into())),
    }))
}

fn symlink(target: &str) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        stat: Stat::with_mode(0o777),
        content: LeafContent::Symlink(OsString::from(target).into_boxed_os_str()),
    }))
}

/// Puts `inode` at `path`, creating directories.
fn put(fs: &mut FileSystem, path: &str, inode: Inode) {
    let comps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut dir: &mut Directory = &mut fs.root;
    for c in &comps[..comps.len() - 1] {
        if dir.get(OsStr::new(c)).is_none() {
            dir.insert(
                *c,
                Inode::Directory(Box::new(Directory::new(Stat::with_mode(0o755)))),
            )
            .expect("insert dir");
        }
        dir = match dir.get_mut(OsStr::new(c)) {
            Some(Inode::Directory(d)) => d,
            _ => panic!("{c} is not a directory"),
        };
    }
    dir.replace(*comps.last().expect("name"), inode)
        .expect("replace");
}

fn read_inline(_: &str, f: &RegularFile, _: u64) -> Result<Vec<u8>, BootError> {
    match f {
        RegularFile::Inline(d) => Ok(d.to_vec()),
        RegularFile::External(_) => panic!("external file in a unit test"),
    }
}

fn found(fs: &FileSystem) -> Result<Vec<String>, BootError> {
    Ok(find_boot_sources(fs, &mut read_inline)?
        .iter()
        .map(BootSource::describe)
        .collect())
}

#[test]
fn kernels_are_found_in_composefs_rs_order() {
    let mut fs = FileSystem::default();
    assert!(found(&fs).expect("empty").is_empty());
    put(&mut fs, "/usr/lib/modules/6.2/vmlinuz", file(b"k2"));
    put(&mut fs, "/usr/lib/modules/6.1/vmlinuz", file(b"k1"));
    put(&mut fs, "/usr/lib/modules/6.1/initramfs.img", file(b"i1"));
    put(&mut fs, "/usr/lib/modules/6.1/b.efi", file(b"MZ"));
    put(&mut fs, "/usr/lib/modules/6.1/x.addon.efi", file(b"MZ"));
    put(&mut fs, "/boot/EFI/Linux/z.efi", file(b"MZ"));
    put(&mut fs, "/boot/EFI/Linux/a/y.efi", file(b"MZ"));
    put(&mut fs, "/boot/EFI/Linux/b.efi", file(b"MZ"));
    put(
        &mut fs,
        "/boot/loader/entries/b.conf",
        file(b"linux /boot/vmlinuz\n"),
    );
    put(&mut fs, "/boot/loader/entries/a.conf", file(b"title A\n"));
    put(&mut fs, "/boot/loader/entries/notes.txt", file(b"x"));
    put(&mut fs, "/boot/vmlinuz", file(b"k"));
    assert_eq!(
        found(&fs).expect("found"),
        [
            "BLS entry /boot/loader/entries/a.conf",
            "BLS entry /boot/loader/entries/b.conf",
            "UKI /boot/EFI/Linux/a/y.efi",
            "UKI /boot/EFI/Linux/b.efi",
            "UKI /boot/EFI/Linux/z.efi",
            "UKI /usr/lib/modules/6.1/b.efi",
            "kernel /usr/lib/modules/6.1/vmlinuz",
            "kernel /usr/lib/modules/6.2/vmlinuz",
        ]
    );
    let sources = find_boot_sources(&fs, &mut read_inline).expect("found");
    let Some(BootSource::Vmlinuz { initramfs, .. }) = sources.get(7) else {
        panic!("no 6.2 kernel");
    };
    assert!(initramfs.is_none());
}

#[test]
fn boot_files_that_are_not_regular_or_leave_the_tree_are_refused() {
    // A kernel that is a symlink (out of the tree, or anywhere): refused, not followed.
    for target in ["/../../etc/shadow", "../../../../../host", "/boot/vmlinuz"] {
        let mut fs = FileSystem::default();
        put(&mut fs, "/usr/lib/modules/6.1/vmlinuz", symlink(target));
        let e = found(&fs).expect_err(target);
        assert!(
            matches!(
                e,
                BootError::NotRegular {
                    kind: "a symlink",
                    ..
                }
            ),
            "{e}"
        );
        let mut fs = FileSystem::default();
        put(&mut fs, "/usr/lib/modules/6.1/vmlinuz", file(b"k"));
        put(
            &mut fs,
            "/usr/lib/modules/6.1/initramfs.img",
            symlink(target),
        );
        assert!(found(&fs).is_err(), "initramfs symlink to {target}");
        let mut fs = FileSystem::default();
        put(&mut fs, "/boot/EFI/Linux/u.efi", symlink(target));
        assert!(found(&fs).is_err(), "UKI symlink to {target}");
    }
    // BLS entries naming files through `..`, relative paths, symlinks, or missing files.
    for line in [
        "linux /boot/../../etc/shadow",
        "linux vmlinuz",
        "initrd /boot//x",
        "linux /boot/./vmlinuz",
        "linux /lnk/vmlinuz",
        "efi /boot/missing",
        "linux /boot",
    ] {
        let mut fs = FileSystem::default();
        put(&mut fs, "/boot/vmlinuz", file(b"k"));
        put(&mut fs, "/lnk", symlink("/boot"));
        put(
            &mut fs,
            "/boot/loader/entries/e.conf",
            file(line.as_bytes()),
        );
        assert!(found(&fs).is_err(), "{line:?} accepted");
    }
    // An entry that is a symlink, and an oversized entry.
    let mut fs = FileSystem::default();
    put(
        &mut fs,
        "/boot/loader/entries/e.conf",
        symlink("/etc/passwd"),
    );
    assert!(found(&fs).is_err());
    let mut fs = FileSystem::default();
    let big = vec![b'#'; usize::try_from(TEXT_MAX).expect("fits") + 1];
    put(&mut fs, "/boot/loader/entries/e.conf", file(&big));
    let e = found(&fs).expect_err("too large");
    assert!(matches!(e, BootError::TooLarge { .. }), "{e}");
}

#[test]
fn os_release_is_found_through_symlinks_inside_the_image() {
    let mut fs = FileSystem::default();
    assert!(os_release(&fs, &mut read_inline).expect("none").is_none());
    put(&mut fs, "/usr/lib/os-release", file(b"NAME=Lib\n"));
    let name = |fs: &FileSystem| {
        os_release(fs, &mut read_inline)
            .expect("os-release")
            .and_then(|o| o.pretty_name())
    };
    assert_eq!(name(&fs).as_deref(), Some("Lib"));
    // /etc/os-release wins; a relative symlink, an absolute one, `..` above the root.
    for target in [
        "../usr/lib/os-release.d/x",
        "/usr/lib/os-release.d/x",
        "../../../../usr/lib/os-release.d/x",
    ] {
        put(&mut fs, "/usr/lib/os-release.d/x", file(b"NAME=Etc\n"));
        put(&mut fs, "/etc/os-release", symlink(target));
        assert_eq!(name(&fs).as_deref(), Some("Etc"), "{target}");
    }
    // A loop is an error; a dangling link falls back to /usr/lib/os-release.
    put(&mut fs, "/etc/os-release", symlink("/etc/os-release"));
    assert!(os_release(&fs, &mut read_inline).is_err());
    put(&mut fs, "/etc/os-release", symlink("/nowhere"));
    assert_eq!(name(&fs).as_deref(), Some("Lib"));
}

#[test]
fn default_ids_from_the_image_are_checked() {
    let mut fs = FileSystem::default();
    put(&mut fs, "/usr/lib/modules/6.1 evil/vmlinuz", file(b"k"));
    let sources = find_boot_sources(&fs, &mut read_inline).expect("found");
    assert!(check_default_id(&sources[0]).is_err());
    let mut fs = FileSystem::default();
    put(&mut fs, "/boot/loader/entries/.conf", file(b"title x\n"));
    let sources = find_boot_sources(&fs, &mut read_inline).expect("found");
    assert!(check_default_id(&sources[0]).is_err());
}
