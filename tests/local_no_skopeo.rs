//! Pulls from local sources with no skopeo to be found: `oci:`, `oci-archive:` (plain and
//! gzip) and `dir:` copies of the debian-small fixture, made with skopeo beforehand, pulled
//! with `PATH` pointing at an empty directory. Each must give the image ID of a normal pull
//! (the fixture's config digest) and the same `oci compute-id`, and leave a clean fsck.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{cfsctl, ok, skopeo};

/// `cfsctl --repo REPO ARGS...` with `PATH` set to `path` only.
fn cfsctl_with_path(repo: &Path, path: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("CFS_REPO")
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("run cfsctl")
}

fn new_repo(dir: &Path, name: &str) -> PathBuf {
    let repo = dir.join(name);
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    repo
}

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

#[test]
fn local_sources_pull_without_skopeo() {
    if !common::require_tool("skopeo") {
        return;
    }
    let Some((root, fixtures)) = common::fixtures() else {
        return;
    };
    let fx = fixtures["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["tag"] == "debian-small")
        .expect("the debian-small fixture");
    let expected_id = fx["config"]["digest"].as_str().expect("config digest");
    let small = format!("oci:{}:debian-small", root.join("oci").display());

    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();

    // A normal pull, skopeo available: the reference image ID and compute-id.
    let reference = new_repo(t, "reference");
    let id = last_line(&ok(&cfsctl(
        &reference,
        &["oci", "pull", "-q", &small, "img"],
    )));
    assert_eq!(id, expected_id);
    let compute_id = ok(&cfsctl(&reference, &["oci", "compute-id", "img"]));

    // Copies made with skopeo, while it is still there.
    let archive = t.join("small.tar");
    let copies = [
        format!("oci-archive:{}:small", archive.display()),
        format!("oci:{}:small", t.join("layout").display()),
        format!("dir:{}", t.join("dir").display()),
    ];
    for dest in &copies {
        skopeo(&["copy", "-q", &small, dest]);
    }
    let gz = t.join("small.tar.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -c < '{}' > '{}'",
            archive.display(),
            gz.display()
        ))
        .status()
        .expect("gzip");
    assert!(status.success());

    // No skopeo from here on: PATH is an empty directory.
    let empty = t.join("empty-path");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(!empty.join("skopeo").exists());
    let sources = copies
        .iter()
        .cloned()
        .chain([format!("oci-archive:{}:small", gz.display())]);
    for (i, source) in sources.enumerate() {
        let repo = new_repo(t, &format!("repo{i}"));
        let out = cfsctl_with_path(&repo, &empty, &["oci", "pull", "-q", &source, "img"]);
        let id = last_line(&ok(&out));
        assert_eq!(id, expected_id, "{source}: image ID");
        assert_eq!(
            ok(&cfsctl_with_path(
                &repo,
                &empty,
                &["oci", "compute-id", "img"]
            )),
            compute_id,
            "{source}: compute-id"
        );
        let fsck = ok(&cfsctl_with_path(&repo, &empty, &["fsck"]));
        assert!(fsck.starts_with("ok:"), "{source}: {fsck}");
        // A warm re-pull, still without skopeo.
        let out = cfsctl_with_path(&repo, &empty, &["oci", "pull", "-q", &source, "img"]);
        assert_eq!(last_line(&ok(&out)), expected_id, "{source}: warm pull");
    }
}
