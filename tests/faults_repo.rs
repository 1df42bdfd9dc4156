//! Faults around a repository: corrupt and missing objects (fsck names them, `fsck --repair`
//! plus a re-pull restores them), two pulls of images sharing layers at once, gc running while
//! a pull runs, and a pull into a full filesystem (a small loop-mounted ext4, as root: a clear
//! ENOSPC error, fsck passes, and after freeing space the pull completes). A composefs image
//! removed by `fsck --repair` is rebuilt by the re-pull it advises.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use common::{cfsctl, ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cfs_repository::{FsVerityHasher, HashAlgorithm};
use oci_layout::{AMD64, Comp, Image, OciLayout, layer, noise, tar_of};

fn new_repo(path: &Path) -> PathBuf {
    ok(&cfsctl(path, &["init", "--insecure"]));
    path.to_owned()
}

fn pull(repo: &Path, image: &str) -> String {
    let out = ok(&cfsctl(repo, &["oci", "pull", "-q", image]));
    out.lines().last().unwrap_or_default().to_owned()
}

fn fsck_ok(repo: &Path) {
    let out = ok(&cfsctl(repo, &["fsck"]));
    assert!(out.contains("ok:"), "{out}");
}

/// Every layer re-created by `oci layer` hashes to its diff_id.
fn check_layers(repo: &Path, img: &Image) {
    for l in &img.layers {
        let out = cfsctl(repo, &["oci", "layer", &l.diff_id]);
        assert!(out.status.success(), "layer {}", l.diff_id);
        assert_eq!(oci_layout::sha256(&out.stdout), l.diff_id);
    }
}

fn skopeo_ok() -> bool {
    common::require_tool("skopeo")
}

fn object_path(repo: &Path, data: &[u8]) -> PathBuf {
    let id = FsVerityHasher::digest(HashAlgorithm::Sha256, data);
    repo.join("objects").join(id.object_path())
}

#[test]
fn corrupt_and_missing_objects_are_named_then_repaired_by_a_re_pull() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let a = noise(100_000, 1);
    let b = noise(50_000, 2);
    let img = layout.add_image(
        Some("app"),
        &[
            layer(&tar_of(&[("usr/a", &a)]), Comp::Gzip),
            layer(&tar_of(&[("usr/b", &b), ("etc/x", b"x")]), Comp::Zstd),
        ],
        AMD64,
    );
    let repo = new_repo(&tmp.path().join("repo"));
    let reference = layout.reference("app");
    assert_eq!(pull(&repo, &reference), img.config_digest);

    // Flip one byte of one object, remove another.
    let pa = object_path(&repo, &a);
    let pb = object_path(&repo, &b);
    let mut data = std::fs::read(&pa).expect("object a");
    data[12_345] ^= 0x40;
    std::fs::set_permissions(&pa, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    std::fs::write(&pa, &data).expect("corrupt a");
    std::fs::remove_file(&pb).expect("remove b");

    let out = cfsctl(&repo, &["fsck"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    let rel = |p: &Path| {
        p.strip_prefix(&repo)
            .expect("in repo")
            .display()
            .to_string()
    };
    assert!(
        report.contains(&format!("{}: corrupt-object", rel(&pa))),
        "{report}"
    );
    let b_name = rel(&pb).replace("objects/", "").replace('/', "");
    assert!(
        report.contains("missing-object") && report.replace('/', "").contains(&b_name),
        "fsck must name the missing object: {report}"
    );

    // A re-pull alone takes the warm path (the config stream exists): repair first.
    let repaired = ok(&cfsctl(&repo, &["fsck", "--repair"]));
    assert!(repaired.contains("removed corrupt object"), "{repaired}");
    assert!(
        repaired.contains("needs a re-pull: streams/refs/app"),
        "{repaired}"
    );
    assert!(!pa.exists());
    let out = cfsctl(&repo, &["fsck"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("dangling-ref"),
        "{report}"
    );

    assert_eq!(pull(&repo, &reference), img.config_digest);
    fsck_ok(&repo);
    check_layers(&repo, &img);
    assert_eq!(std::fs::read(&pa).expect("a restored"), a);
    assert_eq!(std::fs::read(&pb).expect("b restored"), b);
    // Repairing a sound repository changes nothing.
    let again = ok(&cfsctl(&repo, &["fsck", "--repair"]));
    assert!(
        again.contains("removed 0 objects, 0 streams, 0 images"),
        "{again}"
    );
}

fn shared_images(layout: &mut OciLayout) -> (Image, Image) {
    let base = layer(&tar_of(&[("base/big", &noise(3 << 20, 10))]), Comp::Gzip);
    let common = layer(
        &tar_of(&[
            ("lib/one", &noise(400_000, 11)),
            ("lib/two", &noise(300_000, 12)),
        ]),
        Comp::Zstd,
    );
    let x = layer(&tar_of(&[("x", &noise(2 << 20, 13))]), Comp::Plain);
    let y = layer(&tar_of(&[("y", &noise(2 << 20, 14))]), Comp::Gzip);
    let img1 = layout.add_image(Some("one"), &[base.clone(), common.clone(), x], AMD64);
    let img2 = layout.add_image(Some("two"), &[base, common, y], AMD64);
    (img1, img2)
}

fn object_names(repo: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(repo.join("objects")).expect("objects") {
        let d = d.expect("entry");
        for f in std::fs::read_dir(d.path()).expect("dir") {
            v.push(format!(
                "{}/{}",
                d.file_name().to_string_lossy(),
                f.expect("f").file_name().to_string_lossy()
            ));
        }
    }
    v.sort();
    v
}

#[test]
fn concurrent_pulls_of_images_sharing_layers() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let (img1, img2) = shared_images(&mut layout);
    for round in 0..3 {
        let repo = new_repo(&tmp.path().join(format!("repo{round}")));
        let (r1, r2) = (layout.reference("one"), layout.reference("two"));
        let (p1, p2) = (repo.clone(), repo.clone());
        let t1 = std::thread::spawn(move || pull(&p1, &r1));
        let t2 = std::thread::spawn(move || pull(&p2, &r2));
        assert_eq!(t1.join().expect("pull one"), img1.config_digest);
        assert_eq!(t2.join().expect("pull two"), img2.config_digest);
        fsck_ok(&repo);
        check_layers(&repo, &img1);
        check_layers(&repo, &img2);
        // The same objects as two pulls one after the other: each stored once.
        let seq = new_repo(&tmp.path().join(format!("seq{round}")));
        pull(&seq, &layout.reference("one"));
        pull(&seq, &layout.reference("two"));
        let (mut a, mut b) = (object_names(&repo), object_names(&seq));
        // Stream objects of layers both pulls wrote are identical bytes, so identical names.
        a.dedup();
        b.dedup();
        assert_eq!(a, b);
        assert!(
            std::fs::read_dir(repo.join("tmp"))
                .expect("tmp")
                .next()
                .is_none()
        );
    }
}

#[test]
fn gc_while_a_pull_runs_keeps_the_pulls_objects() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let (img1, img2) = shared_images(&mut layout);
    let repo = new_repo(&tmp.path().join("repo"));
    // One image already there, then removed: its objects are garbage, some shared with the pull.
    pull(&repo, &layout.reference("one"));
    ok(&cfsctl(&repo, &["oci", "rm", "one"]));
    let r2 = layout.reference("two");
    let p = repo.clone();
    let puller = std::thread::spawn(move || pull(&p, &r2));
    let mut gcs = 0;
    while !puller.is_finished() {
        ok(&cfsctl(&repo, &["gc"]));
        gcs += 1;
    }
    assert_eq!(puller.join().expect("pull"), img2.config_digest);
    ok(&cfsctl(&repo, &["gc"]));
    assert!(gcs >= 1);
    fsck_ok(&repo);
    check_layers(&repo, &img2);
    let _ = img1;
}

/// Runs a command as a test step; `false` when it cannot (then the test is skipped).
fn sh(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_gives_enospc_and_a_later_pull_completes() {
    if !skopeo_ok() || !rustix::process::geteuid().is_root() || !common::require_tool("mkfs.ext4") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let img_file = tmp.path().join("small.ext4");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    std::fs::File::create(&img_file)
        .and_then(|f| f.set_len(24 << 20))
        .expect("image file");
    assert!(sh(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img_file)));
    if !sh(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img_file)
        .arg(&mnt))
    {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipping: cannot loop-mount\n");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = layout.add_image(
        Some("fat"),
        &[
            layer(&tar_of(&[("a", &noise(6 << 20, 21))]), Comp::Gzip),
            layer(&tar_of(&[("b", &noise(6 << 20, 22))]), Comp::Zstd),
        ],
        AMD64,
    );
    let repo = new_repo(&mnt.join("repo"));
    // Leave about 6 MiB free: not enough for 12 MiB of objects.
    let filler = mnt.join("filler");
    let free = rustix::fs::statvfs(&mnt).expect("statvfs");
    let avail = free.f_bavail * free.f_frsize;
    std::fs::write(&filler, vec![1u8; (avail.saturating_sub(6 << 20)) as usize]).expect("fill");

    let out = cfsctl(&repo, &["oci", "pull", "-q", &layout.reference("fat")]);
    assert!(!out.status.success(), "the pull must fail on a full disk");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    fsck_ok(&repo);

    std::fs::remove_file(&filler).expect("free space");
    ok(&cfsctl(&repo, &["gc"]));
    assert_eq!(pull(&repo, &layout.reference("fat")), img.config_digest);
    fsck_ok(&repo);
    check_layers(&repo, &img);
}

#[test]
fn repair_then_the_advised_re_pull_restores_the_composefs_image_too() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let a = noise(70_000, 31);
    let img = layout.add_image(
        Some("app"),
        &[
            layer(&tar_of(&[("usr/a", &a)]), Comp::Gzip),
            layer(&tar_of(&[("etc/b", &noise(9_000, 32))]), Comp::Zstd),
        ],
        AMD64,
    );
    let repo = new_repo(&tmp.path().join("repo"));
    let reference = layout.reference("app");
    assert_eq!(pull(&repo, &reference), img.config_digest);
    let id = ok(&cfsctl(&repo, &["oci", "create-image", "app"]));
    let id = id.trim().to_owned();

    // A file object both the layer stream and the composefs image need goes missing.
    std::fs::remove_file(object_path(&repo, &a)).expect("remove a");
    let repaired = ok(&cfsctl(&repo, &["fsck", "--repair"]));
    assert!(
        repaired.contains("needs a re-pull: streams/refs/app")
            && repaired.contains("needs a re-pull: images/refs/oci/app"),
        "{repaired}"
    );
    assert!(
        repaired.contains(&format!("removed image {id}")),
        "{repaired}"
    );

    // The re-pull it advises, and nothing else: fsck is clean, the image is back under its ref.
    assert_eq!(pull(&repo, &reference), img.config_digest);
    fsck_ok(&repo);
    let images = ok(&cfsctl(&repo, &["images"]));
    assert!(images.contains(&format!("{id}\toci/app")), "{images}");
    // A pull when the image ref's image is present leaves it alone.
    assert_eq!(pull(&repo, &reference), img.config_digest);
    assert!(ok(&cfsctl(&repo, &["images"])).contains(&format!("{id}\toci/app")));
    fsck_ok(&repo);
}
