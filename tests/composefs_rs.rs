//! cfs's image IDs against composefs-rs 0.9.4's (`cfsctl` of crates.io `composefs-ctl`, found
//! or installed by `common/peers.rs`): the same image must get the same composefs ID in both,
//! or an image sealed by one fails to boot from the other (docs/image.md, "The canonical
//! tree").
//!
//! - every Debian fixture tag (including the edge-case layer), SHA-256 and SHA-512
//!   repositories: `oci compute-id` with the default xattr filter and `keep-user-xattrs`, and
//!   the dumpfile path (`oci dump` → `image from-dump --min-version 1`);
//! - a bootable image built here (`/boot`, `/sysroot`, `/run` with contents,
//!   `/usr/lib/modules/KVER/vmlinuz`, `security.selinux` and `security.capability` xattrs,
//!   `user.*` xattrs, a PAX mtime with nanoseconds): `oci compute-id` with and without
//!   `--bootable`;
//! - the same tree as a directory: `compute-id [--bootable] DIR`;
//! - `--bootable` refused for an image with an SELinux policy (`SELINUXTYPE=` in
//!   `/etc/selinux/config`), which composefs-rs would relabel.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;
#[path = "common/peers.rs"]
mod peers;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{cfsctl, fixtures, ok};
use oci_layout::{AMD64, Comp, OciLayout, layer, noise};

const ALGS: [&str; 2] = ["sha256", "sha512"];

/// Runs composefs-rs's `cfsctl ARGS...`.
fn peer(bin: &Path, args: &[&OsStr]) -> Output {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run composefs-rs cfsctl")
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

/// Two empty repositories (cfs, composefs-rs) for `alg`, neither requiring fs-verity.
fn repos(dir: &Path, bin: &Path, alg: &str) -> (PathBuf, PathBuf) {
    let cfs = dir.join(format!("cfs-{alg}"));
    let rs = dir.join(format!("rs-{alg}"));
    ok(&cfsctl(&cfs, &os(&["init", "--insecure", "--hash", alg])));
    let algorithm = format!("fsverity-{alg}-12");
    ok(&peer(
        bin,
        &[
            OsStr::new("init"),
            OsStr::new("--insecure"),
            OsStr::new("--algorithm"),
            OsStr::new(&algorithm),
            rs.as_os_str(),
        ],
    ));
    (cfs, rs)
}

/// Pulls `reference` as `name` into both repositories.
fn pull_both(cfs: &Path, rs: &Path, bin: &Path, reference: &str, name: &str) {
    ok(&cfsctl(cfs, &os(&["oci", "pull", "-q", reference, name])));
    ok(&peer(
        bin,
        &[
            OsStr::new("--repo"),
            rs.as_os_str(),
            OsStr::new("oci"),
            OsStr::new("pull"),
            OsStr::new(reference),
            OsStr::new(name),
        ],
    ));
}

/// `oci compute-id NAME EXTRA...` in both; asserts they are equal and returns the ID.
fn same_oci_id(cfs: &Path, rs: &Path, bin: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["oci", "compute-id"];
    args.extend_from_slice(extra);
    args.push(name);
    let ours = ok(&cfsctl(cfs, &os(&args))).trim().to_owned();
    let mut theirs = vec![OsStr::new("--repo"), rs.as_os_str()];
    theirs.extend(os(&args));
    let theirs = ok(&peer(bin, &theirs)).trim().to_owned();
    assert_eq!(
        ours, theirs,
        "oci compute-id {extra:?} {name}: cfs vs composefs-rs"
    );
    ours
}

/// `oci dump NAME` of cfs written by `image from-dump --min-version 1`: the same ID.
fn dump_path_id(cfs: &Path, dir: &Path, alg: &str, name: &str) -> String {
    let dump = dir.join(format!("{name}-{alg}.dump"));
    let text = ok(&cfsctl(cfs, &os(&["oci", "dump", name])));
    std::fs::write(&dump, text).expect("write dump");
    let img = dir.join(format!("{name}-{alg}.img"));
    let out = cfsctl(
        cfs,
        &[
            OsStr::new("image"),
            OsStr::new("from-dump"),
            dump.as_os_str(),
            OsStr::new("-o"),
            img.as_os_str(),
            OsStr::new("--min-version"),
            OsStr::new("1"),
            OsStr::new("--print-digest"),
            OsStr::new("--hash"),
            OsStr::new(alg),
        ],
    );
    ok(&out).trim().to_owned()
}

#[test]
fn fixture_ids_equal_composefs_rs() {
    let Some((fixtures, json)) = fixtures() else {
        return;
    };
    let Some(bin) = peers::composefs_rs() else {
        return;
    };
    let tags: Vec<String> = json["images"]
        .as_array()
        .expect("fixtures.json: images")
        .iter()
        .map(|i| i["tag"].as_str().expect("fixtures.json: tag").to_owned())
        .collect();
    assert!(tags.len() >= 4, "fixtures.json lists {tags:?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    for alg in ALGS {
        let (cfs, rs) = repos(tmp.path(), &bin, alg);
        for tag in &tags {
            let reference = format!("oci:{}:{tag}", fixtures.join("oci").display());
            pull_both(&cfs, &rs, &bin, &reference, tag);
            let id = same_oci_id(&cfs, &rs, &bin, tag, &[]);
            same_oci_id(&cfs, &rs, &bin, tag, &["--xattrs", "keep-user-xattrs"]);
            assert_eq!(
                dump_path_id(&cfs, tmp.path(), alg, tag),
                id,
                "{tag} ({alg}): oci dump → from-dump --min-version 1"
            );
            // `oci create-image` stores the image compute-id names.
            let stored = ok(&cfsctl(&cfs, &os(&["oci", "create-image", tag])));
            assert_eq!(stored.trim(), id, "{tag} ({alg}): create-image");
        }
    }
}

/// v2 file capabilities `cap_net_bind_service=ep`, as `setcap` writes them.
const CAPS: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// One entry of the bootable test image.
struct Entry {
    path: &'static str,
    /// `None`: a directory.
    data: Option<Vec<u8>>,
    xattrs: Vec<(&'static str, Vec<u8>)>,
    /// (seconds, nanoseconds).
    mtime: (u64, u32),
}

/// The bootable image's files; `/etc/selinux/config` holds `selinux_config`.
fn entries(selinux_config: &[u8]) -> Vec<Entry> {
    let d = |path, sec| Entry {
        path,
        data: None,
        xattrs: Vec::new(),
        mtime: (sec, 0),
    };
    let f = |path, data: Vec<u8>| Entry {
        path,
        data: Some(data),
        xattrs: Vec::new(),
        mtime: (1_700_000_000, 0),
    };
    let label = |l: &str| format!("system_u:object_r:{l}:s0\0").into_bytes();
    let mut v = vec![
        d("usr", 1_700_000_123),
        d("usr/lib", 1_700_000_000),
        d("usr/lib/modules", 1_700_000_000),
        d("usr/lib/modules/6.1.0-test", 1_700_000_000),
        f("usr/lib/modules/6.1.0-test/vmlinuz", noise(8192, 1)),
        f("usr/lib/modules/6.1.0-test/initramfs.img", noise(5000, 2)),
        d("boot", 1_600_000_000),
        d("boot/efi", 1_600_000_000),
        f("boot/efi/grub.cfg", b"set timeout=1\n".to_vec()),
        d("sysroot", 1_600_000_000),
        d("sysroot/ostree", 1_600_000_000),
        f("sysroot/ostree/deploy", noise(100, 3)),
        d("run", 1_600_000_000),
        f("run/leftover", b"cache mount stub\n".to_vec()),
        d("etc", 1_700_000_000),
        f("etc/hostname", b"test\n".to_vec()),
        // /etc/selinux without a policy type (as Debian's libsemanage-common leaves it) is no
        // SELinux policy: labels are stripped.
        d("etc/selinux", 1_700_000_000),
        f("etc/selinux/semanage.conf", noise(300, 5)),
        f("etc/selinux/config", selinux_config.to_vec()),
        d("opt", 1_700_000_000),
        f("opt/netcap", noise(200, 4)),
        f("opt/nsec", b"sub-second mtime\n".to_vec()),
    ];
    for e in &mut v {
        e.xattrs.push(("security.selinux", label("usr_t")));
        match e.path {
            "opt/netcap" => {
                e.xattrs.push(("security.capability", CAPS.to_vec()));
                e.xattrs.push(("user.role", b"capable".to_vec()));
            }
            "usr" => e.xattrs.push(("user.usr", b"root-gets-this".to_vec())),
            "opt/nsec" => e.mtime = (1_700_000_000, 500_000_000),
            _ => {}
        }
    }
    v
}

/// The entries as a tar layer (PAX xattrs and, where sub-second, a PAX mtime).
fn bootable_tar(selinux_config: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries(selinux_config) {
        let mut recs: Vec<(String, Vec<u8>)> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
            .collect();
        if e.mtime.1 != 0 {
            recs.push((
                "mtime".into(),
                format!("{}.{:09}", e.mtime.0, e.mtime.1).into_bytes(),
            ));
        }
        b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), &v[..])))
            .expect("pax");
        let mut h = tar::Header::new_ustar();
        h.set_mtime(e.mtime.0);
        match &e.data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, e.path, std::io::empty())
                    .expect("dir");
            }
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, e.path, &data[..]).expect("file");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// The entries as a directory under `root` (the files first, then the directories' mtimes,
/// deepest first).
fn bootable_dir(root: &Path, selinux_config: &[u8]) {
    use std::time::{Duration, UNIX_EPOCH};
    let es = entries(selinux_config);
    for e in &es {
        let p = root.join(e.path);
        match &e.data {
            None => std::fs::create_dir_all(&p).expect("mkdir"),
            Some(data) => std::fs::write(&p, data).expect("write"),
        }
        for (k, v) in &e.xattrs {
            rustix::fs::setxattr(&p, *k, &v[..], rustix::fs::XattrFlags::empty())
                .unwrap_or_else(|err| panic!("setxattr {k} on {}: {err}", p.display()));
        }
    }
    for e in es.iter().rev() {
        let p = root.join(e.path);
        let t = UNIX_EPOCH + Duration::new(e.mtime.0, e.mtime.1);
        std::fs::File::open(&p)
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|err| panic!("mtime of {}: {err}", p.display()));
    }
}

/// An `/etc/selinux/config` without `SELINUXTYPE` (longer than 64 bytes: an external file, so
/// it is read from the repository or the directory).
const NO_POLICY: &[u8] =
    b"# This file controls the state of SELinux.\n# SELINUXTYPE=targeted is a comment here\nSELINUX=disabled\n";

#[test]
fn bootable_ids_equal_composefs_rs() {
    let Some(bin) = peers::composefs_rs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(
        Some("boot"),
        &[layer(&bootable_tar(NO_POLICY), Comp::Gzip)],
        AMD64,
    );
    let reference = layout.reference("boot");
    let dir = tmp.path().join("rootfs");
    std::fs::create_dir(&dir).expect("mkdir");
    bootable_dir(&dir, NO_POLICY);
    for alg in ALGS {
        let (cfs, rs) = repos(tmp.path(), &bin, alg);
        pull_both(&cfs, &rs, &bin, &reference, "boot");
        let plain = same_oci_id(&cfs, &rs, &bin, "boot", &[]);
        let boot = same_oci_id(&cfs, &rs, &bin, "boot", &["--bootable"]);
        assert_ne!(plain, boot, "--bootable empties /boot and /sysroot");
        same_oci_id(&cfs, &rs, &bin, "boot", &["--xattrs", "keep-user-xattrs"]);
        for extra in [&[][..], &["--bootable"][..]] {
            let mut args = vec![OsStr::new("compute-id")];
            args.extend(os(extra));
            let mut ours = args.clone();
            ours.extend([OsStr::new("--hash"), OsStr::new(alg), dir.as_os_str()]);
            let ours = ok(&cfsctl(&cfs, &ours)).trim().to_owned();
            let mut theirs = vec![
                OsStr::new("--no-repo"),
                OsStr::new("--hash"),
                OsStr::new(alg),
            ];
            theirs.extend(args);
            theirs.push(dir.as_os_str());
            let theirs = ok(&peer(&bin, &theirs)).trim().to_owned();
            assert_eq!(ours, theirs, "compute-id {extra:?} DIR ({alg})");
            // One tree, one ID, whichever way it came in.
            let oci = if extra.is_empty() { &plain } else { &boot };
            assert_eq!(
                &ours, oci,
                "compute-id {extra:?} DIR vs oci compute-id ({alg})"
            );
        }
    }
}

/// An image whose `/etc/selinux/config` names a policy: composefs-rs relabels every file from
/// it, which cfs does not implement, so `--bootable` is refused (naming the policy) rather
/// than given another ID; without `--bootable` the ID is computed as usual.
#[test]
fn bootable_with_an_selinux_policy_is_refused() {
    let config =
        b"SELINUX=enforcing\nSELINUXTYPE=targeted\n# padding to make this an external file\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(
        Some("sel"),
        &[layer(&bootable_tar(config), Comp::Gzip)],
        AMD64,
    );
    let dir = tmp.path().join("rootfs");
    std::fs::create_dir(&dir).expect("mkdir");
    bootable_dir(&dir, config);
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &os(&["init", "--insecure"])));
    ok(&cfsctl(
        &repo,
        &os(&["oci", "pull", "-q", &layout.reference("sel"), "sel"]),
    ));
    ok(&cfsctl(&repo, &os(&["oci", "compute-id", "sel"])));
    let d = dir.to_str().expect("utf-8");
    for args in [
        vec!["oci", "compute-id", "--bootable", "sel"],
        vec!["compute-id", "--bootable", d],
    ] {
        let out = cfsctl(&repo, &os(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} gave an ID");
        assert!(
            err.contains("/etc/selinux/config") && err.contains("\"targeted\""),
            "{args:?}: {err}"
        );
    }
}
