//! `oci copy --from` between repositories (hardlinks only where safe, verified, kill-safe)
//! and `oci pull --image-id` / `--policy` (a submodule of the `oci_export` test crate, using
//! its helpers).

use std::path::Path;
use std::process::Command;

use super::common::{self, cfsctl, ok};
use super::{compute_id, err, init, json, last_line, small_image};

fn copy_json(dst: &Path, src: &Path, name: &str) -> serde_json::Value {
    let from = src.display().to_string();
    json(
        ok(&cfsctl(
            dst,
            &["oci", "copy", "--from", &from, name, "--json"],
        ))
        .as_bytes(),
    )
}

#[test]
fn copy_between_repositories_hardlinks_verifies_and_refuses_other_algorithms() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let (_l, reference, image_id) = small_image(&tmp.path().join("src"), "t", 11);
    let a = tmp.path().join("a");
    init(&a);
    ok(&cfsctl(&a, &["oci", "pull", "-q", &reference, "img"]));
    let b = tmp.path().join("b");
    init(&b);
    let r = copy_json(&b, &a, "img");
    assert_eq!(r["image_id"], image_id.as_str());
    assert!(
        r["hardlinked"].as_u64().expect("oci_export test step") >= 3,
        "{r}"
    );
    assert_eq!(r["copied"], 0, "{r}");
    assert_eq!(compute_id(&b, "img"), compute_id(&a, "img"));
    let fsck = ok(&cfsctl(&b, &["fsck"]));
    assert!(fsck.contains("0 problems"), "{fsck}");
    // Again, under another name: everything is already there.
    let from = a.display().to_string();
    let r = json(
        ok(&cfsctl(
            &b,
            &["oci", "copy", "--from", &from, "img", "again", "--json"],
        ))
        .as_bytes(),
    );
    assert_eq!(r["hardlinked"], 0);
    assert!(r["present"].as_u64().expect("oci_export test step") >= 3);
    // Different hash algorithms are refused, clearly.
    let c = tmp.path().join("c");
    ok(&cfsctl(&c, &["init", "--insecure", "--hash", "sha512"]));
    let e = err(&cfsctl(&c, &["oci", "copy", "--from", &from, "img"]));
    assert!(e.contains("hash algorithms") && e.contains("sha512"), "{e}");
}

#[test]
fn copy_of_a_damaged_object_is_refused_and_names_nothing() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let (_l, reference, _) = small_image(&tmp.path().join("src"), "t", 21);
    let a = tmp.path().join("a");
    init(&a);
    ok(&cfsctl(&a, &["oci", "pull", "-q", &reference, "img"]));
    // Damage the 9000-byte file's object in the source (an insecure repository).
    let mut victim = None;
    for d in std::fs::read_dir(a.join("objects")).expect("oci_export test step") {
        for f in std::fs::read_dir(d.expect("oci_export test step").path())
            .expect("oci_export test step")
        {
            let p = f.expect("oci_export test step").path();
            if std::fs::metadata(&p).expect("oci_export test step").len() == 9000 {
                victim = Some(p);
            }
        }
    }
    let victim = victim.expect("object");
    let mut bytes = std::fs::read(&victim).expect("oci_export test step");
    bytes[10] ^= 0x40;
    std::fs::remove_file(&victim).expect("oci_export test step");
    std::fs::write(&victim, &bytes).expect("oci_export test step");
    let b = tmp.path().join("b");
    init(&b);
    let from = a.display().to_string();
    let e = err(&cfsctl(&b, &["oci", "copy", "--from", &from, "img"]));
    assert!(e.contains("corrupt"), "{e}");
    let images = ok(&cfsctl(&b, &["oci", "images", "--json"]));
    assert!(!images.contains("img"), "{images}");
    let fsck = ok(&cfsctl(&b, &["fsck"]));
    assert!(fsck.contains("0 problems"), "{fsck}");
}

/// Killed before each of its steps (fault injection), a copy leaves a valid destination;
/// the next run completes it.
#[test]
fn killed_copies_leave_the_destination_valid_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let (_l, reference, image_id) = small_image(&tmp.path().join("src"), "t", 31);
    let a = tmp.path().join("a");
    init(&a);
    ok(&cfsctl(&a, &["oci", "pull", "-q", &reference, "img"]));
    let from = a.display().to_string();
    let mut killed = 0;
    for k in 1..200 {
        let b = tmp.path().join(format!("b{k}"));
        init(&b);
        let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .arg("--repo")
            .arg(&b)
            .args(["oci", "copy", "--from", &from, "img"])
            .env("CFS_FAULT_KILL_AT", k.to_string())
            .output()
            .expect("oci_export test step");
        let fsck = ok(&cfsctl(&b, &["fsck"]));
        assert!(fsck.contains("0 problems"), "killed at {k}: {fsck}");
        if out.status.success() {
            break;
        }
        killed += 1;
        // Streams a killed copy registered may list the image as `<none>`; no name may
        // point at it.
        let images: serde_json::Value =
            serde_json::from_str(&ok(&cfsctl(&b, &["oci", "images", "--json"]))).expect("json");
        let named = images
            .as_array()
            .expect("array")
            .iter()
            .any(|i| !i["name"].is_null() && i["image_id"] == image_id.as_str());
        assert!(!named, "named after a kill at {k}: {images}");
        ok(&cfsctl(&b, &["oci", "copy", "--from", &from, "img"]));
        assert_eq!(compute_id(&b, "img"), compute_id(&a, "img"));
        std::fs::remove_dir_all(&b).expect("oci_export test step");
    }
    assert!(
        killed >= 3,
        "fault injection not built in? ({killed} kills)"
    );
}

/// As root, on a loop-mounted ext4 with verity: an insecure source is never hardlinked into an
/// enforced destination (the inode has no verity); an enforced one is.
#[test]
fn copy_hardlinks_only_with_the_same_verity_mode() {
    if !rustix::process::geteuid().is_root() || !common::require_tool("mkfs.ext4") {
        return;
    }
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let img = tmp.path().join("fs.img");
    std::fs::File::create(&img)
        .expect("oci_export test step")
        .set_len(64 << 20)
        .expect("oci_export test step");
    let quiet = |c: &mut Command| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(quiet(
        Command::new("mkfs.ext4")
            .args(["-q", "-b", "4096", "-O", "verity"])
            .arg(&img)
    ));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("oci_export test step");
    if !quiet(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt),
    ) {
        eprintln!("skipping: cannot loop-mount");
        return;
    }
    let _m = common::Mounted(mnt.clone());
    let (_l, reference, _) = small_image(&tmp.path().join("src"), "t", 41);
    let insecure = mnt.join("insecure");
    init(&insecure);
    ok(&cfsctl(
        &insecure,
        &["oci", "pull", "-q", &reference, "img"],
    ));
    let enforced = mnt.join("enforced");
    let out = cfsctl(&enforced, &["init"]);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("fs-verity") {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipping: this kernel's ext4 has no fs-verity\n",
        );
        return;
    }
    ok(&out);
    let r = copy_json(&enforced, &insecure, "img");
    assert_eq!(r["hardlinked"], 0, "{r}");
    assert!(
        r["copied"].as_u64().expect("oci_export test step")
            + r["reflinked"].as_u64().expect("oci_export test step")
            >= 3,
        "{r}"
    );
    let fsck = ok(&cfsctl(&enforced, &["fsck"]));
    assert!(fsck.contains("0 problems"), "{fsck}");
    let enforced2 = mnt.join("enforced2");
    ok(&cfsctl(&enforced2, &["init"]));
    let r = copy_json(&enforced2, &enforced, "img");
    assert!(
        r["hardlinked"].as_u64().expect("oci_export test step") >= 3,
        "{r}"
    );
    assert_eq!(compute_id(&enforced2, "img"), compute_id(&insecure, "img"));
    drop(_m);
}

#[test]
fn pull_image_id_refuses_another_image_before_naming_anything() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let (_l, reference, image_id) = small_image(&tmp.path().join("src"), "t", 51);
    let repo = tmp.path().join("repo");
    init(&repo);
    let other = format!("sha256:{}", "0".repeat(64));
    let e = err(&cfsctl(
        &repo,
        &["oci", "pull", "-q", "--image-id", &other, &reference, "x"],
    ));
    assert!(e.contains(&image_id) && e.contains("--image-id"), "{e}");
    let streams: Vec<_> = std::fs::read_dir(repo.join("streams"))
        .expect("oci_export test step")
        .map(|e| e.expect("oci_export test step").file_name())
        .filter(|n| n != "refs")
        .collect();
    assert!(streams.is_empty(), "something was registered: {streams:?}");
    assert_eq!(
        std::fs::read_dir(repo.join("streams/refs"))
            .expect("oci_export test step")
            .count(),
        0
    );
    let id = last_line(&ok(&cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "-q",
            "--image-id",
            &image_id,
            &reference,
            "x",
        ],
    )));
    assert_eq!(id, image_id);
    // Also on the warm path (everything stored): a wrong ID is still refused.
    let e = err(&cfsctl(
        &repo,
        &["oci", "pull", "-q", "--image-id", &other, &reference, "y"],
    ));
    assert!(e.contains("--image-id"), "{e}");
    assert!(!ok(&cfsctl(&repo, &["oci", "images"])).contains("y "));
}

#[test]
fn pull_policies_missing_and_newer() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let (_l, reference, first) = small_image(&tmp.path().join("src"), "t", 61);
    let repo = tmp.path().join("repo");
    init(&repo);
    let unreachable = "docker://127.0.0.1:1/nothing/here:v1";
    // missing, nothing stored: the source is contacted (and fails).
    err(&cfsctl(
        &repo,
        &["oci", "pull", "-q", "--policy", "missing", unreachable, "x"],
    ));
    ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference, "x"]));
    // missing, stored: the unreachable source is never contacted.
    let out = cfsctl(
        &repo,
        &["oci", "pull", "--policy", "missing", unreachable, "x"],
    );
    assert_eq!(last_line(&ok(&out)), first);
    assert!(String::from_utf8_lossy(&out.stderr).contains("up to date"));
    // ... unless --image-id asks for another image.
    let other = format!("sha256:{}", "1".repeat(64));
    err(&cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "-q",
            "--policy",
            "missing",
            "--image-id",
            &other,
            unreachable,
            "x",
        ],
    ));
    // newer, same manifest: nothing pulled.
    let out = cfsctl(
        &repo,
        &["oci", "pull", "--policy", "newer", &reference, "x"],
    );
    assert_eq!(last_line(&ok(&out)), first);
    assert!(String::from_utf8_lossy(&out.stderr).contains("up to date"));
    // newer, the source now offers another image: pulled.
    let (_l2, moved, second) = small_image(&tmp.path().join("src2"), "t", 62);
    let out = cfsctl(&repo, &["oci", "pull", "--policy", "newer", &moved, "x"]);
    assert_eq!(last_line(&ok(&out)), second);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("up to date"));
    let bad = err(&cfsctl(
        &repo,
        &["oci", "pull", "--policy", "sometimes", &reference, "x"],
    ));
    assert!(bad.contains("missing"), "{bad}");
}
