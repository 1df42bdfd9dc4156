//! Small bootable images for tests (docs/boot.md): entries (directories, files, symlinks) as
//! a tar layer or a directory tree, a base root filesystem with os-release, a kernel and
//! initramfs in `/usr/lib/modules/KVER/`, and UKIs (PE32+ EFI applications with the sections
//! given, written with `object`).
//!
//! Include it with `#[path = "common/bootable.rs"] mod bootable;`.

#![allow(dead_code)]

use std::path::Path;

use crate::oci_layout::noise;

/// The kernel version of [`modules_kernel`].
pub const KVER: &str = "6.1.0-test-amd64";

/// One entry of a test image.
#[derive(Clone)]
pub enum E {
    /// A directory (0755).
    Dir,
    /// A regular file (0644) and its bytes.
    File(Vec<u8>),
    /// A symlink and its target.
    Link(&'static str),
}

pub type Entries = Vec<(String, E)>;

/// The base of every image: `/usr`, `/boot`, `/sysroot` (the boot rules need all three),
/// an os-release (`/etc/os-release` → `../usr/lib/os-release`), `/etc/hostname`.
pub fn base() -> Entries {
    let mut v: Entries = ["usr", "usr/lib", "etc", "boot", "sysroot"]
        .iter()
        .map(|d| (d.to_string(), E::Dir))
        .collect();
    v.push((
        "usr/lib/os-release".into(),
        E::File(
            b"PRETTY_NAME=\"Test OS 13 (trixie)\"\nNAME=\"Test OS\"\nVERSION_ID=\"13\"\nID=testos\n"
                .to_vec(),
        ),
    ));
    v.push(("etc/os-release".into(), E::Link("../usr/lib/os-release")));
    v.push(("etc/hostname".into(), E::File(b"bootme\n".to_vec())));
    v
}

/// A kernel and initramfs in `/usr/lib/modules/KVER/`.
pub fn modules_kernel() -> Entries {
    vec![
        ("usr/lib/modules".into(), E::Dir),
        (format!("usr/lib/modules/{KVER}"), E::Dir),
        (
            format!("usr/lib/modules/{KVER}/vmlinuz"),
            E::File(noise(20_000, 7)),
        ),
        (
            format!("usr/lib/modules/{KVER}/initramfs.img"),
            E::File(noise(9_000, 8)),
        ),
    ]
}

/// A tar layer of `entries` (fixed mtimes, root-owned).
pub fn tar(entries: &[(String, E)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, e) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).expect("dir");
            }
            E::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).expect("file");
            }
            E::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).expect("link");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// The same entries as a directory tree (for `compute-karg DIR`).
pub fn write_dir(root: &Path, entries: &[(String, E)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, e) in entries {
        let p = root.join(path);
        match e {
            E::Dir => {
                std::fs::create_dir_all(&p).expect("mkdir");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            E::File(data) => {
                std::fs::write(&p, data).expect("write");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }
            E::Link(t) => std::os::unix::fs::symlink(t, &p).expect("symlink"),
        }
    }
    let t = rustix::fs::Timespec {
        tv_sec: 1_700_000_000,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let mut all: Vec<&String> = entries.iter().map(|(p, _)| p).collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in all.into_iter().chain(std::iter::once(&String::new())) {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join(p),
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("utimensat");
    }
}

/// A UKI: a PE32+ EFI application with the given sections (written by `object`).
pub fn uki(sections: &[(&str, &[u8])]) -> Vec<u8> {
    use object::pe;
    use object::write::pe::{NtHeaders, Writer};
    let mut buf = Vec::new();
    let mut w = Writer::new(true, 0x1000, 0x200, &mut buf);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(u16::try_from(sections.len()).expect("few sections"));
    let ranges: Vec<_> = sections
        .iter()
        .map(|(name, data)| {
            let mut n = [0u8; 8];
            n[..name.len()].copy_from_slice(name.as_bytes());
            let len = u32::try_from(data.len()).expect("small section");
            w.reserve_section(
                n,
                pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ,
                len,
                len,
            )
        })
        .collect();
    w.write_dos_header_and_stub().expect("dos header");
    w.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE,
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0x1_0000_0000,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
        dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        size_of_stack_reserve: 0,
        size_of_stack_commit: 0,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    w.write_section_headers();
    for (r, (_, data)) in ranges.iter().zip(sections) {
        w.write_section(r.file_offset, data);
    }
    buf
}

/// A UKI whose `.cmdline` is `cmdline`.
pub fn uki_with(cmdline: &str) -> Vec<u8> {
    uki(&[
        (".osrel", b"NAME=\"UKI OS\"\nVERSION_ID=1\n"),
        (".cmdline", cmdline.as_bytes()),
        (".linux", &noise(4_000, 11)),
        (".initrd", &noise(3_000, 12)),
    ])
}
