//! Unit tests of the local sources on layouts, archives and `dir:` directories written here:
//! selection by REF, every refused input (non-hex names, other algorithms, FIFOs, symlinks,
//! hardlinks, directories, size mismatches, truncated archives), archive spellings and
//! in-place reads, compressed archives and the `dir:` versions.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{BlobInner, LocalError, LocalKind, LocalSource};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A small image: (manifest bytes, [(hex, bytes)] of config and layer).
fn image(seed: u8) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer: Vec<u8> = (0..3000u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha(&layer)), "size": layer.len()}],
    }))
    .expect("json");
    (manifest, vec![(sha(&config), config), (sha(&layer), layer)])
}

fn entry(name: &str, digest: &str, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": MANIFEST, "digest": digest, "size": size,
                       "annotations": {"org.opencontainers.image.ref.name": name}})
}

/// Files of a layout holding `images` (tag, seed): (relative name, bytes).
fn layout_files(images: &[(&str, u8)]) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut entries = Vec::new();
    for (tag, seed) in images {
        let (m, blobs) = image(*seed);
        entries.push(entry(tag, &format!("sha256:{}", sha(&m)), m.len()));
        files.push((format!("blobs/sha256/{}", sha(&m)), m));
        for (h, b) in blobs {
            files.push((format!("blobs/sha256/{h}"), b));
        }
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    files.push((
        "index.json".to_owned(),
        serde_json::to_vec(&index).expect("json"),
    ));
    files
}

fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
}

fn open(kind: LocalKind, details: &Path, reference: &str) -> Result<LocalSource, LocalError> {
    let d = if reference.is_empty() {
        details.display().to_string()
    } else {
        format!("{}:{reference}", details.display())
    };
    LocalSource::open(kind, &d)
}

/// Every blob of image `seed` reads back whole and streamed.
fn check_image(src: &LocalSource, seed: u8) {
    let (m, blobs) = image(seed);
    assert_eq!(src.top_manifest().expect("manifest"), m);
    for (h, b) in blobs {
        assert_eq!(src.read_blob(&h, 1 << 20).expect("read"), b);
        let mut r = src.open_blob(&h, b.len() as u64).expect("open");
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("stream");
        assert_eq!(got, b);
    }
}

/// One ustar member; `typeflag` b'0' file, b'1' hardlink, b'2' symlink, b'5' dir, b'6' FIFO.
fn member(name: &str, typeflag: u8, data: &[u8], link: &str) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
    out
}

fn tar_of(files: &[(String, Vec<u8>)], prefix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend(member(&format!("{prefix}{name}"), b'0', data, ""));
    }
    out
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Runs `f` on another thread and fails if it takes more than 10 s (a FIFO open that blocks).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("blocked: the source waited on something it should have refused")
}

#[test]
fn local_sources_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    fn send<T: Send>() {}
    check::<LocalSource>();
    send::<super::LocalBlob>();
}

#[test]
fn layout_selects_by_ref_and_reads_every_blob() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1), ("two", 2)]));
    check_image(&open(LocalKind::Layout, tmp.path(), "one").expect("one"), 1);
    let two = open(LocalKind::Layout, tmp.path(), "two").expect("two");
    check_image(&two, 2);
    let (m, _) = image(2);
    let sel = two.selected().expect("selected");
    assert_eq!(
        (sel.hex.as_str(), sel.size),
        (sha(&m).as_str(), m.len() as u64)
    );

    // Without a REF: the sole entry, or an error listing the refs.
    let single = tempfile::tempdir().expect("tmp");
    write_tree(single.path(), &layout_files(&[("only", 3)]));
    check_image(
        &open(LocalKind::Layout, single.path(), "").expect("sole"),
        3,
    );
    let msg = open(LocalKind::Layout, tmp.path(), "")
        .expect_err("two entries")
        .to_string();
    assert!(
        msg.contains("2 entries") && msg.contains("one, two"),
        "{msg}"
    );
}

#[test]
fn a_missing_ref_is_named_with_the_refs_there() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1), ("two", 2)]));
    let e = open(LocalKind::Layout, tmp.path(), "three").expect_err("missing");
    assert!(matches!(e, LocalError::RefNotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"three\"") && msg.contains("one, two"),
        "{msg}"
    );
    assert!(msg.contains("index.json"), "{msg}");
}

#[test]
fn non_hex_names_and_other_algorithms_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1)]));
    let src = open(LocalKind::Layout, tmp.path(), "one").expect("open");
    let upper = "A".repeat(64);
    for bad in [
        "../../etc/passwd",
        "",
        &upper,
        &"a".repeat(63),
        "/etc/passwd",
    ] {
        let e = src.read_blob(bad, 100).expect_err("bad name");
        assert!(matches!(e, LocalError::BadBlobName { .. }), "{bad}: {e:?}");
        let e = src.open_blob(bad, 1).expect_err("bad name");
        assert!(matches!(e, LocalError::BadBlobName { .. }), "{bad}: {e:?}");
    }
    // An index entry naming another algorithm, or a malformed digest.
    for digest in [
        format!("sha512:{}", "ab".repeat(64)),
        "sha256:../x".to_owned(),
    ] {
        let idx = serde_json::json!({"manifests": [entry("x", &digest, 10)]});
        std::fs::write(tmp.path().join("index.json"), idx.to_string()).expect("write");
        let e = open(LocalKind::Layout, tmp.path(), "x").expect_err("algorithm");
        assert!(matches!(e, LocalError::UnsupportedDigest { .. }), "{e:?}");
        assert!(e.to_string().contains(&digest), "{e}");
    }
}

#[test]
fn a_fifo_device_or_directory_at_a_blob_path_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1)]));
    let (_, blobs) = image(1);
    let (config, layer) = (blobs[0].0.clone(), blobs[1].0.clone());
    let blob_dir = tmp.path().join("blobs/sha256");
    std::fs::remove_file(blob_dir.join(&config)).expect("rm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        blob_dir.join(&config),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    std::fs::remove_file(blob_dir.join(&layer)).expect("rm");
    std::fs::create_dir(blob_dir.join(&layer)).expect("mkdir");
    let path = tmp.path().to_owned();
    let (a, b, c) = bounded(move || {
        let src = open(LocalKind::Layout, &path, "one").expect("open");
        (
            src.open_blob(&config, 10).err(),
            src.read_blob(&config, 10).err(),
            src.open_blob(&layer, 3000).err(),
        )
    });
    for (e, what) in [(a, "a FIFO"), (b, "a FIFO"), (c, "a directory")] {
        let e = e.expect("refused");
        assert!(matches!(e, LocalError::NotRegular { .. }), "{e:?}");
        assert!(e.to_string().contains(what), "{e}");
    }
}

#[test]
fn symlinks_inside_a_layout_are_not_followed() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1)]));
    let (_, blobs) = image(1);
    let outside = tempfile::tempdir().expect("tmp");
    std::fs::write(outside.path().join("secret"), &blobs[0].1).expect("write");
    let p = tmp.path().join("blobs/sha256").join(&blobs[0].0);
    std::fs::remove_file(&p).expect("rm");
    std::os::unix::fs::symlink(outside.path().join("secret"), &p).expect("symlink");
    let src = open(LocalKind::Layout, tmp.path(), "one").expect("open");
    let e = src.read_blob(&blobs[0].0, 100).expect_err("symlink");
    assert!(e.to_string().contains("a symlink"), "{e}");
    // A symlinked blobs directory, too.
    let blobs_dir = tmp.path().join("blobs");
    std::fs::rename(&blobs_dir, outside.path().join("blobs")).expect("mv");
    std::os::unix::fs::symlink(outside.path().join("blobs"), &blobs_dir).expect("symlink");
    let e = src
        .read_blob(&blobs[1].0, 1 << 20)
        .expect_err("symlinked dir");
    assert!(e.to_string().contains("symlink"), "{e}");
}

#[test]
fn a_size_mismatch_names_both_sizes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = layout_files(&[("one", 1)]);
    write_tree(tmp.path(), &files);
    let (_, blobs) = image(1);
    let layer = &blobs[1];
    let src = open(LocalKind::Layout, tmp.path(), "one").expect("open");
    let e = src.open_blob(&layer.0, 2999).expect_err("mismatch");
    assert!(
        matches!(
            e,
            LocalError::SizeMismatch {
                expected: 2999,
                actual: 3000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(&layer.0), "{e}");
    let e = src.read_blob(&layer.0, 2999).expect_err("too large");
    assert!(
        matches!(
            e,
            LocalError::TooLarge {
                size: 3000,
                max: 2999,
                ..
            }
        ),
        "{e:?}"
    );

    let archive = tmp.path().join("a.tar");
    std::fs::write(&archive, finish(tar_of(&files, ""))).expect("write");
    let src = open(LocalKind::Archive, &archive, "one").expect("archive");
    let e = src.open_blob(&layer.0, 3001).expect_err("mismatch");
    assert!(
        matches!(
            e,
            LocalError::SizeMismatch {
                expected: 3001,
                actual: 3000,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn the_top_manifest_must_match_its_index_entry() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1)]));
    let (m, _) = image(1);
    let mut other = m.clone();
    let last = other.len() - 1;
    other[last] = b' ';
    std::fs::write(tmp.path().join("blobs/sha256").join(sha(&m)), &other).expect("write");
    let src = open(LocalKind::Layout, tmp.path(), "one").expect("open");
    let e = src.top_manifest().expect_err("mismatch");
    assert!(matches!(e, LocalError::ManifestMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&sha(&other)), "{e}");
}

#[test]
fn the_oci_layout_file_is_checked() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_tree(tmp.path(), &layout_files(&[("one", 1)]));
    std::fs::write(
        tmp.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .expect("write");
    let msg = open(LocalKind::Layout, tmp.path(), "one")
        .expect_err("v2")
        .to_string();
    assert!(msg.contains("2.0.0") && msg.contains("oci-layout"), "{msg}");
    std::fs::remove_file(tmp.path().join("oci-layout")).expect("rm");
    let e = open(LocalKind::Layout, tmp.path(), "one").expect_err("missing");
    assert!(matches!(e, LocalError::Missing { .. }), "{e:?}");
}

#[test]
fn archives_are_read_in_place_in_every_spelling() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = layout_files(&[("one", 1), ("two", 2)]);
    for prefix in ["", "./", "/", "blobs/../"] {
        let archive = tmp.path().join("a.tar");
        std::fs::write(&archive, finish(tar_of(&files, prefix))).expect("write");
        let src = open(LocalKind::Archive, &archive, "two").expect("archive");
        check_image(&src, 2);
        // The blob is a range of the archive file itself, not a copy.
        let (_, blobs) = image(2);
        let blob = src.open_blob(&blobs[1].0, 3000).expect("open");
        let BlobInner::Range { file, offset, .. } = &blob.inner else {
            panic!("not read in place");
        };
        let (a, b) = (
            file.metadata().expect("stat"),
            std::fs::metadata(&archive).expect("stat"),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{prefix:?}");
        let bytes = std::fs::read(&archive).expect("read");
        let at = usize::try_from(*offset).expect("offset");
        assert_eq!(&bytes[at..at + 3000], &blobs[1].1[..]);
    }
}

#[test]
fn the_last_duplicate_member_wins_and_names_above_the_top_are_not_the_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = layout_files(&[("one", 1)]);
    let (m, _) = image(1);
    let name = format!("blobs/sha256/{}", sha(&m));
    // A wrong manifest first, the right one last: extraction would leave the last.
    let mut tar = member(&name, b'0', b"{}", "");
    tar.extend(tar_of(&files, ""));
    let archive = tmp.path().join("a.tar");
    std::fs::write(&archive, finish(tar.clone())).expect("write");
    check_image(&open(LocalKind::Archive, &archive, "one").expect("open"), 1);
    // The right one first, then one named through `..` above the top: not the blob.
    let mut tar = tar_of(&files, "");
    tar.extend(member(&format!("../{name}"), b'0', b"{}", ""));
    tar.extend(member(&format!("blobs/../../{name}"), b'0', b"{}", ""));
    std::fs::write(&archive, finish(tar)).expect("write");
    check_image(&open(LocalKind::Archive, &archive, "one").expect("open"), 1);
    // Only names above the top: missing.
    let only_outside: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| {
            let n = if n.starts_with("blobs") {
                format!("../{n}")
            } else {
                n.clone()
            };
            (n, d.clone())
        })
        .collect();
    std::fs::write(&archive, finish(tar_of(&only_outside, ""))).expect("write");
    let src = open(LocalKind::Archive, &archive, "one").expect("open");
    let e = src.top_manifest().expect_err("missing");
    assert!(matches!(e, LocalError::Missing { .. }), "{e:?}");
}

#[test]
fn links_special_members_and_directories_in_archives_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = layout_files(&[("one", 1)]);
    let (_, blobs) = image(1);
    let config = format!("blobs/sha256/{}", blobs[0].0);
    let layer = format!("blobs/sha256/{}", blobs[1].0);
    let archive = tmp.path().join("a.tar");
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            member(&config, b'2', b"", "/etc/passwd"),
            "a symlink",
            &config,
        ),
        (member(&config, b'1', b"", &layer), "a hardlink", &config),
        (member(&config, b'6', b"", ""), "a FIFO", &config),
        (
            member(&config, b'3', b"", ""),
            "a character device",
            &config,
        ),
        (
            member(&format!("{config}/"), b'5', b"", ""),
            "a directory",
            &config,
        ),
        (
            member(&format!("{config}/x"), b'0', b"x", ""),
            "a directory",
            &config,
        ),
        (
            member("blobs/sha256", b'2', b"", "/tmp"),
            "a symlink",
            "blobs/sha256",
        ),
        (member("blobs", b'0', b"", ""), "a regular file", "blobs"),
    ];
    for (last, what, named) in cases {
        let mut tar = tar_of(&files, "");
        tar.extend(last);
        std::fs::write(&archive, finish(tar)).expect("write");
        let src = open(LocalKind::Archive, &archive, "one").expect("open");
        let e = src.read_blob(&blobs[0].0, 1 << 20).expect_err("refused");
        assert!(matches!(e, LocalError::Member { .. }), "{what}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(what) && msg.contains(named), "{what}: {msg}");
    }
    // A hardlinked index.json refuses the whole archive.
    let mut tar = tar_of(&files, "");
    tar.extend(member("index.json", b'1', b"", "oci-layout"));
    std::fs::write(&archive, finish(tar)).expect("write");
    let msg = open(LocalKind::Archive, &archive, "one")
        .expect_err("hardlink")
        .to_string();
    assert!(
        msg.contains("hardlink") && msg.contains("index.json"),
        "{msg}"
    );
}

#[test]
fn truncated_archives_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = layout_files(&[("one", 1)]);
    let tar = tar_of(&files, "");
    let archive = tmp.path().join("a.tar");
    // Cut inside the last member's data, and inside a blob in the middle.
    let (_, blobs) = image(1);
    let mut cuts = vec![tar.len() - 300];
    let mut off = 0;
    for (name, data) in &files {
        if name.ends_with(&blobs[1].0) {
            cuts.push(off + 512 + 100);
        }
        off += 512 + data.len().div_ceil(512) * 512;
    }
    for cut in cuts {
        std::fs::write(&archive, &tar[..cut]).expect("write");
        let e = open(LocalKind::Archive, &archive, "one").expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
    }
    // Not a tar at all.
    std::fs::write(&archive, vec![b'x'; 4096]).expect("write");
    let e = open(LocalKind::Archive, &archive, "one").expect_err("garbage");
    assert!(matches!(e, LocalError::Tar { .. }), "{e:?}");
}

#[test]
fn compressed_archives_are_decompressed_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = finish(tar_of(&layout_files(&[("one", 1)]), "./"));
    let archive = tmp.path().join("a.tar.x");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    for bytes in [gz.finish().expect("gzip"), zst] {
        std::fs::write(&archive, &bytes).expect("write");
        check_image(&open(LocalKind::Archive, &archive, "one").expect("open"), 1);
    }
    // A decompression bound: refused once the temporary copy passes it, naming it.
    let e = LocalSource::open_with(
        LocalKind::Archive,
        &format!("{}:one", archive.display()),
        4096,
    )
    .expect_err("bounded");
    assert!(
        matches!(e, LocalError::ArchiveTooLarge { max: 4096, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("4096"), "{e}");
    std::fs::write(&archive, b"BZh91AY&SY").expect("write");
    let msg = open(LocalKind::Archive, &archive, "one")
        .expect_err("bzip2")
        .to_string();
    assert!(msg.contains("bzip2"), "{msg}");
}

#[test]
fn an_archive_that_is_a_fifo_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path().join("a.tar");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let e = bounded(move || open(LocalKind::Archive, &p, "one").err());
    assert!(e.expect("refused").to_string().contains("a FIFO"));
}

#[test]
fn dir_sources_in_both_versions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, blobs) = image(4);
    std::fs::write(tmp.path().join("manifest.json"), &m).expect("write");
    for (h, b) in &blobs {
        std::fs::write(tmp.path().join(h), b).expect("write");
    }
    check_image(
        &open(LocalKind::Dir, tmp.path(), "").expect("no version"),
        4,
    );
    std::fs::write(
        tmp.path().join("version"),
        "Directory Transport Version: 1.1\n",
    )
    .expect("write");
    let src = open(LocalKind::Dir, tmp.path(), "").expect("1.1");
    check_image(&src, 4);
    assert!(src.selected().is_none());
    // An instance manifest of a list.
    let (inner, _) = image(5);
    std::fs::write(
        tmp.path().join(format!("{}.manifest.json", sha(&inner))),
        &inner,
    )
    .expect("write");
    assert_eq!(
        src.read_manifest(&sha(&inner), 1 << 20).expect("instance"),
        inner
    );
    assert_eq!(
        src.read_blob(&sha(&inner), 1 << 20).expect("instance"),
        inner
    );
    // Version 1.0: blobs were <hex>.tar.
    std::fs::write(
        tmp.path().join("version"),
        "Directory Transport Version: 1.0\n",
    )
    .expect("write");
    let e = open(LocalKind::Dir, tmp.path(), "")
        .expect("1.0")
        .read_blob(&blobs[0].0, 100);
    assert!(matches!(e, Err(LocalError::Missing { .. })), "{e:?}");
    for (h, _) in &blobs {
        std::fs::rename(tmp.path().join(h), tmp.path().join(format!("{h}.tar"))).expect("mv");
    }
    check_image(&open(LocalKind::Dir, tmp.path(), "").expect("1.0"), 4);
    std::fs::write(
        tmp.path().join("version"),
        "Directory Transport Version: 9\n",
    )
    .expect("write");
    let msg = open(LocalKind::Dir, tmp.path(), "")
        .expect_err("v9")
        .to_string();
    assert!(
        msg.contains("Version: 9") && msg.contains("version"),
        "{msg}"
    );
    // A manifest.json that is a symlink.
    std::fs::remove_file(tmp.path().join("version")).expect("rm");
    std::fs::rename(tmp.path().join("manifest.json"), tmp.path().join("m")).expect("mv");
    std::os::unix::fs::symlink("m", tmp.path().join("manifest.json")).expect("symlink");
    let e = open(LocalKind::Dir, tmp.path(), "")
        .expect("open")
        .top_manifest();
    assert!(e.expect_err("symlink").to_string().contains("a symlink"));
}
