//! Getting images out and across (issue 13 §3): `oci export` to layouts and archives that
//! skopeo reads and that pull back to the same image and composefs IDs, `oci push` to a
//! loopback docker-registry, `oci copy --from` between repositories (hardlinks only where safe,
//! verified, kill-safe), and `oci pull --image-id` / `--policy`.

mod common;

#[path = "oci_export/copy_and_pull.rs"]
mod copy_and_pull;
#[path = "common/oci_layout.rs"]
mod oci_layout;
#[path = "common/registry.rs"]
mod registry;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cfsctl, ok};
use oci_layout::{AMD64, Comp, OciLayout, layer, noise, sha256, tar_of};

fn init(repo: &Path) {
    ok(&cfsctl(repo, &["init", "--insecure"]));
}

fn err(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_owned()
}

fn file_sha256(p: &Path) -> String {
    sha256(&std::fs::read(p).expect("read blob"))
}

fn skopeo_ok() -> bool {
    common::require_tool("skopeo")
}

/// The composefs ID of `name` in `repo`.
fn compute_id(repo: &Path, name: &str) -> String {
    last_line(&ok(&cfsctl(repo, &["oci", "compute-id", name])))
}

/// Pulls `image` into a fresh repository under `dir` and returns (image ID, composefs ID).
fn pull_fresh(dir: &Path, image: &str, extra: &[&str]) -> (String, String) {
    let repo = dir.to_owned();
    init(&repo);
    let mut args = vec!["oci", "pull", "-q"];
    args.extend_from_slice(extra);
    args.extend([image, "back"]);
    let id = last_line(&ok(&cfsctl(&repo, &args)));
    (id, compute_id(&repo, "back"))
}

/// A repository with the fixture `tag` pulled as `name`; `None` when fixtures are missing.
fn fixture_repo(dir: &Path, tags: &[(&str, &str)]) -> Option<(PathBuf, serde_json::Value)> {
    let (root, fixtures) = common::fixtures()?;
    if !skopeo_ok() {
        return None;
    }
    init(dir);
    for (tag, name) in tags {
        let image = format!("oci:{}:{tag}", root.join("oci").display());
        ok(&cfsctl(dir, &["oci", "pull", "-q", &image, name]));
    }
    Some((root, fixtures))
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json")
}

/// Every manifest the layout's index names exists, and so does every blob it names, with the
/// size its descriptor gives.
fn assert_layout_consistent(dir: &Path) {
    let index = json(&std::fs::read(dir.join("index.json")).expect("index.json"));
    let blob = |d: &serde_json::Value| {
        let digest = d["digest"].as_str().expect("digest");
        let p = dir.join("blobs/sha256").join(&digest[7..]);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|_| panic!("{} is named but missing", p.display()))
            .len();
        assert_eq!(Some(len), d["size"].as_u64(), "{}", p.display());
        p
    };
    for m in index["manifests"].as_array().expect("manifests") {
        let manifest = json(&std::fs::read(blob(m)).expect("manifest"));
        blob(&manifest["config"]);
        for l in manifest["layers"].as_array().expect("layers") {
            blob(l);
        }
    }
}

#[test]
fn export_layout_is_the_stored_image_and_skopeo_reads_it() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let repo = tmp.path().join("repo");
    let Some((root, _)) = fixture_repo(
        &repo,
        &[("debian-small", "small"), ("debian-plain", "plain")],
    ) else {
        return;
    };
    let inspect = json(ok(&cfsctl(&repo, &["oci", "inspect", "small"])).as_bytes());
    let image_id = inspect["image_id"].as_str().expect("id").to_owned();
    let layout = tmp.path().join("out");
    let dest = format!("oci:{}:small", layout.display());
    ok(&cfsctl(&repo, &["oci", "export", "small", &dest]));

    // The config byte for byte; the layers are the stored tars (digest = diff_id).
    let config = common::skopeo(&["inspect", "--config", "--raw", &dest]);
    assert_eq!(sha256(&config), image_id, "the image ID changed");
    let manifest = json(&common::skopeo(&["inspect", "--raw", &dest]));
    let diff_ids = json(&config)["rootfs"]["diff_ids"].clone();
    let layers = manifest["layers"].as_array().expect("oci_export test step");
    assert_eq!(
        layers.len(),
        diff_ids.as_array().expect("oci_export test step").len()
    );
    for (l, d) in layers
        .iter()
        .zip(diff_ids.as_array().expect("oci_export test step"))
    {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        assert_eq!(&l["digest"], d);
        let path = layout
            .join("blobs/sha256")
            .join(&d.as_str().expect("oci_export test step")[7..]);
        assert_eq!(
            &file_sha256(&path),
            d.as_str().expect("oci_export test step"),
            "blob not byte-exact"
        );
    }
    let copied = tmp.path().join("dir");
    common::skopeo(&["copy", "-q", &dest, &format!("dir:{}", copied.display())]);
    assert!(copied.join("manifest.json").is_file());

    // Pulled back into a fresh repository: the same image and composefs IDs.
    let (id, cfs_id) = pull_fresh(&tmp.path().join("back"), &dest, &[]);
    assert_eq!(id, image_id);
    assert_eq!(cfs_id, compute_id(&repo, "small"));

    // An uncompressed stored image keeps its manifest byte for byte (same digest), and adding
    // it keeps the other image; blobs already there are not rewritten.
    let base_layer = layout
        .join("blobs/sha256")
        .join(&layers[0]["digest"].as_str().expect("oci_export test step")[7..]);
    let before = std::fs::metadata(&base_layer).expect("oci_export test step");
    let plain_dest = format!("oci:{}:plain", layout.display());
    let digest = last_line(&ok(&cfsctl(
        &repo,
        &["oci", "export", "plain", &plain_dest],
    )));
    let want = sha256(&common::skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:debian-plain", root.join("oci").display()),
    ]));
    assert_eq!(digest, want, "the stored manifest was not kept");
    let after = std::fs::metadata(&base_layer).expect("oci_export test step");
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "an existing blob was rewritten"
    );
    assert_eq!(
        sha256(&common::skopeo(&["inspect", "--config", "--raw", &dest])),
        image_id
    );
    let index = json(&std::fs::read(layout.join("index.json")).expect("oci_export test step"));
    assert_eq!(
        index["manifests"]
            .as_array()
            .expect("oci_export test step")
            .len(),
        2
    );
    assert_layout_consistent(&layout);
}

#[test]
fn export_recompressed_and_archives_pull_back_to_the_same_ids() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let repo = tmp.path().join("repo");
    let Some(_) = fixture_repo(&repo, &[("debian-small", "small")]) else {
        return;
    };
    let inspect = json(ok(&cfsctl(&repo, &["oci", "inspect", "small"])).as_bytes());
    let image_id = inspect["image_id"]
        .as_str()
        .expect("oci_export test step")
        .to_owned();
    let cfs_id = compute_id(&repo, "small");
    let layout = tmp.path().join("out");
    for (i, (comp, media_type, dest)) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            format!("oci:{}:gz", layout.display()),
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            format!("oci:{}:zst", layout.display()),
        ),
        (
            "none",
            "application/vnd.oci.image.layer.v1.tar",
            format!("oci-archive:{}:v1", tmp.path().join("a.tar").display()),
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            format!("oci-archive:{}", tmp.path().join("z.tar").display()),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        ok(&cfsctl(
            &repo,
            &["oci", "export", "small", &dest, "--compress", comp],
        ));
        let manifest = json(&common::skopeo(&["inspect", "--raw", &dest]));
        for l in manifest["layers"].as_array().expect("oci_export test step") {
            assert_eq!(l["mediaType"], media_type, "{dest}");
        }
        let config = common::skopeo(&["inspect", "--config", "--raw", &dest]);
        assert_eq!(sha256(&config), image_id, "{dest}: config changed");
        let (id, back) = pull_fresh(&tmp.path().join(format!("back{i}")), &dest, &[]);
        assert_eq!((id, back), (image_id.clone(), cfs_id.clone()), "{dest}");
    }
    assert_layout_consistent(&layout);
    // A destination cfs cannot write is refused, naming what it can.
    let e = err(&cfsctl(
        &repo,
        &["oci", "export", "small", "dir:/nonexistent"],
    ));
    assert!(e.contains("oci:DIR"), "{e}");
}

#[test]
fn export_of_an_artifact_keeps_its_manifest() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let mut src = OciLayout::create(&tmp.path().join("src"));
    let digest = src.add_artifact(
        "art",
        "application/vnd.example.thing",
        &[
            ("application/octet-stream", &noise(70_000, 3)),
            ("text/plain", b"hello\n"),
        ],
    );
    let repo = tmp.path().join("repo");
    init(&repo);
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &src.reference("art"), "art"],
    ));
    let dest = format!("oci:{}:art", tmp.path().join("out").display());
    let out = last_line(&ok(&cfsctl(&repo, &["oci", "export", "art", &dest])));
    assert_eq!(out, digest);
    assert_eq!(
        sha256(&common::skopeo(&["inspect", "--raw", &dest])),
        digest
    );
    assert_layout_consistent(&tmp.path().join("out"));
}

/// A store whose layer object was damaged must not produce a layer blob, and the layout must
/// not name the image.
#[test]
fn export_refuses_a_damaged_layer_and_names_nothing() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let src = OciLayout::create(&tmp.path().join("src"));
    let mut src = src;
    let big = noise(200_000, 7);
    let tar = tar_of(&[("data/big", &big), ("etc/motd", b"hi\n")]);
    src.add_image(Some("t"), &[layer(&tar, Comp::Gzip)], AMD64);
    let repo = tmp.path().join("repo");
    init(&repo);
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &src.reference("t"), "img"],
    ));
    // The 200 kB file is an object: flip a byte of it.
    let objects = repo.join("objects");
    let mut victim = None;
    for d in std::fs::read_dir(&objects).expect("oci_export test step") {
        for f in std::fs::read_dir(d.expect("oci_export test step").path())
            .expect("oci_export test step")
        {
            let p = f.expect("oci_export test step").path();
            if std::fs::metadata(&p).expect("oci_export test step").len() == big.len() as u64 {
                victim = Some(p);
            }
        }
    }
    let victim = victim.expect("the big file's object");
    let mut bytes = std::fs::read(&victim).expect("oci_export test step");
    bytes[1000] ^= 1;
    let mut perm = std::fs::metadata(&victim)
        .expect("oci_export test step")
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&victim, perm).expect("oci_export test step");
    std::fs::write(&victim, &bytes).expect("oci_export test step");
    let out_dir = tmp.path().join("out");
    let e = err(&cfsctl(
        &repo,
        &[
            "oci",
            "export",
            "img",
            &format!("oci:{}:t", out_dir.display()),
        ],
    ));
    assert!(e.contains("layer 0") && e.contains("fsck"), "{e}");
    if let Ok(index) = std::fs::read(out_dir.join("index.json")) {
        assert!(
            json(&index)["manifests"]
                .as_array()
                .expect("oci_export test step")
                .is_empty()
        );
    }
    let bad_layer = out_dir.join("blobs/sha256").join(&sha256(&tar)[7..]);
    assert!(!bad_layer.exists(), "a wrong layer blob was written");
    let e = err(&cfsctl(
        &repo,
        &[
            "oci",
            "export",
            "img",
            &format!("oci-archive:{}", tmp.path().join("a.tar").display()),
        ],
    ));
    assert!(e.contains("layer 0"), "{e}");
    assert!(!tmp.path().join("a.tar").exists());
}

/// Exports killed at increasing delays: the layout never names a missing or short blob.
#[test]
fn killed_exports_leave_a_consistent_layout() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let repo = tmp.path().join("repo");
    let Some(_) = fixture_repo(&repo, &[("debian-small", "small")]) else {
        return;
    };
    let layout = tmp.path().join("out");
    let mut completed = false;
    for (i, delay_ms) in [5u64, 20, 60, 150, 300, 600, 1200, 5000].iter().enumerate() {
        let dest = format!("oci:{}:t{i}", layout.display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .arg("--repo")
            .arg(&repo)
            .args(["oci", "export", "small", &dest, "--compress", "gzip"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("oci_export test step");
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = child.kill();
        let status = child.wait().expect("oci_export test step");
        completed |= status.success();
        if layout.join("index.json").exists() {
            assert_layout_consistent(&layout);
        }
    }
    // A last, unkilled export completes over whatever was left.
    let dest = format!("oci:{}:final", layout.display());
    ok(&cfsctl(
        &repo,
        &["oci", "export", "small", &dest, "--compress", "gzip"],
    ));
    assert_layout_consistent(&layout);
    let left: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("oci_export test step")
        .filter_map(|e| {
            let n = e
                .expect("oci_export test step")
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.starts_with('.').then_some(n)
        })
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let _ = completed;
}

#[test]
fn push_to_a_registry_and_pull_back() {
    let tmp = tempfile::tempdir().expect("oci_export test step");
    let repo = tmp.path().join("repo");
    let Some(_) = fixture_repo(&repo, &[("debian-small", "small")]) else {
        return;
    };
    let Some(reg) = registry::Registry::start(&tmp.path().join("registry")) else {
        return;
    };
    let inspect = json(ok(&cfsctl(&repo, &["oci", "inspect", "small"])).as_bytes());
    let image_id = inspect["image_id"]
        .as_str()
        .expect("oci_export test step")
        .to_owned();
    let dest = format!("{}:v1", reg.reference("cfs/small"));
    let pushed = last_line(&ok(&cfsctl(
        &repo,
        &[
            "oci",
            "push",
            "small",
            &dest,
            "--tls-verify=false",
            "--tmpdir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([tmp.path().display().to_string()])
        .collect::<Vec<_>>(),
    )));
    // The temporary layout is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("oci_export test step")
        .filter_map(|e| {
            let n = e
                .expect("oci_export test step")
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.starts_with("cfs-push-").then_some(n)
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let raw = common::skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(sha256(&raw), pushed);
    let config = common::skopeo(&["inspect", "--config", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(sha256(&config), image_id);
    let (id, cfs_id) = pull_fresh(&tmp.path().join("back"), &dest, &["--tls-verify=false"]);
    assert_eq!(id, image_id);
    assert_eq!(cfs_id, compute_id(&repo, "small"));
    // A registry that is not there: skopeo's error, no temporary layout left.
    let e = err(&cfsctl(
        &repo,
        &[
            "oci",
            "push",
            "small",
            "docker://127.0.0.1:1/x:y",
            "--tls-verify=false",
        ],
    ));
    assert!(e.contains("127.0.0.1:1"), "{e}");
}

/// A small synthetic image in a layout: (layout, reference, image ID).
fn small_image(dir: &Path, tag: &str, seed: u64) -> (OciLayout, String, String) {
    let mut l = OciLayout::create(dir);
    let tar = tar_of(&[
        ("a/one", &noise(5000, seed)),
        ("a/two", &noise(9000, seed + 1)),
        ("b/three", &noise(300, seed + 2)),
    ]);
    let img = l.add_image(Some(tag), &[layer(&tar, Comp::Gzip)], AMD64);
    let r = l.reference(tag);
    (l, r, img.config_digest.clone())
}

/// An existing layout is not followed out of: `blobs/` as a symlink is refused, a blob that
/// is a symlink is replaced (the file it points to is untouched), and `index.json` as a
/// symlink is refused.
#[test]
fn export_does_not_follow_symlinks_in_an_existing_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_l, reference, _) = small_image(&tmp.path().join("src"), "t", 71);
    let repo = tmp.path().join("repo");
    init(&repo);
    ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference, "img"]));
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");

    let a = tmp.path().join("a");
    std::fs::create_dir(&a).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, a.join("blobs")).expect("symlink");
    let e = err(&cfsctl(
        &repo,
        &["oci", "export", "img", &format!("oci:{}:t", a.display())],
    ));
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).expect("ls").count(), 0);

    // A first export, then its config blob replaced by a symlink to a victim file.
    let b = tmp.path().join("b");
    let dest = format!("oci:{}:t", b.display());
    ok(&cfsctl(&repo, &["oci", "export", "img", &dest]));
    let config = sha256(&common::skopeo(&["inspect", "--config", "--raw", &dest]));
    let blob = b.join("blobs/sha256").join(&config[7..]);
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    std::fs::remove_file(&blob).expect("rm");
    std::os::unix::fs::symlink(&victim, &blob).expect("symlink");
    ok(&cfsctl(
        &repo,
        &["oci", "export", "img", &format!("oci:{}:u", b.display())],
    ));
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    assert!(std::fs::symlink_metadata(&blob).expect("blob").is_file());
    assert_eq!(file_sha256(&blob), config);

    std::fs::rename(b.join("index.json"), tmp.path().join("index.json")).expect("mv");
    std::os::unix::fs::symlink(tmp.path().join("index.json"), b.join("index.json"))
        .expect("symlink");
    let e = err(&cfsctl(
        &repo,
        &["oci", "export", "img", &format!("oci:{}:v", b.display())],
    ));
    assert!(e.contains("index.json") && e.contains("symlink"), "{e}");
}
