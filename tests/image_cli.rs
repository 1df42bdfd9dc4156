//! End-to-end tests of the image commands of `cfsctl` that need no root: `image from-dump`
//! against mkcomposefs's images of the dump corpus, `image dump` round trips, `create-image`
//! and `compute-id` agreeing (SHA-256 and SHA-512), and gc/fsck following images' objects.

mod common;

use common::{cfsctl, ok};
use std::path::Path;
use std::process::Command;

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn from_dump_matches_mkcomposefs_and_dump_round_trips() {
    let Some(corpus) = common::shared_corpus("composefs-dumps") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let none = tmp.path().join("no-repo");
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dump"))
        .collect();
    names.sort();
    // `cfsctl image from-dump DUMP -o IMAGE EXTRA...`.
    let from_dump = |dump: &Path, image: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "image".as_ref(),
            "from-dump".as_ref(),
            dump.as_os_str(),
            "-o".as_ref(),
            image.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        cfsctl(&none, &args)
    };
    for name in names {
        let dump = corpus.join(&name);
        let image = tmp.path().join(format!("{name}.img"));
        if name.starts_with("should-fail-") {
            let out = from_dump(&dump, &image, &[]);
            assert!(!out.status.success(), "{name} was accepted");
            assert!(!image.exists(), "{name}: image written despite the error");
            continue;
        }
        let Ok(expected) = std::fs::read_to_string(corpus.join(format!("{name}.sha256"))) else {
            continue;
        };
        // `NAME.version` holds V for `--min-version=V --max-version=V`; else the defaults.
        let (min, max) = match std::fs::read_to_string(corpus.join(format!("{name}.version"))) {
            Ok(v) => (v.trim().to_owned(), v.trim().to_owned()),
            Err(_) => ("0".to_owned(), "1".to_owned()),
        };
        let versions = ["--min-version", &min, "--max-version", &max];
        let digest = ok(&from_dump(
            &dump,
            &image,
            &[&versions[..], &["--print-digest"]].concat(),
        ));
        assert_eq!(sha256_file(&image), expected.trim(), "{name}");
        assert_eq!(digest.trim().len(), 64, "{name}: {digest}");

        // dump → from-dump gives the same image again.
        let printed = ok(&cfsctl::<&std::ffi::OsStr>(
            &none,
            &["image".as_ref(), "dump".as_ref(), image.as_os_str()],
        ));
        let again_dump = tmp.path().join(format!("{name}.again"));
        std::fs::write(&again_dump, printed).expect("write");
        let again = tmp.path().join(format!("{name}.again.img"));
        ok(&from_dump(&again_dump, &again, &versions));
        assert_eq!(sha256_file(&again), expected.trim(), "{name}: round trip");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} corpus images checked");
}

fn sample_dir(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::write(root.join("a/small"), b"tiny").expect("write");
    std::fs::write(root.join("a/b/big"), vec![7u8; 200_000]).expect("write");
    std::fs::write(root.join("big2"), vec![8u8; 5000]).expect("write");
    std::os::unix::fs::symlink("a/b/big", root.join("link")).expect("symlink");
}

fn count_objects(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("objects"))
        .expect("objects")
        .map(|d| {
            std::fs::read_dir(d.expect("entry").path())
                .expect("dir")
                .count()
        })
        .sum()
}

#[test]
fn create_image_and_compute_id_agree() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    sample_dir(&src);
    for hash in ["sha256", "sha512"] {
        let repo = tmp.path().join(format!("repo-{hash}"));
        ok(&cfsctl::<&std::ffi::OsStr>(
            &repo,
            &[
                "init".as_ref(),
                "--insecure".as_ref(),
                "--hash".as_ref(),
                hash.as_ref(),
            ],
        ));
        let computed = ok(&cfsctl::<&std::ffi::OsStr>(
            &tmp.path().join("unused"),
            &[
                "compute-id".as_ref(),
                "--hash".as_ref(),
                hash.as_ref(),
                src.as_os_str(),
            ],
        ));
        let created = ok(&cfsctl::<&std::ffi::OsStr>(
            &repo,
            &["create-image".as_ref(), src.as_os_str(), "img".as_ref()],
        ));
        assert_eq!(computed, created, "{hash}");
        assert_eq!(
            created.trim().len(),
            if hash == "sha256" { 64 } else { 128 }
        );
        // Storing again changes nothing.
        let again = ok(&cfsctl::<&std::ffi::OsStr>(
            &repo,
            &["create-image".as_ref(), src.as_os_str()],
        ));
        assert_eq!(again, created);
        // The stored image prints as a dumpfile naming the objects.
        let hex = created.trim();
        let object = repo.join("objects").join(&hex[..2]).join(&hex[2..]);
        let dump = ok(&cfsctl::<&std::ffi::OsStr>(
            &repo,
            &["image".as_ref(), "dump".as_ref(), object.as_os_str()],
        ));
        assert!(dump.starts_with("/ "), "{dump}");
        assert!(dump.contains("/a/b/big 200000 100644"), "{dump}");
    }
    // A changed mtime is a different tree, hence a different ID.
    let before = ok(&cfsctl::<&std::ffi::OsStr>(
        tmp.path(),
        &["compute-id".as_ref(), src.as_os_str()],
    ));
    let f = std::fs::File::options()
        .write(true)
        .open(src.join("a/small"))
        .expect("open");
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(5, 6))
        .expect("set mtime");
    drop(f);
    let after = ok(&cfsctl::<&std::ffi::OsStr>(
        tmp.path(),
        &["compute-id".as_ref(), src.as_os_str()],
    ));
    assert_ne!(before, after);
}

#[test]
fn gc_and_fsck_follow_image_objects() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    let src = tmp.path().join("src");
    sample_dir(&src);
    ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &["init".as_ref(), "--insecure".as_ref()],
    ));
    let id = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &["create-image".as_ref(), src.as_os_str(), "keep".as_ref()],
    ))
    .trim()
    .to_owned();
    // Two file objects (200000 and 5000 bytes) and the image.
    assert_eq!(count_objects(&repo), 3);
    let gc = ok(&cfsctl::<&std::ffi::OsStr>(&repo, &["gc".as_ref()]));
    assert!(gc.contains("removed 0 objects"), "{gc}");
    assert_eq!(count_objects(&repo), 3);
    let fsck = ok(&cfsctl::<&std::ffi::OsStr>(&repo, &["fsck".as_ref()]));
    assert!(fsck.starts_with("ok:"), "{fsck}");

    // A missing file object is found through the image.
    let big = std::fs::read_dir(repo.join("objects"))
        .expect("objects")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("dir"))
        .map(|e| e.expect("entry").path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == 200_000))
        .expect("the big object");
    let saved = std::fs::read(&big).expect("read");
    std::fs::remove_file(&big).expect("rm");
    let out = cfsctl::<&std::ffi::OsStr>(&repo, &["fsck".as_ref()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("images/{id}: missing-object")),
        "{text}"
    );
    std::fs::write(&big, saved).expect("restore");
    ok(&cfsctl::<&std::ffi::OsStr>(&repo, &["fsck".as_ref()]));

    // Without its ref, the image and its objects go.
    std::fs::remove_file(repo.join("images/refs/keep")).expect("rm ref");
    let gc = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &["gc".as_ref(), "-v".as_ref()],
    ));
    assert!(gc.contains(&format!("removed image {id}")), "{gc}");
    assert!(gc.contains("removed 3 objects"), "{gc}");
    assert_eq!(count_objects(&repo), 0);
}
