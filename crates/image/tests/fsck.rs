//! Images the writer produces pass `fsck.erofs` (erofs-utils), when it is installed; and the
//! repository's fsck reads every image fully, so an image object whose xattr table is corrupt
//! (while its digest matches its name) is reported, not only found by a failed mount.
//!
//! Set `CFS_IMAGE_KEEP=DIR` to also keep the images there (for manual mount tests).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use std::sync::Arc;

use cfs_image::repo::ErofsImageObjects;
use cfs_image::tree::{FileSystem, Inode, Leaf, LeafContent, RegularFile, Stat};
use cfs_image::{FormatOptions, dumpfile, erofs};
use cfs_repository::{HashAlgorithm, InitVerity, Repository};

fn have_fsck() -> bool {
    Command::new("fsck.erofs").arg("--help").output().is_ok()
}

#[test]
fn corpus_images_pass_fsck_erofs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/composefs-dumps");
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "corpus missing");
        eprintln!("skipping: corpus not found at {}", dir.display());
        return;
    }
    if !have_fsck() {
        eprintln!("skipping: fsck.erofs not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let keep = std::env::var_os("CFS_IMAGE_KEEP");
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with("should-fail") && (n.ends_with(".dump") || n.ends_with(".dump.gz"))
        })
        .collect();
    names.sort();
    for name in names {
        let raw = std::fs::read(dir.join(&name)).expect("read");
        let data = if name.ends_with(".gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        } else {
            raw
        };
        let version = std::fs::read_to_string(dir.join(format!("{name}.version")))
            .ok()
            .and_then(|v| v.trim().parse().ok());
        let opts = version.map_or_else(FormatOptions::default, FormatOptions::exactly);
        let fs = dumpfile::parse(&data).expect("parse");
        let image = erofs::write(&fs, opts).expect("write");
        let path = match &keep {
            Some(k) => Path::new(k).join(format!("{name}.cfs")),
            None => tmp.path().join(format!("{name}.cfs")),
        };
        std::fs::write(&path, &image).expect("write image");
        let out = Command::new("fsck.erofs")
            .arg(&path)
            .output()
            .expect("run fsck.erofs");
        assert!(
            out.status.success(),
            "{name}: fsck.erofs failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    eprintln!("{checked} images pass fsck.erofs");
}

/// An image with one file `/f` whose only xattr is `user.zzmarker=v`, and the offset of that
/// inode's xattr body header (12 bytes before its first and only entry).
fn marked_image() -> (Vec<u8>, usize) {
    let mut stat = Stat::with_mode(0o644);
    stat.xattrs
        .insert(b"user.zzmarker"[..].into(), b"v"[..].into());
    let mut fs = FileSystem::new(Stat::with_mode(0o755));
    fs.root
        .insert(
            "f",
            Inode::Leaf(Arc::new(Leaf {
                stat,
                content: LeafContent::Regular(RegularFile::Inline(b"data"[..].into())),
            })),
        )
        .expect("insert");
    let image = erofs::write(&fs, FormatOptions::default()).expect("write");
    let at = image
        .windows(8)
        .position(|w| w == b"zzmarker")
        .expect("entry in the image");
    (image, at - 4 - 12)
}

/// Stores `image` as an object (so its digest matches its name) and registers it.
fn fsck_problems(image: &[u8]) -> Vec<(String, String)> {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repository::init(
        &tmp.path().join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init");
    let id = repo.ensure_object(image).expect("object");
    repo.register_image(&id).expect("register");
    let report = repo.fsck(Some(&ErofsImageObjects), 1).expect("fsck");
    assert_eq!(report.images, 1);
    report
        .problems
        .iter()
        .map(|p| (p.path.clone(), format!("{}: {}", p.kind, p.message)))
        .filter(|(p, _)| p == &format!("images/{}", id.to_hex()))
        .collect()
}

#[test]
fn repository_fsck_names_an_image_whose_xattr_table_is_corrupt() {
    let (image, body) = marked_image();
    assert!(fsck_problems(&image).is_empty(), "a sound image passes");

    // The name filter claims the stored name is absent: the kernel would hide it.
    let mut bad = image.clone();
    bad[body..body + 4].copy_from_slice(&[0xff; 4]);
    let problems = fsck_problems(&bad);
    assert!(
        problems
            .iter()
            .any(|(_, m)| m.contains("bad-image") && m.contains("filter")),
        "{problems:?}"
    );

    // The entry's header rewritten to an entry without a name (index 0, name length 0), its
    // name bytes now part of the value: the same size, so everything else still parses.
    let mut nameless = image.clone();
    let entry = body + 12;
    let len = usize::from(nameless[entry]);
    nameless[entry] = 0;
    nameless[entry + 1] = 0;
    nameless[entry + 2] = u8::try_from(len + 1).expect("small");
    let problems = fsck_problems(&nameless);
    assert!(
        problems.iter().any(|(_, m)| m.contains("bad-image")),
        "{problems:?}"
    );
}
