//! The local sources (`cfs_oci::local`) against what the real skopeo writes and reads: copies
//! of the Debian fixtures as `oci:`, `oci-archive:` (plain, gzip, zstd) and `dir:`, with and
//! without `--all` from a two-platform index made here. For each, the top-level manifest
//! must equal `skopeo inspect --raw` of the same reference byte for byte, and every blob the
//! manifests name must read back (whole and streamed) with its sha256.
//! Skipped, saying so, when skopeo or the fixtures are missing (a failure under `CI`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cfs_oci::local::{LocalKind, LocalSource};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}, and CI is set");
    }
    let _ = writeln!(std::io::stderr(), "skipping: {why}");
}

/// The fixtures' OCI layout, if skopeo and the fixtures are there.
fn fixture_layout() -> Option<PathBuf> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        skip("skopeo not installed");
        return None;
    }
    let root = std::env::var_os("CFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    if !root.join("fixtures.json").is_file() {
        skip(&format!(
            "no fixtures in {} (cargo xtask fixtures)",
            root.display()
        ));
        return None;
    }
    Some(root.join("oci"))
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn kind_of(reference: &str) -> (LocalKind, &str) {
    for (prefix, kind) in [
        ("oci-archive:", LocalKind::Archive),
        ("oci:", LocalKind::Layout),
        ("dir:", LocalKind::Dir),
    ] {
        if let Some(d) = reference.strip_prefix(prefix) {
            return (kind, d);
        }
    }
    panic!("not a local reference: {reference}");
}

fn hex_of(d: &Value) -> String {
    d["digest"]
        .as_str()
        .and_then(|s| s.strip_prefix("sha256:"))
        .expect("sha256 digest")
        .to_owned()
}

/// Reads `reference` with the local source and checks it against skopeo; returns how many
/// image manifests it holds.
fn check(reference: &str) -> usize {
    let (kind, details) = kind_of(reference);
    let started = Instant::now();
    let src = LocalSource::open(kind, details).unwrap_or_else(|e| panic!("{reference}: {e}"));
    let opened = started.elapsed();
    let mut bytes = 0u64;
    let top = src
        .top_manifest()
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
    assert_eq!(
        top,
        skopeo(&["inspect", "--raw", reference]),
        "{reference}: top-level manifest differs from skopeo's"
    );
    let parsed: Value = serde_json::from_slice(&top).expect("manifest JSON");
    let manifests: Vec<Vec<u8>> = match parsed.get("manifests").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|d| {
                let hex = hex_of(d);
                let m = src
                    .read_manifest(&hex, 1 << 20)
                    .unwrap_or_else(|e| panic!("{reference}: instance {hex}: {e}"));
                assert_eq!(sha(&m), hex, "{reference}: instance manifest");
                assert_eq!(
                    src.read_blob(&hex, 1 << 20).expect("as a blob too"),
                    m,
                    "{reference}"
                );
                m
            })
            .collect(),
        None => vec![top.clone()],
    };
    for m in &manifests {
        let m: Value = serde_json::from_slice(m).expect("manifest JSON");
        let config = hex_of(&m["config"]);
        let c = src.read_blob(&config, 1 << 20).expect("config");
        assert_eq!(sha(&c), config, "{reference}: config");
        for l in m["layers"].as_array().expect("layers") {
            let hex = hex_of(l);
            let size = l["size"].as_u64().expect("size");
            let mut blob = src
                .open_blob(&hex, size)
                .unwrap_or_else(|e| panic!("{reference}: layer {hex}: {e}"));
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = blob.read(&mut buf).expect("read layer");
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            assert_eq!(total, size, "{reference}: layer {hex} length");
            bytes += total;
            assert_eq!(
                hex::encode(hasher.finalize()),
                hex,
                "{reference}: layer {hex}"
            );
        }
    }
    eprintln!(
        "{reference}: opened in {opened:?}; {bytes} layer bytes read and hashed in {:?} in all",
        started.elapsed()
    );
    manifests.len()
}

/// A two-platform index in a fresh layout (`TAG` `multi`): the debian-small image as
/// linux/amd64 and, with its config's architecture changed, as linux/arm64/v8.
fn two_platform_layout(fixtures: &Path, dir: &Path) -> String {
    let layout = dir.join("multi");
    let fx = format!("oci:{}:debian-small", fixtures.display());
    skopeo(&[
        "copy",
        "-q",
        &fx,
        &format!("oci:{}:small", layout.display()),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let amd = index["manifests"][0].clone();
    let blobs = layout.join("blobs/sha256");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blobs.join(hex_of(&amd))).expect("manifest"))
            .expect("json");
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(hex_of(&manifest["config"]))).expect("config"),
    )
    .expect("json");
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let add = |bytes: &[u8]| {
        std::fs::write(blobs.join(sha(bytes)), bytes).expect("write blob");
        (format!("sha256:{}", sha(bytes)), bytes.len())
    };
    let (cd, cs) = add(&serde_json::to_vec(&config).expect("json"));
    let mut arm = manifest.clone();
    arm["config"]["digest"] = cd.into();
    arm["config"]["size"] = cs.into();
    let (md, ms) = add(&serde_json::to_vec(&arm).expect("json"));
    let list = serde_json::json!({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": amd["mediaType"], "digest": amd["digest"], "size": amd["size"],
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
         "size": ms, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]});
    let (ld, ls) = add(&serde_json::to_vec(&list).expect("json"));
    let mut index = index.clone();
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": ld, "size": ls,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}));
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write index");
    format!("oci:{}:multi", layout.display())
}

fn compress(tool: &str, file: &Path) -> PathBuf {
    let out = Command::new(tool)
        .args(["-k", "-q", "-f"])
        .arg(file)
        .status()
        .expect("run the compressor");
    assert!(out.success(), "{tool} failed");
    let ext = if tool == "gzip" { "gz" } else { "zst" };
    PathBuf::from(format!("{}.{ext}", file.display()))
}

#[test]
fn skopeo_copies_of_the_fixtures_read_back_as_skopeo_reads_them() {
    let Some(fixtures) = fixture_layout() else {
        return;
    };
    // The fixture layout itself: every tag's top-level manifest.
    for tag in ["debian-gzip", "debian-zstd", "debian-plain"] {
        let r = format!("oci:{}:{tag}", fixtures.display());
        let src = LocalSource::open(LocalKind::Layout, &r["oci:".len()..]).expect("open");
        assert_eq!(
            src.top_manifest().expect("manifest"),
            skopeo(&["inspect", "--raw", &r])
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let small = format!("oci:{}:debian-small", fixtures.display());
    assert_eq!(check(&small), 1);
    let archive = t.join("small.tar");
    let copies = [
        format!("oci-archive:{}:small", archive.display()),
        format!("oci:{}:small", t.join("layout").display()),
        format!("dir:{}", t.join("dir").display()),
    ];
    for dest in &copies {
        skopeo(&["copy", "-q", &small, dest]);
        assert_eq!(check(dest), 1, "{dest}");
    }
    // Compressed archives: skopeo (containers/storage's untar) reads them, and so do we.
    for tool in ["gzip", "zstd"] {
        if Command::new(tool).arg("--version").output().is_err() {
            skip(&format!(
                "{tool} not installed: compressed archive not checked"
            ));
            continue;
        }
        let c = compress(tool, &archive);
        assert_eq!(check(&format!("oci-archive:{}:small", c.display())), 1);
    }

    // Two platforms: the index itself, and copies with and without --all.
    let multi = two_platform_layout(&fixtures, t);
    assert_eq!(check(&multi), 2);
    for (all, n) in [(true, 2), (false, 1)] {
        let sub = if all { "all" } else { "one" };
        let dests = [
            format!("oci-archive:{}:m", t.join(format!("{sub}.tar")).display()),
            format!("oci:{}:m", t.join(format!("{sub}-layout")).display()),
            format!("dir:{}", t.join(format!("{sub}-dir")).display()),
        ];
        for dest in &dests {
            let mut args = vec!["copy", "-q"];
            if all {
                args.push("--all");
            }
            args.extend([multi.as_str(), dest.as_str()]);
            skopeo(&args);
            assert_eq!(check(dest), n, "{dest}");
        }
    }
}
