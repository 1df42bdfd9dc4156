//! Hostile xattrs in tar layers (PAX `SCHILY.xattr.*`), end to end through `cfsctl`: a layer
//! whose xattrs break a limit (name > 255 bytes, value > 65535, the per-inode budget of 32767,
//! also with many small ones) is stored byte for byte by `oci pull` (it is a valid archive),
//! but `oci create-image` refuses it naming the file and the limit, no image is registered,
//! and fsck passes. Nothing is truncated: a truncated xattr length made the bytes after it
//! parse as further, forged, xattrs (`trusted.overlay.redirect`/`metacopy`), which could make
//! a file read another object's bytes.
//!
//! Mounted (root), a layer's own `trusted.overlay.*` and `user.overlay.*` xattrs are escaped as
//! mkcomposefs escapes them: the file reads its own bytes and shows the xattrs as the layer
//! wrote them, also after gc (a file with its own `trusted.overlay.whiteout` keeps its object).

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use common::{Mounted, cfsctl, ok};
use oci_layout::{AMD64, Comp, OciLayout, layer};

fn run(repo: &Path, args: &[&str]) -> Output {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    cfsctl(repo, &a)
}

/// PAX xattrs of one entry: (name, value).
type Xattrs = Vec<(String, Vec<u8>)>;

/// A tar of regular files, each with its PAX xattrs.
fn tar(files: &[(&str, &[u8], Xattrs)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, xattrs) in files {
        if !xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), &v[..]))
                .collect();
            b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .expect("pax");
        }
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).expect("file");
    }
    b.into_inner().expect("tar")
}

fn xattr(name: String, value_len: usize) -> (String, Vec<u8>) {
    (name, vec![b'v'; value_len])
}

#[test]
fn layers_with_xattrs_beyond_the_limits_make_no_image() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"]));
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let big = vec![b'b'; 3000];
    let many: Vec<_> = (0..1500)
        .map(|i| xattr(format!("user.{i:05}"), 16))
        .collect();
    let cases: Vec<(&str, Xattrs, &str)> = vec![
        (
            "name256",
            vec![xattr(format!("user.{}", "n".repeat(251)), 1)],
            "XATTR_NAME_MAX",
        ),
        (
            "suffix300",
            vec![xattr(format!("trusted.{}", "n".repeat(300)), 1)],
            "XATTR_NAME_MAX",
        ),
        ("value65537", vec![xattr("user.v".into(), 65537)], "65535"),
        ("value65536", vec![xattr("user.v".into(), 65536)], "65535"),
        ("value65535", vec![xattr("user.v".into(), 65535)], "budget"),
        ("many", many, "budget"),
    ];
    for (tag, xattrs, _) in &cases {
        let t = tar(&[
            ("ok", b"fine", Vec::new()),
            ("dir/victim", &big, xattrs.clone()),
        ]);
        layout.add_image(Some(tag), &[layer(&t, Comp::Plain)], AMD64);
        ok(&run(
            &repo,
            &["oci", "pull", "-q", &layout.reference(tag), tag],
        ));
    }
    for (tag, _, needle) in &cases {
        let out = run(&repo, &["oci", "create-image", tag]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: an image was created");
        assert!(
            err.contains("dir/victim") && err.contains(needle),
            "{tag}: the error must name the file and the limit: {err}"
        );
    }
    let images = ok(&run(&repo, &["images"]));
    assert_eq!(images.lines().count(), 1, "images registered: {images}");
    ok(&run(&repo, &["fsck"]));

    // At the limits: a 255-byte name, a small inline file with xattrs at the budget.
    let at_limits = tar(&[
        (
            "long",
            b"x",
            vec![xattr(format!("user.{}", "n".repeat(250)), 1)],
        ),
        (
            "small",
            b"tiny",
            vec![xattr("user.big".into(), 32767 - 12 - 7 - 8)],
        ),
    ]);
    layout.add_image(Some("limits"), &[layer(&at_limits, Comp::Plain)], AMD64);
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("limits"), "limits"],
    ));
    // `--xattrs all`: the default canonical-tree filter would drop these `user.` xattrs.
    ok(&run(
        &repo,
        &["oci", "create-image", "--xattrs", "all", "limits"],
    ));
    let dump = ok(&run(&repo, &["oci", "dump", "--xattrs", "all", "limits"]));
    assert!(
        dump.contains(&format!("user.{}=v", "n".repeat(250))),
        "{dump}"
    );
    ok(&run(&repo, &["fsck"]));
}

#[test]
fn a_layers_own_overlay_xattrs_mount_as_written() {
    if !common::require_tool("skopeo") || !common::root_or_skip("mounting an image") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"]));
    let secret = vec![b's'; 4000];
    let own = vec![b'o'; 4000];
    let white = vec![b'w'; 200];
    // The object path of `secret`, which the hostile files name in their own redirects.
    let secret_id =
        cfs_repository::FsVerityHasher::digest(cfs_repository::HashAlgorithm::Sha256, &secret);
    let redirect = format!("/{}", secret_id.object_path()).into_bytes();
    let mut metacopy = vec![0u8, 36, 0, 1];
    metacopy.extend_from_slice(secret_id.as_bytes());
    let hostile = |extra: Xattrs| {
        let mut v = vec![
            ("trusted.overlay.redirect".to_string(), redirect.clone()),
            ("trusted.overlay.metacopy".to_string(), metacopy.clone()),
            ("user.overlay.redirect".to_string(), redirect.clone()),
            ("user.overlay.metacopy".to_string(), metacopy.clone()),
        ];
        v.extend(extra);
        v
    };
    let t = tar(&[
        ("secret", &secret, Vec::new()),
        ("big", &own, hostile(Vec::new())),
        ("small", b"mine", hostile(Vec::new())),
        (
            "white",
            &white,
            hostile(vec![("trusted.overlay.whiteout".to_string(), Vec::new())]),
        ),
    ]);
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("own"), &[layer(&t, Comp::Plain)], AMD64);
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("own"), "own"],
    ));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    ok(&run(
        &repo,
        // `--xattrs all`: the layer's own overlay xattrs must reach the image to be tested
        // (the default canonical-tree filter keeps only security.capability).
        &[
            "oci",
            "mount",
            "--xattrs",
            "all",
            "own",
            mnt.to_str().expect("utf-8"),
        ],
    ));
    let _m = Mounted(mnt.clone());
    assert_eq!(std::fs::read(mnt.join("secret")).expect("read"), secret);
    assert_eq!(std::fs::read(mnt.join("big")).expect("read"), own);
    assert_eq!(std::fs::read(mnt.join("small")).expect("read"), b"mine");
    assert_eq!(std::fs::read(mnt.join("white")).expect("read"), white);
    for f in ["big", "small"] {
        let got = rustix::fs::getxattr(mnt.join(f), "trusted.overlay.redirect", &mut [0u8; 512])
            .expect("the layer's own redirect shows as an xattr");
        assert_eq!(got, redirect.len(), "{f}");
    }
    // gc with the names gone: the mount keeps the image and every object its files need,
    // also that of `white` (its own whiteout xattr must not make it look like a whiteout).
    ok(&run(&repo, &["oci", "untag", "own"]));
    ok(&run(&repo, &["gc"]));
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    assert_eq!(
        std::fs::read(mnt.join("white")).expect("read after gc"),
        white
    );
    assert_eq!(std::fs::read(mnt.join("big")).expect("read after gc"), own);
    ok(&run(&repo, &["fsck"]));
}
