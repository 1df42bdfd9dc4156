//! Power cuts: what a command reported as done survives one. The repository lives on a small
//! loop-mounted ext4 with a 600 s commit interval, so only the syncs cfs makes itself reach the
//! disk; right after a command exits 0 the test cuts the power (`trigger_fs_error` aborts the
//! journal: everything not yet committed is lost), unmounts, runs `e2fsck -fy`, mounts again
//! and checks that what the command reported (created names, removed names, freed objects) is
//! so, and that fsck is clean. Needs root and loop devices; skips with a message otherwise.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use common::{cfsctl, ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_layout::{AMD64, Comp, OciLayout, layer, noise, tar_of};

fn skip(why: &str) {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipping the power-cut test: {why}\n").as_bytes(),
    );
}

fn run(cmd: &mut Command) -> std::process::ExitStatus {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run a command")
}

/// A small ext4 image, loop-mounted with a long commit interval.
struct Ext4 {
    image: PathBuf,
    mnt: PathBuf,
    mounted: bool,
}

impl Ext4 {
    fn mount(&mut self) -> bool {
        self.mounted = run(Command::new("mount")
            .args(["-o", "loop,commit=600,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.mnt))
        .success();
        self.mounted
    }

    fn umount(&mut self) {
        if self.mounted {
            assert!(
                run(Command::new("umount").arg(&self.mnt)).success(),
                "umount"
            );
            self.mounted = false;
        }
    }

    /// `/sys/fs/ext4/<loopN>/trigger_fs_error` of the mounted filesystem.
    fn trigger(&self) -> PathBuf {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE", "--mountpoint"])
            .arg(&self.mnt)
            .output()
            .expect("findmnt");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dev = source.rsplit('/').next().unwrap_or_default().to_owned();
        PathBuf::from("/sys/fs/ext4")
            .join(dev)
            .join("trigger_fs_error")
    }

    /// Cuts the power: aborts the journal, unmounts, repairs, mounts again.
    fn power_cut(&mut self) {
        std::fs::write(self.trigger(), b"1").expect("trigger_fs_error");
        self.umount();
        let fsck = run(Command::new("e2fsck").arg("-fy").arg(&self.image));
        // 0: clean, 1: errors corrected (the lost transaction's counters); more is a failure.
        assert!(
            fsck.code().is_some_and(|c| c <= 1),
            "e2fsck after the power cut: {fsck}"
        );
        assert!(self.mount(), "mounting again after the power cut");
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.mnt).status();
        }
    }
}

fn fsck_ok(repo: &Path) {
    let out = ok(&cfsctl(repo, &["fsck"]));
    assert!(out.contains("ok:"), "{out}");
}

fn stream_refs(repo: &Path) -> String {
    ok(&cfsctl(repo, &["oci", "images"]))
}

fn image_refs(repo: &Path) -> String {
    ok(&cfsctl(repo, &["images"]))
}

/// Regular files under `objects/`.
fn object_count(repo: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(repo.join("objects")).expect("objects") {
        for f in std::fs::read_dir(d.expect("entry").path()).expect("dir") {
            n += usize::from(f.expect("f").file_type().expect("type").is_file());
        }
    }
    n
}

#[test]
fn what_a_command_reports_survives_a_power_cut() {
    if !common::root_or_skip("the power-cut test")
        || !common::require_tool("skopeo")
        || !common::require_tool("mkfs.ext4")
        || !common::require_tool("e2fsck")
        || !common::require_tool("findmnt")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("disk.ext4");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .expect("image file");
    assert!(run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image)).success());
    let mut disk = Ext4 {
        image,
        mnt: mnt.clone(),
        mounted: false,
    };
    if !disk.mount() {
        return skip("cannot loop-mount an ext4 image");
    }
    if !disk.trigger().exists() {
        return skip("this kernel has no /sys/fs/ext4/<dev>/trigger_fs_error");
    }

    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = layout.add_image(
        Some("app"),
        &[
            layer(&tar_of(&[("usr/a", &noise(300_000, 1))]), Comp::Gzip),
            layer(
                &tar_of(&[("usr/b", &noise(80_000, 2)), ("etc/x", b"x")]),
                Comp::Zstd,
            ),
        ],
        AMD64,
    );
    let reference = layout.reference("app");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).expect("src");
    std::fs::write(src.join("d/file"), noise(20_000, 3)).expect("src file");

    let repo = mnt.join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    disk.power_cut();
    assert!(repo.join("meta.json").exists(), "init: meta.json lost");
    fsck_ok(&repo);

    // A pull: its streams and its name (also a nested one, in directories the pull creates).
    ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference]));
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &reference, "reg.example/ns/app:1"],
    ));
    disk.power_cut();
    let names = stream_refs(&repo);
    assert!(
        names.contains("app ") && names.contains("reg.example/ns/app:1"),
        "pull: {names}"
    );
    for l in &img.layers {
        let out = cfsctl(&repo, &["oci", "layer", &l.diff_id]);
        assert!(out.status.success(), "pull: layer {} lost", l.diff_id);
        assert_eq!(oci_layout::sha256(&out.stdout), l.diff_id);
    }
    fsck_ok(&repo);

    ok(&cfsctl(&repo, &["oci", "tag", "app", "app2"]));
    disk.power_cut();
    assert!(stream_refs(&repo).contains("app2 "), "tag lost");
    fsck_ok(&repo);

    let id = ok(&cfsctl(&repo, &["oci", "create-image", "app"]));
    let id = id.trim();
    disk.power_cut();
    let images = image_refs(&repo);
    assert!(
        images.contains(&format!("{id}\toci/app")),
        "oci create-image: {images}"
    );
    fsck_ok(&repo);

    let mine = ok(&cfsctl(
        &repo,
        &[
            "create-image",
            src.to_str().expect("utf-8 temp path"),
            "mine",
        ],
    ));
    let mine = mine.trim();
    disk.power_cut();
    let images = image_refs(&repo);
    assert!(
        images.contains(&format!("{mine}\tmine")),
        "create-image: {images}"
    );
    fsck_ok(&repo);

    ok(&cfsctl(&repo, &["oci", "untag", "app2"]));
    disk.power_cut();
    assert!(!stream_refs(&repo).contains("app2 "), "untag lost");

    ok(&cfsctl(&repo, &["rmi", "mine"]));
    disk.power_cut();
    assert!(!image_refs(&repo).contains("\tmine"), "rmi lost");

    ok(&cfsctl(&repo, &["oci", "rm", "app"]));
    disk.power_cut();
    let names = stream_refs(&repo);
    assert!(!names.contains("app"), "oci rm lost: {names}");
    assert!(
        !image_refs(&repo).contains("oci/app"),
        "oci rm lost the image ref removal"
    );
    fsck_ok(&repo);

    assert!(object_count(&repo) > 0);
    ok(&cfsctl(&repo, &["gc"]));
    disk.power_cut();
    assert_eq!(object_count(&repo), 0, "gc: removed objects came back");
    fsck_ok(&repo);
    disk.umount();
}
