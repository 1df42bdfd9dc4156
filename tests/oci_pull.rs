//! End-to-end tests of `cfsctl oci pull` and the image commands against real skopeo: OCI
//! layouts written by the test (every compression, manifest lists, artifacts), a real
//! `docker-registry`, the other skopeo transports (containers-storage too, as root),
//! verification failures, killed pulls, and the Debian fixtures when they are built.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;
#[path = "common/registry.rs"]
mod registry;

use common::{cfsctl, ok, skopeo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oci_layout::{AMD64, Comp, Image, OciLayout, Plat, layer, noise, sha256, tar_of};

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "cfsctl should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn new_repo(tmp: &Path, name: &str) -> PathBuf {
    let repo = tmp.join(name);
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    repo
}

/// Pulls; returns (last stdout line, stderr).
fn pull(repo: &Path, args: &[&str]) -> (String, String) {
    let mut a = vec!["oci", "pull"];
    a.extend_from_slice(args);
    let out = cfsctl(repo, &a);
    let stdout = ok(&out);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    (last, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn fsck_ok(repo: &Path) {
    let out = ok(&cfsctl(repo, &["fsck"]));
    assert!(out.starts_with("ok:"), "{out}");
}

/// Every layer re-created by `oci layer` hashes to its diff_id.
fn check_layers(repo: &Path, diff_ids: &[String]) {
    for d in diff_ids {
        let out = cfsctl(repo, &["oci", "layer", d]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(&sha256(&out.stdout), d, "layer {d} re-created wrongly");
    }
}

fn diff_ids(img: &Image) -> Vec<String> {
    img.layers.iter().map(|l| l.diff_id.clone()).collect()
}

fn skopeo_ok() -> bool {
    common::require_tool("skopeo")
}

fn skopeo_raw_digest(image: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", image])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256(&out.stdout)
}

/// An image with one layer of each compression, and small and large files.
fn sample_image(layout: &mut OciLayout, tag: &str, seed: u64) -> Image {
    let big = noise(200_000, seed);
    let layers = [
        layer(
            &tar_of(&[("etc/hostname", b"cfs\n"), ("usr/bin/big", &big)]),
            Comp::Gzip,
        ),
        layer(
            &tar_of(&[("a/multi", &noise(150_000, seed + 1))]),
            Comp::GzipMulti,
        ),
        layer(&tar_of(&[("z/one", &noise(70_000, seed + 2))]), Comp::Zstd),
        layer(
            &tar_of(&[("z/frames", &noise(90_000, seed + 3)), ("z/small", b"x")]),
            Comp::ZstdMulti,
        ),
        layer(
            &tar_of(&[("plain/file", &noise(5_000, seed + 4))]),
            Comp::Plain,
        ),
    ];
    layout.add_image(Some(tag), &layers, AMD64)
}

#[test]
fn pull_from_oci_layout_every_compression_and_manage_images() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = sample_image(&mut layout, "app", 1);
    let repo = new_repo(tmp.path(), "repo");

    let (id, err) = pull(&repo, &[&layout.reference("app")]);
    assert_eq!(id, img.config_digest, "{err}");
    assert!(err.contains("fetched 5 blobs"), "{err}");
    check_layers(&repo, &diff_ids(&img));
    fsck_ok(&repo);

    // Raw config and manifest come back byte for byte.
    let config = cfsctl(&repo, &["oci", "inspect", "--config", "app"]).stdout;
    assert_eq!(config, img.config);
    let manifest = cfsctl(&repo, &["oci", "inspect", "--manifest", "app"]).stdout;
    assert_eq!(sha256(&manifest), img.manifest_digest);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "inspect", "app"]))).expect("json");
    assert_eq!(inspect["image_id"], img.config_digest.as_str());
    assert_eq!(inspect["layers"].as_array().map(Vec::len), Some(5));
    assert_eq!(inspect["platform"], "linux/amd64");

    // The second pull fetches nothing and is fast.
    let t = Instant::now();
    let (id2, err) = pull(&repo, &[&layout.reference("app")]);
    let warm = t.elapsed();
    assert_eq!(id2, img.config_digest);
    assert!(err.contains("fetched 0 blobs"), "{err}");
    eprintln!("warm pull: {warm:?}");
    assert!(warm < Duration::from_secs(2), "warm pull took {warm:?}");

    // A second image sharing two layers fetches only the new one.
    let shared = [
        img.layers[0].clone(),
        img.layers[2].clone(),
        layer(&tar_of(&[("new", b"layer")]), Comp::Gzip),
    ];
    let img2 = layout.add_image(Some("app2"), &shared, AMD64);
    let (id, err) = pull(&repo, &["-q", &layout.reference("app2"), "second"]);
    assert_eq!(id, img2.config_digest);
    assert!(err.is_empty(), "-q printed {err}");
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "images", "--json"]))).expect("json");
    let names: Vec<&str> = listing
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "second"]);
    assert_eq!(listing[1]["layers"], 3);
    let table = ok(&cfsctl(&repo, &["oci", "images"]));
    assert!(table.contains(&img.config_digest[7..19]), "{table}");

    // tag / untag / rm / cat.
    ok(&cfsctl(&repo, &["oci", "tag", "app", "alias:v1"]));
    ok(&cfsctl(
        &repo,
        &["oci", "tag", &img2.config_digest[7..20], "alias2"],
    ));
    let cat = cfsctl(&repo, &["oci", "cat", "alias:v1", "--layer", "3"]).stdout;
    assert_eq!(sha256(&cat), img.layers[3].diff_id);
    assert_eq!(
        cfsctl(&repo, &["oci", "cat", "alias:v1"]).stdout,
        img.config
    );
    fails(&cfsctl(&repo, &["oci", "cat", "alias:v1", "--layer", "5"]));
    ok(&cfsctl(&repo, &["oci", "untag", "alias:v1"]));
    fails(&cfsctl(&repo, &["oci", "untag", "alias:v1"]));
    let rm = ok(&cfsctl(&repo, &["oci", "rm", "alias2"]));
    assert!(
        rm.contains("untagged second") && rm.contains("untagged alias2"),
        "{rm}"
    );
    ok(&cfsctl(&repo, &["gc"]));
    fsck_ok(&repo);
    // app is still whole after gc; second's own layer is gone.
    check_layers(&repo, &diff_ids(&img));
    fails(&cfsctl(&repo, &["oci", "layer", &img2.layers[2].diff_id]));
}

#[test]
fn manifest_list_picks_the_platform_and_is_kept() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let mk = |l: &mut OciLayout, p: Plat, seed: u64| {
        let layers = [layer(&tar_of(&[("arch", &noise(1000, seed))]), Comp::Gzip)];
        l.add_image(None, &layers, p)
    };
    let amd = mk(&mut layout, AMD64, 10);
    let arm = mk(
        &mut layout,
        Plat {
            os: "linux",
            arch: "arm64",
            variant: Some("v8"),
        },
        11,
    );
    let s390 = mk(
        &mut layout,
        Plat {
            os: "linux",
            arch: "s390x",
            variant: None,
        },
        12,
    );
    let list = layout.add_list("multi", &[&amd, &arm, &s390]);
    let repo = new_repo(tmp.path(), "repo");

    let (id, _) = pull(
        &repo,
        &[
            "--platform",
            "linux/arm64",
            &layout.reference("multi"),
            "arm",
        ],
    );
    assert_eq!(id, arm.config_digest);
    check_layers(&repo, &diff_ids(&arm));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "inspect", "arm"]))).expect("json");
    assert_eq!(inspect["platform"], "linux/arm64/v8");
    // Found by the list digest and by the manifest digest.
    let by_list = ok(&cfsctl(&repo, &["oci", "inspect", &list]));
    assert!(by_list.contains(&arm.config_digest), "{by_list}");
    let by_manifest = ok(&cfsctl(&repo, &["oci", "inspect", &arm.manifest_digest]));
    assert!(by_manifest.contains(&arm.config_digest), "{by_manifest}");

    let (id, _) = pull(
        &repo,
        &[
            "--platform",
            "linux/s390x",
            &layout.reference("multi"),
            "s390",
        ],
    );
    assert_eq!(id, s390.config_digest);
    if std::env::consts::ARCH == "x86_64" {
        let (id, _) = pull(&repo, &[&layout.reference("multi"), "host"]);
        assert_eq!(id, amd.config_digest);
    }

    let out = cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "--platform",
            "linux/riscv64",
            &layout.reference("multi"),
        ],
    );
    let err = fails(&out);
    assert!(
        err.contains("linux/riscv64") && err.contains("linux/amd64, linux/arm64/v8, linux/s390x"),
        "{err}"
    );
    fails(&cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "--platform",
            "linux",
            &layout.reference("multi"),
        ],
    ));
    // Survives gc: the config streams reference the list.
    ok(&cfsctl(&repo, &["gc"]));
    fsck_ok(&repo);
    // The list digest now leads to the host's image, which was pulled too.
    let by_list = ok(&cfsctl(&repo, &["oci", "inspect", &list]));
    let want = if std::env::consts::ARCH == "x86_64" {
        &amd.config_digest
    } else {
        &arm.config_digest
    };
    assert!(by_list.contains(want.as_str()), "{by_list}");
}

#[test]
fn artifact_blobs_are_stored_whole() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let disk = noise(3 << 20, 99);
    let notes = b"not a tar at all".to_vec();
    let digest = layout.add_artifact(
        "disk",
        "application/vnd.cfs.test.disk",
        &[
            ("application/vnd.cfs.test.disk.raw", &disk),
            ("text/plain", &notes),
        ],
    );
    let repo = new_repo(tmp.path(), "repo");
    let (id, _) = pull(&repo, &[&layout.reference("disk")]);
    assert_eq!(id, digest);
    assert_eq!(
        cfsctl(&repo, &["oci", "cat", "disk", "--layer", "0"]).stdout,
        disk
    );
    assert_eq!(
        cfsctl(&repo, &["oci", "cat", "disk", "--layer", "1"]).stdout,
        notes
    );
    fails(&cfsctl(&repo, &["oci", "cat", "disk"]));
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "images", "--json"]))).expect("json");
    assert_eq!(listing[0]["kind"], "artifact");
    assert_eq!(listing[0]["size"], disk.len() + notes.len());
    let (_, err) = pull(&repo, &[&layout.reference("disk")]);
    assert!(err.contains("fetched 0 blobs"), "{err}");
    ok(&cfsctl(&repo, &["gc"]));
    fsck_ok(&repo);
    assert_eq!(
        cfsctl(&repo, &["oci", "cat", "disk", "--layer", "0"]).stdout,
        disk
    );
}

/// Pull must fail, name what it should, register nothing for the image, and leave fsck clean.
fn expect_rejected(repo: &Path, image: &str, needles: &[&str]) {
    let out = cfsctl(repo, &["oci", "pull", image, "bad"]);
    let err = fails(&out);
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}: {err}");
    }
    let listing = ok(&cfsctl(repo, &["oci", "images", "--json"]));
    assert!(!listing.contains("\"bad\""), "{listing}");
    fsck_ok(repo);
}

#[test]
fn verification_failures_register_nothing() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let repo = new_repo(tmp.path(), "repo");

    // A tampered layer blob (same size).
    let l0 = layer(&tar_of(&[("f", &noise(100_000, 1))]), Comp::Gzip);
    let l1 = layer(&tar_of(&[("g", &noise(100_000, 2))]), Comp::Zstd);
    let img = layout.add_image(Some("tampered"), &[l0.clone(), l1.clone()], AMD64);
    let path = layout.blob_path(&l1.digest);
    let mut bytes = std::fs::read(&path).expect("blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).expect("tamper");
    let bad_hex = sha256(&bytes);
    expect_rejected(
        &repo,
        &layout.reference("tampered"),
        &["layer 1", &l1.digest[7..], &bad_hex[7..], "tampered"],
    );
    fails(&cfsctl(&repo, &["oci", "layer", &l1.diff_id]));
    // Repaired, the same pull completes.
    std::fs::write(&path, &l1.blob).expect("repair");
    let (id, _) = pull(&repo, &[&layout.reference("tampered")]);
    assert_eq!(id, img.config_digest);
    check_layers(&repo, &diff_ids(&img));

    // A tampered config.
    let l2 = layer(&tar_of(&[("h", b"config test")]), Comp::Gzip);
    let img = layout.add_image(Some("badconfig"), std::slice::from_ref(&l2), AMD64);
    let path = layout.blob_path(&img.config_digest);
    let text = String::from_utf8(img.config.clone()).expect("utf8");
    let tampered = text.replace("2025-01-02", "2025-01-03");
    std::fs::write(&path, &tampered).expect("tamper");
    expect_rejected(
        &repo,
        &layout.reference("badconfig"),
        &[
            "config",
            &img.config_digest[7..],
            &sha256(tampered.as_bytes())[7..],
        ],
    );
    fails(&cfsctl(&repo, &["oci", "layer", &l2.diff_id]));

    // A wrong diff_id in the config.
    let l3 = layer(&tar_of(&[("i", &noise(10_000, 3))]), Comp::Zstd);
    let wrong = sha256(b"something else");
    let w = wrong.clone();
    layout.add_image_with(
        Some("baddiff"),
        std::slice::from_ref(&l3),
        AMD64,
        move |c| {
            c["rootfs"]["diff_ids"][0] = w.into();
        },
    );
    expect_rejected(
        &repo,
        &layout.reference("baddiff"),
        &["layer 0", &wrong[7..], &l3.diff_id[7..], "diff_id"],
    );
    fails(&cfsctl(&repo, &["oci", "layer", &l3.diff_id]));
    fails(&cfsctl(&repo, &["oci", "layer", &wrong]));

    // The same for an uncompressed layer, whose diff_id is checked against the blob's own
    // digest (hashed once): also when its media type claims gzip.
    for (tag, label) in [("baddiffplain", Comp::Plain), ("baddifflabel", Comp::Gzip)] {
        let mut lp = layer(&tar_of(&[(tag, &noise(10_000, 4))]), Comp::Plain);
        lp.media_type = label.media_type().into();
        let w = wrong.clone();
        layout.add_image_with(Some(tag), std::slice::from_ref(&lp), AMD64, move |c| {
            c["rootfs"]["diff_ids"][0] = w.into();
        });
        expect_rejected(
            &repo,
            &layout.reference(tag),
            &["layer 0", &wrong[7..], &lp.diff_id[7..], "diff_id"],
        );
        fails(&cfsctl(&repo, &["oci", "layer", &lp.diff_id]));
        fails(&cfsctl(&repo, &["oci", "layer", &wrong]));
    }

    // Layer and diff_id counts disagree.
    let l4 = layer(&tar_of(&[("j", b"count")]), Comp::Plain);
    let extra = l4.diff_id.clone();
    layout.add_image_with(Some("count"), &[l4], AMD64, move |c| {
        c["rootfs"]["diff_ids"] = serde_json::json!([extra, extra]);
    });
    expect_rejected(
        &repo,
        &layout.reference("count"),
        &["1 layers", "2 diff_ids"],
    );

    // An unsupported layer media type.
    let mut l5 = layer(&tar_of(&[("k", b"bz")]), Comp::Plain);
    l5.media_type = "application/vnd.oci.image.layer.v1.tar+bzip2".into();
    layout.add_image(Some("bzip2"), &[l5], AMD64);
    expect_rejected(
        &repo,
        &layout.reference("bzip2"),
        &["tar+bzip2", "unsupported"],
    );

    // Not a tar at all, correctly hashed: the splitter refuses it.
    let junk = noise(3000, 5);
    let l6 = oci_layout::Layer {
        digest: sha256(&junk),
        diff_id: sha256(&junk),
        media_type: Comp::Plain.media_type().into(),
        blob: junk,
    };
    layout.add_image(Some("junk"), &[l6], AMD64);
    expect_rejected(&repo, &layout.reference("junk"), &["layer 0"]);

    // No transport.
    let err = fails(&cfsctl(&repo, &["oci", "pull", "debian:12"]));
    assert!(err.contains("docker://debian:12"), "{err}");
}

#[test]
fn registry_and_other_transports() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(reg) = registry::Registry::start(&tmp.path().join("registry")) else {
        return;
    };
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = sample_image(&mut layout, "app", 20);
    let arm_layers = [layer(&tar_of(&[("arm", b"64")]), Comp::GzipMulti)];
    let arm = layout.add_image(
        None,
        &arm_layers,
        Plat {
            os: "linux",
            arch: "arm64",
            variant: Some("v8"),
        },
    );
    let amd = layout.add_image(
        None,
        &[layer(&tar_of(&[("amd", b"64")]), Comp::Gzip)],
        AMD64,
    );
    let list = layout.add_list("multi", &[&amd, &arm]);

    let app = format!("{}:v1", reg.reference("test/app"));
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &layout.reference("app"),
        &app,
    ]);
    let repo = new_repo(tmp.path(), "repo");
    let (id, err) = pull(&repo, &["--tls-verify=false", &app]);
    assert_eq!(id, img.config_digest, "{err}");
    check_layers(&repo, &diff_ids(&img));
    let listing = ok(&cfsctl(&repo, &["oci", "images"]));
    assert!(
        listing.contains(&format!("{}/test/app:v1", reg.addr)),
        "{listing}"
    );
    // Without --tls-verify=false the plain-http registry is refused.
    fails(&cfsctl(&repo, &["oci", "pull", &app]));

    // Pinned by digest: exactly that manifest, else an error.
    let digest = skopeo_raw_digest(&app);
    let pinned = format!("{}@{digest}", reg.reference("test/app"));
    let (id, err) = pull(&repo, &["--tls-verify=false", &pinned, "pinned"]);
    assert_eq!(id, img.config_digest);
    assert!(err.contains("fetched 0 blobs"), "{err}");
    let wrong = format!("{}@{}", reg.reference("test/app"), sha256(b"nope"));
    fails(&cfsctl(
        &repo,
        &["oci", "pull", "--tls-verify=false", &wrong, "wrong"],
    ));

    // A manifest list, OCI and converted to Docker's format.
    let multi = format!("{}:v1", reg.reference("test/multi"));
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &layout.reference("multi"),
        &multi,
    ]);
    let (id, _) = pull(
        &repo,
        &[
            "--tls-verify=false",
            "--platform",
            "linux/arm64",
            &multi,
            "arm",
        ],
    );
    assert_eq!(id, arm.config_digest);
    let by_list = ok(&cfsctl(&repo, &["oci", "inspect", &list]));
    assert!(by_list.contains(&arm.config_digest));
    let dmulti = format!("{}:v1", reg.reference("test/docker-multi"));
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &layout.reference("multi"),
        &dmulti,
    ]);
    let drepo = new_repo(tmp.path(), "drepo");
    let (id, err) = pull(
        &drepo,
        &["--tls-verify=false", "--platform", "linux/arm64", &dmulti],
    );
    assert!(id.starts_with("sha256:"), "{err}");
    check_layers(&drepo, &diff_ids(&arm));
    let manifest = cfsctl(&drepo, &["oci", "inspect", "--manifest", &id]).stdout;
    assert!(
        String::from_utf8_lossy(&manifest)
            .contains("application/vnd.docker.distribution.manifest.v2+json"),
        "the original Docker manifest is kept"
    );
    fsck_ok(&drepo);

    // oci-archive:, dir:, docker-archive:.
    let arch = tmp.path().join("app.tar");
    let dir = tmp.path().join("appdir");
    let darch = tmp.path().join("docker.tar");
    let src = layout.reference("app");
    skopeo(&[
        "copy",
        "-q",
        &src,
        &format!("oci-archive:{}:app", arch.display()),
    ]);
    skopeo(&["copy", "-q", &src, &format!("dir:{}", dir.display())]);
    // Docker's format has no zstd: docker-archive gets a gzip-only image.
    let gz = layout.add_image(
        Some("gz"),
        &[
            layer(&tar_of(&[("gz/a", &noise(50_000, 7))]), Comp::Gzip),
            layer(&tar_of(&[("gz/b", &noise(50_000, 8))]), Comp::GzipMulti),
            layer(&tar_of(&[("gz/c", b"plain")]), Comp::Plain),
        ],
        AMD64,
    );
    skopeo(&[
        "copy",
        "-q",
        &layout.reference("gz"),
        &format!("docker-archive:{}:test/app:v1", darch.display()),
    ]);
    for (i, image) in [
        format!("oci-archive:{}:app", arch.display()),
        format!("dir:{}", dir.display()),
        format!("docker-archive:{}", darch.display()),
    ]
    .iter()
    .enumerate()
    {
        let r = new_repo(tmp.path(), &format!("t{i}"));
        let (id, err) = pull(&r, &[image]);
        assert!(id.starts_with("sha256:"), "{image}: {err}");
        let want = if image.starts_with("docker-archive:") {
            &gz
        } else {
            &img
        };
        check_layers(&r, &diff_ids(want));
        fsck_ok(&r);
        let (_, err) = pull(&r, &[image]);
        assert!(err.contains("fetched 0 blobs"), "{image}: {err}");
    }
    fsck_ok(&repo);
}

/// containers-storage (podman's store, here a private one with the vfs driver) serves layers
/// only uncompressed, by diff_id: the pull asks for them so and gets the same image, layers
/// and composefs image ID as from the OCI layout it was copied from.
#[test]
fn containers_storage_transport() {
    if !skopeo_ok() || !common::root_or_skip("the containers-storage test (a vfs store)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = sample_image(&mut layout, "app", 41);
    let store = format!(
        "containers-storage:[vfs@{}+{}]",
        tmp.path().join("storage").display(),
        tmp.path().join("run").display()
    );
    let image = format!("{store}localhost/app:1");
    skopeo(&["copy", "-q", &layout.reference("app"), &image]);

    let repo = new_repo(tmp.path(), "repo");
    let (id, err) = pull(&repo, &[&image, "app"]);
    assert_eq!(id, img.config_digest, "{err}");
    check_layers(&repo, &diff_ids(&img));
    fsck_ok(&repo);
    let (_, err) = pull(&repo, &[&image]);
    assert!(err.contains("fetched 0 blobs"), "{err}");

    // The same image from the layout, in another repository: same composefs image.
    let other = new_repo(tmp.path(), "other");
    let (other_id, _) = pull(&other, &[&layout.reference("app"), "app"]);
    assert_eq!(other_id, id);
    assert_eq!(
        ok(&cfsctl(&repo, &["oci", "compute-id", "app"])),
        ok(&cfsctl(&other, &["oci", "compute-id", "app"]))
    );
}

#[test]
fn killed_pulls_leave_a_clean_repository() {
    if !skopeo_ok() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("d{}/f{i}", i % 7), noise(20_000 + i * 13, i as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let layers = [
        layer(&tar_of(&[("big", &noise(24 << 20, 1))]), Comp::Gzip),
        layer(&tar_of(&refs), Comp::Zstd),
        layer(&tar_of(&[("mid", &noise(8 << 20, 2))]), Comp::Plain),
        layer(&tar_of(&[("small", b"s")]), Comp::GzipMulti),
    ];
    let img = layout.add_image(Some("big"), &layers, AMD64);
    let repo = new_repo(tmp.path(), "repo");
    for delay_ms in [20u64, 60, 150, 300, 600, 1000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .arg("--repo")
            .arg(&repo)
            .args(["oci", "pull", "-q", &layout.reference("big")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        fsck_ok(&repo);
    }
    let (id, _) = pull(&repo, &[&layout.reference("big")]);
    assert_eq!(id, img.config_digest);
    check_layers(&repo, &diff_ids(&img));
    fsck_ok(&repo);
    ok(&cfsctl(&repo, &["gc"]));
    fsck_ok(&repo);
    check_layers(&repo, &diff_ids(&img));
}

/// The Debian fixtures (`cargo xtask fixtures`): a real image pulled cold and warm.
#[test]
fn debian_fixture_cold_and_warm() {
    if !skopeo_ok() {
        return;
    }
    let Some((root, fixtures)) = common::fixtures() else {
        return;
    };
    let images = fixtures["images"].as_array().expect("images");
    let find = |tag: &str| {
        images
            .iter()
            .find(|i| i["tag"] == tag || i["name"] == tag)
            .unwrap_or_else(|| panic!("fixture {tag} missing"))
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path(), "repo");
    let oci = root.join("oci");
    for (tag, reused) in [("debian-gzip", 0), ("debian-small", 1), ("debian-zstd", 4)] {
        let fx = find(tag);
        let image = format!("oci:{}:{tag}", oci.display());
        let t = Instant::now();
        let (id, err) = pull(&repo, &[&image]);
        eprintln!("cold pull of {tag}: {:?}", t.elapsed());
        assert_eq!(id, fx["config"]["digest"].as_str().expect("config digest"));
        assert!(
            err.contains(&format!("{reused} already stored")),
            "{tag}: {err}"
        );
        let ids: Vec<String> = fx["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["diff_id"].as_str().expect("diff_id").to_owned())
            .collect();
        check_layers(&repo, &ids);
        let t = Instant::now();
        let (id2, err) = pull(&repo, &[&image]);
        let warm = t.elapsed();
        eprintln!("warm pull of {tag}: {warm:?}");
        assert_eq!(id2, id);
        assert!(err.contains("fetched 0 blobs"), "{err}");
        assert!(warm < Duration::from_secs(1), "warm pull took {warm:?}");
    }
    fsck_ok(&repo);
}
