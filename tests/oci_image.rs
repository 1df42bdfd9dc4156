//! End-to-end tests of `cfsctl oci compute-id|create-image|mount|dump`: an image's layers merged
//! into one composefs image.
//!
//! - A synthetic image (whiteouts, an opaque directory, a hardlink across layers, an implicit
//!   parent) pulled from an OCI layout: the dump, the ID (same by name and by config digest,
//!   nothing stored by compute-id), create-image's image ref and gc, a bad hardlink's error,
//!   and (as root) the mount.
//! - The Debian fixture (root; `cargo xtask fixtures`, umoci, skopeo, GNU tar): the same tree
//!   from OCI layers and from a directory gives the same image ID, and the mounted image equals
//!   `umoci unpack` file by file. See docs/image.md ("Images from OCI layers") for the two
//!   known differences from umoci.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use common::snapshot::{assert_same, snapshot};
use common::{Mounted, cfsctl, fixtures, ok};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use oci_layout::{AMD64, Comp, OciLayout, layer};

fn run(repo: &Path, args: &[&str]) -> Output {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    cfsctl(repo, &a)
}

/// A tar of entries: `(path, kind, data or link target)`, kind `d` directory, `f` file, `h`
/// hardlink.
fn tar(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &b""[..]).expect("dir");
            }
            'f' => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data).expect("file");
            }
            'h' => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, path, OsStr::from_bytes(data))
                    .expect("link");
            }
            _ => panic!("kind {kind}"),
        }
    }
    b.into_inner().expect("tar")
}

#[test]
fn synthetic_image_compute_create_dump_mount() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"]));
    let big = vec![0x5au8; 5000];
    let l1 = tar(&[
        ("etc", 'd', b""),
        ("etc/motd", 'f', b"hello"),
        ("etc/keep", 'f', b"keep"),
        ("bin", 'd', b""),
        ("bin/tool", 'f', &big),
        ("var", 'd', b""),
        ("var/log", 'd', b""),
        ("var/log/apt", 'd', b""),
        ("var/log/apt/history", 'f', b"h"),
    ]);
    let l2 = tar(&[
        ("etc/.wh.motd", 'f', b""),
        ("var/log/.wh..wh..opq", 'f', b""),
        ("lib", 'd', b""),
        ("lib/tool.link", 'h', b"bin/tool"),
        ("implicit/parent/file", 'f', b"x"),
    ]);
    let bad = tar(&[("dangling", 'h', b"no/such/file")]);
    let dir = tmp.path().join("layout");
    let mut layout = OciLayout::create(&dir);
    let img = layout.add_image(
        Some("syn"),
        &[layer(&l1, Comp::Gzip), layer(&l2, Comp::Plain)],
        AMD64,
    );
    layout.add_image(Some("bad"), &[layer(&bad, Comp::Plain)], AMD64);
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("syn"), "syn"],
    ));
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("bad"), "bad"],
    ));

    let dump = ok(&run(&repo, &["oci", "dump", "syn"]));
    let paths: Vec<&str> = dump
        .lines()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "/",
            "/bin",
            "/bin/tool",
            "/etc",
            "/etc/keep",
            "/implicit",
            "/implicit/parent",
            "/implicit/parent/file",
            "/lib",
            "/lib/tool.link",
            "/var",
            "/var/log"
        ],
        "{dump}"
    );
    let line = |p: &str| {
        dump.lines()
            .find(|l| l.split(' ').next() == Some(p))
            .unwrap_or_else(|| panic!("{p} in {dump}"))
            .to_owned()
    };
    assert!(line("/").starts_with("/ 4096 40555 "), "{dump}");
    assert!(line("/implicit").contains(" 40755 3 0 0 0 0.0 "), "{dump}");
    // The hardlink across layers: one inode, two names.
    assert!(line("/lib/tool.link").contains(" @100644 2 "), "{dump}");
    assert!(line("/bin/tool").contains(" 100644 2 "), "{dump}");

    let id = ok(&run(&repo, &["oci", "compute-id", "syn"]));
    assert_eq!(
        ok(&run(&repo, &["oci", "compute-id", &img.config_digest])),
        id
    );
    assert_eq!(
        std::fs::read_dir(repo.join("images"))
            .expect("images")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "refs"))
            .count(),
        0,
        "compute-id stores nothing"
    );
    assert_eq!(ok(&run(&repo, &["oci", "create-image", "syn"])), id);
    let hex = id.trim().trim_start_matches("sha256:");
    let stored = repo.join("images").join(hex);
    assert!(stored.exists());
    assert!(repo.join("images/refs/oci/syn").exists());
    // The stored image prints the same dumpfile as the merged tree.
    let a: Vec<&OsStr> = vec!["image".as_ref(), "dump".as_ref(), stored.as_os_str()];
    assert_eq!(ok(&cfsctl(&repo, &a)), dump);
    // gc keeps the image and the objects it needs while the ref names it.
    let gc = ok(&run(&repo, &["gc"]));
    assert!(gc.contains("removed 0 objects"), "{gc}");
    assert!(stored.exists());
    ok(&run(&repo, &["fsck"]));

    let out = run(&repo, &["oci", "compute-id", "bad"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"dangling\"") && err.contains("does not exist"),
        "{err}"
    );

    // Pointing a name at another image (by tag or by pull) drops the composefs image ref
    // made under it: it described the old image, and would keep it alive.
    let moving = repo.join("images/refs/oci/moving");
    ok(&run(&repo, &["oci", "tag", "syn", "moving"]));
    ok(&run(&repo, &["oci", "create-image", "moving"]));
    assert!(moving.exists());
    ok(&run(&repo, &["oci", "tag", "syn", "moving"]));
    assert!(moving.exists(), "the same image again: still valid");
    ok(&run(&repo, &["oci", "tag", "bad", "moving"]));
    assert!(!moving.exists());
    ok(&run(&repo, &["oci", "tag", "syn", "moving"]));
    ok(&run(&repo, &["oci", "create-image", "moving"]));
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("bad"), "moving"],
    ));
    assert!(!moving.exists());
    ok(&run(&repo, &["oci", "untag", "moving"]));

    // `oci rm` removes every name of the image and every composefs image ref made for it
    // (`oci/NAME`, also one made by config digest), so gc frees the composefs image too.
    ok(&run(&repo, &["oci", "tag", "syn", "syn-copy"]));
    assert_eq!(
        ok(&run(&repo, &["oci", "create-image", &img.config_digest])),
        id
    );
    let rm = ok(&run(&repo, &["oci", "rm", "syn-copy"]));
    for line in [
        "untagged syn\n",
        "untagged syn-copy\n",
        "removed image ref oci/syn\n",
        &format!("removed image ref oci/{}\n", img.config_digest),
    ] {
        assert!(rm.contains(line), "{line:?} in {rm}");
    }
    let gc = ok(&run(&repo, &["gc", "-v"]));
    assert!(gc.contains(&format!("removed image {hex}")), "{gc}");
    assert!(!stored.exists());
    // Pulled again (its layers come back from the layout) for the mount part.
    ok(&run(
        &repo,
        &["oci", "pull", "-q", &layout.reference("syn"), "syn"],
    ));

    if !common::root_or_skip("the mount part") {
        return;
    }
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let a: Vec<&OsStr> = vec![
        "oci".as_ref(),
        "mount".as_ref(),
        "syn".as_ref(),
        mnt.as_os_str(),
    ];
    ok(&cfsctl(&repo, &a));
    let _m = Mounted(mnt.clone());
    assert_eq!(std::fs::read(mnt.join("bin/tool")).expect("read"), big);
    let t = std::fs::metadata(mnt.join("bin/tool")).expect("stat");
    let l = std::fs::metadata(mnt.join("lib/tool.link")).expect("stat");
    assert_eq!((t.ino(), t.nlink()), (l.ino(), 2));
    assert!(!mnt.join("etc/motd").exists());
    assert_eq!(std::fs::read(mnt.join("etc/keep")).expect("read"), b"keep");
    assert_eq!(
        std::fs::read_dir(mnt.join("var/log")).expect("ls").count(),
        0
    );

    // gc while the image is mounted, with its names gone (`oci untag` removes the name and
    // the image ref `oci/syn` that `oci mount` made): the layer and config streams are
    // collected, but the mount keeps the EROFS image and every object it redirects to, so
    // it still reads its files.
    ok(&run(&repo, &["oci", "untag", "syn"]));
    assert!(!repo.join("images/refs/oci/syn").exists());
    let gc = ok(&run(&repo, &["gc", "-v"]));
    assert!(gc.contains("removed stream oci-config-sha256:"), "{gc}");
    assert!(gc.contains(&format!("kept image {hex} (mounted")), "{gc}");
    assert!(stored.exists(), "the mounted image survives gc");
    // Forget cached lookups so the next read goes to the objects directory again.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    assert_eq!(
        std::fs::read(mnt.join("bin/tool")).expect("read after gc"),
        big
    );
    let fsck = run(&repo, &["fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    // Unmounted, nothing keeps it.
    drop(_m);
    let gc = ok(&run(&repo, &["gc", "-v"]));
    assert!(gc.contains(&format!("removed image {hex}")), "{gc}");
    assert!(!stored.exists());
}

// ---------------------------------------------------------------------------------------------
// The Debian fixture.

fn tool(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Extracts uncompressed OCI layers into `root` in order with GNU tar, applying whiteouts
/// first (as an OCI layer's whiteouts act on the layers below it). Not `--recursive-unlink`:
/// it would empty every directory a later layer names again.
fn extract_with_gnu_tar(root: &Path, blobs: &[PathBuf]) {
    for blob in blobs {
        let file = std::fs::File::open(blob).expect("blob");
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let path = entry.path().expect("path").into_owned();
            let (Some(name), parent) = (path.file_name(), path.parent()) else {
                continue;
            };
            let dir = root.join(parent.unwrap_or(Path::new("")));
            let name = name.as_bytes();
            if name == b".wh..wh..opq" {
                for e in std::fs::read_dir(&dir).into_iter().flatten() {
                    let p = e.expect("entry").path();
                    if p.symlink_metadata().expect("lstat").is_dir() {
                        std::fs::remove_dir_all(&p).expect("rm -r");
                    } else {
                        std::fs::remove_file(&p).expect("rm");
                    }
                }
            } else if let Some(victim) = name.strip_prefix(b".wh.") {
                let p = dir.join(OsStr::from_bytes(victim));
                match p.symlink_metadata() {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).expect("rm -r"),
                    Ok(_) => std::fs::remove_file(&p).expect("rm"),
                    Err(_) => {}
                }
            }
        }
        tool(
            Command::new("tar")
                .arg("-C")
                .arg(root)
                .args([
                    "-x",
                    "-p",
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "--exclude=.wh.*",
                    "-f",
                ])
                .arg(blob),
        );
    }
}

/// Applies the canonical-tree rules (docs/image.md) to an unpacked rootfs on disk: the root
/// directory gets `/usr`'s mode, owner and mtime; `/run` is emptied and gets `/usr`'s mtime.
fn like_canonical(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let usr = std::fs::metadata(dir.join("usr")).expect("stat usr");
    let mtime = usr.modified().expect("mtime");
    let run = dir.join("run");
    if run.is_dir() {
        for e in std::fs::read_dir(&run).expect("read run") {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).expect("rm");
            } else {
                std::fs::remove_file(&p).expect("rm");
            }
        }
        std::fs::File::open(&run)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime of run");
    }
    rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(usr.mode() & 0o7777)).expect("chmod");
    rustix::fs::chown(
        dir,
        Some(rustix::process::Uid::from_raw(usr.uid())),
        Some(rustix::process::Gid::from_raw(usr.gid())),
    )
    .expect("chown");
    std::fs::File::open(dir)
        .and_then(|f| f.set_modified(mtime))
        .expect("mtime of root");
}

/// The Debian fixture: OCI layers → image ID equal to the ID of the same rootfs as a
/// directory; the mounted image equal to `umoci unpack`, file by file.
#[test]
fn debian_fixture_same_tree_same_id_and_mount_matches_umoci() {
    if !common::root_or_skip("the Debian fixture test (mounting, extracting files of other owners)")
    {
        return;
    }
    let Some((fixtures, json)) = fixtures() else {
        return;
    };
    for t in ["skopeo", "umoci", "tar"] {
        if !common::require_tool(t) {
            return;
        }
    }
    let tag = "debian-plain";
    let image = json["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["tag"] == tag || i["name"] == tag)
        .unwrap_or_else(|| panic!("fixture {tag} missing"));
    let oci = fixtures.join("oci");
    let blobs: Vec<PathBuf> = image["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().expect("digest");
            oci.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        })
        .collect();

    let started = Instant::now();
    // The repository stays on disk (file-backed EROFS cannot be mounted from tmpfs: "Block
    // device required"); the two extracted copies go to tmpfs when there is one, since
    // deleting them from this host's ext4 can take longer than the whole test (~700 MB of RAM
    // while it runs).
    let tmp = tempfile::tempdir().expect("tmp");
    let scratch = match tempfile::Builder::new().tempdir_in("/dev/shm") {
        Ok(t) => t,
        Err(_) => tempfile::tempdir().expect("tmp"),
    };
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"]));
    ok(&run(
        &repo,
        &[
            "oci",
            "pull",
            "-q",
            &format!("oci:{}:{tag}", oci.display()),
            "deb",
        ],
    ));
    // `--xattrs all` throughout: the xattrs are compared too (the default canonical-tree
    // filter keeps only security.capability; tests/composefs_rs.rs checks the defaults).
    let id = ok(&run(
        &repo,
        &["oci", "compute-id", "--xattrs", "all", "deb"],
    ));
    eprintln!("pull + compute-id: {:?}", started.elapsed());

    // 1. Same tree, same ID: the layers extracted by GNU tar (whiteouts applied); the
    //    canonical-tree rules give the root `/usr`'s metadata and empty `/run` on both sides.
    let t = Instant::now();
    let extracted = scratch.path().join("extracted");
    std::fs::create_dir(&extracted).expect("mkdir");
    extract_with_gnu_tar(&extracted, &blobs);
    let a: Vec<&OsStr> = vec![
        "compute-id".as_ref(),
        "--xattrs".as_ref(),
        "all".as_ref(),
        extracted.as_os_str(),
    ];
    assert_eq!(
        ok(&cfsctl(&repo, &a)),
        id,
        "the directory extracted by GNU tar has another image ID than the OCI layers"
    );
    eprintln!("GNU tar extraction + compute-id: {:?}", t.elapsed());

    // 2. The mount against umoci's unpack.
    let t = Instant::now();
    let bundle = scratch.path().join("bundle");
    tool(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", oci.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let a: Vec<&OsStr> = vec![
        "oci".as_ref(),
        "mount".as_ref(),
        "--xattrs".as_ref(),
        "all".as_ref(),
        "deb".as_ref(),
        mnt.as_os_str(),
    ];
    ok(&cfsctl(&repo, &a));
    let mount = Mounted(mnt.clone());
    let mut mounted = snapshot(&mnt);
    // The canonical-tree rules, applied to umoci's rootfs: the root gets `/usr`'s metadata,
    // `/run` is emptied and gets `/usr`'s mtime (umoci's root is 0755, mtime 0).
    let [usr, root] = [Path::new("usr"), Path::new("")].map(|p| {
        let e = &mounted[p];
        (e.mode, e.uid, e.gid, e.mtime)
    });
    assert_eq!(root, usr, "the root takes /usr's metadata");
    like_canonical(&rootfs);
    let unpacked = snapshot(&rootfs);
    // Known difference (docs/image.md): xattrs with an empty value, which umoci drops.
    let mut dropped = Vec::new();
    for (path, e) in &mut mounted {
        e.xattrs.retain(|k, v| {
            let keep = !v.is_empty();
            if !keep {
                dropped.push((path.clone(), k.clone()));
            }
            keep
        });
    }
    assert_same(&mounted, &unpacked);
    assert_eq!(
        dropped,
        [(
            PathBuf::from("opt/fixture/data/tagged"),
            b"user.fixture.empty".to_vec()
        )],
        "the only empty-valued xattr of the fixture"
    );
    eprintln!(
        "umoci unpack + mount + compare {} files: {:?}",
        mounted.len(),
        t.elapsed()
    );

    // 3. umoci's rootfs with the empty xattr restored has the image's ID too.
    rustix::fs::lsetxattr(
        rootfs.join("opt/fixture/data/tagged"),
        "user.fixture.empty",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    let a: Vec<&OsStr> = vec![
        "compute-id".as_ref(),
        "--xattrs".as_ref(),
        "all".as_ref(),
        rootfs.as_os_str(),
    ];
    assert_eq!(ok(&cfsctl(&repo, &a)), id);
    drop(mount);
    let t = Instant::now();
    drop((scratch, tmp));
    eprintln!("cleanup: {:?}", t.elapsed());
    eprintln!("total: {:?}", started.elapsed());
}
