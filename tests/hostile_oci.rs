//! Hostile OCI metadata through `cfsctl oci pull` from OCI layouts: manifests and configs that
//! are not JSON, unknown layer media types, layer/diff_id count mismatches, a huge manifest, a
//! manifest list whose entry is a manifest list, digests in unknown algorithms. Each pull must
//! fail with an error (never hang or crash), register no name, and leave fsck passing.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use common::cfsctl;
use std::path::Path;

use oci_layout::{AMD64, Comp, OciLayout, layer, noise, tar_of};
use serde_json::json;

/// Tags `raw` (a manifest or index) as `tag` in the layout's index.json, with `media_type`.
fn tag_raw(layout: &OciLayout, tag: &str, media_type: &str, raw: &[u8]) {
    let (digest, size) = layout.add_blob(raw);
    let path = layout.dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("index")).expect("index json");
    index["manifests"].as_array_mut().expect("manifests").push(
        json!({"mediaType": media_type, "digest": digest, "size": size,
                     "annotations": {"org.opencontainers.image.ref.name": tag}}),
    );
    std::fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("write index");
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn rejected(repo: &Path, layout: &OciLayout, tag: &str) -> String {
    let out = cfsctl(repo, &["oci", "pull", "-q", &layout.reference(tag), "bad"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{tag}: the pull must fail");
    assert!(!err.trim().is_empty(), "{tag}: the error must say why");
    assert!(
        !repo.join("streams/refs/bad").exists(),
        "{tag}: nothing named"
    );
    let fsck = cfsctl(repo, &["fsck"]);
    assert!(fsck.status.success(), "{tag}: fsck after the failure");
    err
}

#[test]
fn hostile_manifests_and_configs_are_refused() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let repo = tmp.path().join("repo");
    assert!(cfsctl(&repo, &["init", "--insecure"]).status.success());

    let l = layer(&tar_of(&[("f", &noise(1000, 1))]), Comp::Gzip);
    let (ld, ls) = layout.add_blob(&l.blob);
    let good_config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id]}}))
    .expect("json");
    let (cd, cs) = layout.add_blob(&good_config);
    let manifest = |config: serde_json::Value, layers: serde_json::Value| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": config, "layers": layers}))
        .expect("json")
    };
    let cfg = json!({"mediaType": "application/vnd.oci.image.config.v1+json",
                     "digest": cd, "size": cs});
    let lyr = json!([{"mediaType": l.media_type, "digest": ld, "size": ls}]);

    // Not JSON.
    tag_raw(
        &layout,
        "not-json",
        MANIFEST,
        b"\x00\xffthis is not json{{{",
    );
    rejected(&repo, &layout, "not-json");

    // A config that is not JSON (its digest is right).
    let (bd, bs) = layout.add_blob(b"not a config");
    let bad_cfg = json!({"mediaType": "application/vnd.oci.image.config.v1+json",
                         "digest": bd, "size": bs});
    tag_raw(
        &layout,
        "config-not-json",
        MANIFEST,
        &manifest(bad_cfg, lyr.clone()),
    );
    rejected(&repo, &layout, "config-not-json");

    // An unknown layer media type.
    let odd = json!([{"mediaType": "application/x-definitely-not-a-layer", "digest": ld,
                      "size": ls}]);
    tag_raw(&layout, "odd-layer", MANIFEST, &manifest(cfg.clone(), odd));
    let e = rejected(&repo, &layout, "odd-layer");
    assert!(e.contains("application/x-definitely-not-a-layer"), "{e}");

    // Two layers in the manifest, one diff_id in the config.
    let two = json!([{"mediaType": l.media_type, "digest": ld, "size": ls},
                     {"mediaType": l.media_type, "digest": ld, "size": ls}]);
    tag_raw(&layout, "count", MANIFEST, &manifest(cfg.clone(), two));
    rejected(&repo, &layout, "count");

    // Digests in an unknown algorithm.
    let md5 = json!({"mediaType": "application/vnd.oci.image.config.v1+json",
                     "digest": "md5:d41d8cd98f00b204e9800998ecf8427e", "size": 0});
    tag_raw(&layout, "md5", MANIFEST, &manifest(md5, lyr.clone()));
    rejected(&repo, &layout, "md5");
    let sha512_layer = json!([{"mediaType": l.media_type, "size": ls,
        "digest": format!("sha512:{}", "ab".repeat(64))}]);
    tag_raw(
        &layout,
        "sha512",
        MANIFEST,
        &manifest(cfg.clone(), sha512_layer),
    );
    rejected(&repo, &layout, "sha512");

    // A huge manifest (16 MiB of annotations).
    let mut huge: serde_json::Value =
        serde_json::from_slice(&manifest(cfg.clone(), lyr.clone())).expect("json");
    huge["annotations"] = json!({"x": "y".repeat(16 << 20)});
    tag_raw(
        &layout,
        "huge",
        MANIFEST,
        &serde_json::to_vec(&huge).expect("json"),
    );
    let out = cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("huge"), "huge"],
    );
    // Either refused with a message or pulled as the image it is; never a crash or a hang.
    assert!(out.status.success() || !out.stderr.is_empty());
    assert!(cfsctl(&repo, &["fsck"]).status.success());

    // A manifest list whose entry is a manifest list (a list cannot name its own digest; a
    // chain of lists is the nearest thing): refused, not followed.
    let img = layout.add_image(None, std::slice::from_ref(&l), AMD64);
    let inner = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": img.manifest_digest,
                       "size": img.manifest_size,
                       "platform": {"os": "linux", "architecture": "amd64"}}]}))
    .expect("json");
    let (id, is) = layout.add_blob(&inner);
    let outer = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": INDEX, "digest": id, "size": is,
                       "platform": {"os": "linux", "architecture": "amd64"}}]}))
    .expect("json");
    tag_raw(&layout, "nested", INDEX, &outer);
    rejected(&repo, &layout, "nested");
}

/// A decompression bomb: a small gzip blob holding a far larger tar. With a bound below its
/// size the pull fails naming the bound, registers nothing and leaves fsck passing; the same
/// image pulls with the default bound.
#[test]
fn layer_bigger_than_the_bound_is_refused() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    common::ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let zeros = vec![0u8; 16 << 20];
    let bomb = layer(&tar_of(&[("zeros", &zeros)]), Comp::Gzip);
    assert!(bomb.blob.len() < 1 << 20, "the blob is small");
    layout.add_image(Some("bomb"), &[bomb], AMD64);
    let reference = layout.reference("bomb");

    let out = cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "-q",
            "--max-layer-size",
            "4M",
            &reference,
            "bad",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the pull must fail");
    assert!(
        err.contains("4194304") && err.contains("--max-layer-size"),
        "the error names the bound: {err}"
    );
    assert!(!repo.join("streams/refs/bad").exists(), "nothing named");
    assert!(
        cfsctl(&repo, &["fsck"]).status.success(),
        "fsck after the failure"
    );

    common::ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference, "good"]));
    let bad = cfsctl(
        &repo,
        &["oci", "pull", "--max-layer-size", "12X", &reference],
    );
    assert!(!bad.status.success(), "a malformed size is refused");
}

#[test]
fn zstd_layer_with_a_long_window_is_refused_naming_it() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    common::ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let tar = tar_of(&[("data", &noise(300_000, 7))]);
    // As `zstd --long=28 < layer.tar` writes it: the size unknown, a 256 MiB window.
    let zstd_layer = |level: i32, window_log: Option<u32>| {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), level).expect("encoder");
        if let Some(log) = window_log {
            enc.long_distance_matching(true).expect("long");
            enc.window_log(log).expect("window log");
        }
        std::io::Write::write_all(&mut enc, &tar).expect("compress");
        let blob = enc.finish().expect("finish");
        let mut l = layer(&tar, Comp::Zstd);
        l.digest = oci_layout::sha256(&blob);
        l.blob = blob;
        l
    };
    layout.add_image(Some("long"), &[zstd_layer(3, Some(28))], AMD64);
    layout.add_image(Some("nineteen"), &[zstd_layer(19, None)], AMD64);

    let out = cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("long"), "long"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 256 MiB window must be refused");
    assert!(
        err.contains("256 MiB") && err.contains("8 MiB") && err.contains("window"),
        "the error names the window and the bound: {err}"
    );
    assert!(!repo.join("streams/refs/long").exists(), "nothing named");
    common::ok(&cfsctl(&repo, &["fsck"]));
    // A level-19 layer (8 MiB window) still pulls.
    common::ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("nineteen"), "ok"],
    ));
}
