//! Images the writer produces pass `fsck.erofs` (erofs-utils), when it is installed.
//!
//! Set `CFS_IMAGE_KEEP=DIR` to also keep the images there (for manual mount tests).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use cfs_image::{FormatOptions, dumpfile, erofs};

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
