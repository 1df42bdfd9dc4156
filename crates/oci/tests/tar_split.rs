//! Tar splitting against real archives: made by GNU tar (every format, sparse files, long
//! names, links, xattrs, devices, record padding) and by the `tar` crate, plus hand-made
//! malformed and ambiguous ones. Checks that the stream re-creates the input byte for byte,
//! that file contents became (deduplicated) objects, and that `entries` reads back what tar
//! wrote.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use cfs_oci::tar::{Content, EntryKind, SparseFormat, TarEntry, TarError, entries, split};
use cfs_repository::splitstream::INLINE_MAX;
use cfs_repository::{HashAlgorithm, InitVerity, ObjectId, Repository};
use sha2::{Digest, Sha256};

fn new_repo(dir: &Path) -> Repository {
    Repository::init(
        &dir.join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init repository")
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Splits `archive`, re-creates it from the stream, and checks it is identical.
fn round_trip(repo: &Repository, archive: &[u8]) -> ObjectId {
    let id = split(repo, archive).expect("split");
    let mut out = Vec::new();
    let n = repo
        .open_stream_object(&id)
        .expect("open stream")
        .write_to(repo, &mut out)
        .expect("re-create");
    assert_eq!(n as usize, archive.len());
    assert_eq!(
        Sha256::digest(&out),
        Sha256::digest(archive),
        "re-created archive differs"
    );
    assert!(out == archive);
    id
}

fn read_entries(repo: &Repository, id: &ObjectId) -> Vec<TarEntry> {
    let reader = repo.open_stream_object(id).expect("open stream");
    entries(repo, reader)
        .expect("entries")
        .collect::<Result<Vec<_>, _>>()
        .expect("read entries")
}

/// Checks the inline/external rule and that objects hold exactly the entry's data.
fn check_contents(repo: &Repository, list: &[TarEntry]) {
    for e in list {
        match &e.content {
            Content::External { object, size } => {
                assert!(e.has_file_data(), "{:?} is external", e.path);
                assert!(*size > INLINE_MAX as u64);
                assert_eq!(*size, e.data_size);
                let data = repo.read_object(object).expect("read object");
                assert_eq!(data.len() as u64, *size);
            }
            Content::Inline(data) => {
                assert_eq!(data.len() as u64, e.data_size);
                if e.has_file_data() {
                    assert!(data.len() <= INLINE_MAX, "{:?} inline", e.path);
                }
            }
        }
    }
}

fn by_path(list: &[TarEntry]) -> BTreeMap<String, &TarEntry> {
    list.iter()
        .map(|e| {
            let p = String::from_utf8_lossy(&e.path);
            (p.trim_end_matches('/').to_owned(), e)
        })
        .collect()
}

/// A source tree exercising sizes, names and link types.
struct Tree {
    files: Vec<(String, Vec<u8>)>,
}

const LONG_DIR: &str = "d123456789d123456789d123456789d123456789d123456789d123456789\
                        d123456789d123456789d123456789d123456789";

fn make_tree(root: &Path) -> Tree {
    let mut files = Vec::new();
    for (name, len, seed) in [
        ("empty", 0usize, 1u64),
        ("s64", 64, 2),
        ("s65", 65, 3),
        ("s4096", 4096, 4),
        ("dup4096", 4096, 4),
        ("m1", 1 << 20, 5),
        ("m3", 3 << 20, 6),
    ] {
        files.push((name.to_owned(), bytes(seed, len)));
    }
    // > 100 and > 255 bytes.
    let long1 = format!("{LONG_DIR}/file-with-a-longer-name-{}", "x".repeat(40));
    let long2 = format!("{LONG_DIR}/{LONG_DIR}/{}", "y".repeat(120));
    assert!(long1.len() > 100 && long2.len() > 255);
    files.push((long1, bytes(7, 300)));
    files.push((long2, bytes(8, 10)));
    for (name, data) in &files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
    }
    std::fs::hard_link(root.join("s4096"), root.join("hardlink")).expect("hardlink");
    std::os::unix::fs::symlink("s65", root.join("symlink")).expect("symlink");
    std::os::unix::fs::symlink(
        format!("{LONG_DIR}/{LONG_DIR}/target"),
        root.join("longlink"),
    )
    .expect("symlink");
    Tree { files }
}

fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .args(args)
        .output()
        .expect("run GNU tar (Debian package `tar`)");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gnu_list(archive: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run tar");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = archive.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("tar -t");
    writer.join().expect("join").expect("write to tar");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn gnu_tar_formats_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let tree = make_tree(&src);
    let repo = new_repo(tmp.path());
    for format in ["gnu", "oldgnu", "pax", "ustar"] {
        let mut names: Vec<String> = tree.files.iter().map(|(n, _)| n.clone()).collect();
        names.extend(["hardlink", "symlink", "longlink"].map(String::from));
        if format == "ustar" {
            // ustar cannot hold the > 255-byte name nor the long link target.
            names.retain(|n| n.len() <= 255 && n != "longlink");
        }
        let mut args = vec![format!("--format={format}"), "-b".into(), "20".into()];
        args.extend(["-cf".into(), "-".into()]);
        args.extend(names.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let archive = gnu_tar(&src, &args);
        assert_eq!(archive.len() % 10240, 0, "-b 20 record padding");
        let id = round_trip(&repo, &archive);
        let list = read_entries(&repo, &id);
        check_contents(&repo, &list);

        // Same entries as GNU tar lists.
        let paths: Vec<String> = list
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(paths, gnu_list(&archive), "{format}");

        let map = by_path(&list);
        for (name, data) in &tree.files {
            if !names.contains(name) {
                continue;
            }
            let e = map
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(e.kind, EntryKind::Regular);
            assert_eq!(e.size, data.len() as u64, "{format} {name}");
            match &e.content {
                Content::Inline(d) => assert_eq!(d, data),
                Content::External { object, .. } => {
                    assert_eq!(&repo.read_object(object).expect("object"), data);
                }
            }
        }
        // Identical files share one object.
        let obj = |n: &str| match &map[n].content {
            Content::External { object, .. } => *object,
            Content::Inline(_) => panic!("{n} inline"),
        };
        assert_eq!(obj("s4096"), obj("dup4096"));
        let header = repo.open_stream_object(&id).expect("open").header().clone();
        let externals = list
            .iter()
            .filter(|e| matches!(e.content, Content::External { .. }))
            .count();
        assert_eq!(header.objects.len(), externals - 1, "dedup in {format}");

        assert_eq!(map["hardlink"].kind, EntryKind::Hardlink);
        assert_eq!(map["hardlink"].link_target.as_deref(), Some(&b"s4096"[..]));
        assert_eq!(map["symlink"].kind, EntryKind::Symlink);
        assert_eq!(map["symlink"].link_target.as_deref(), Some(&b"s65"[..]));
        if format != "ustar" {
            assert_eq!(
                map["longlink"].link_target.as_deref(),
                Some(format!("{LONG_DIR}/{LONG_DIR}/target").as_bytes())
            );
        }
    }
}

#[test]
fn gnu_tar_sparse_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let f = std::fs::File::create(src.join("sparse")).expect("create");
    f.set_len(8 << 20).expect("truncate");
    use std::os::unix::fs::FileExt;
    f.write_all_at(&bytes(9, 5000), 1 << 20).expect("write");
    f.write_all_at(&bytes(10, 100), 6 << 20).expect("write");
    drop(f);
    let repo = new_repo(tmp.path());
    let cases: &[(&[&str], SparseFormat)] = &[
        (&["--format=gnu"], SparseFormat::OldGnu),
        (&["--format=oldgnu"], SparseFormat::OldGnu),
        (
            &["--format=pax", "--sparse-version=0.0"],
            SparseFormat::Pax00,
        ),
        (
            &["--format=pax", "--sparse-version=0.1"],
            SparseFormat::Pax01,
        ),
        (
            &["--format=pax", "--sparse-version=1.0"],
            SparseFormat::Pax10,
        ),
    ];
    for (opts, format) in cases {
        let mut args = opts.to_vec();
        args.extend(["--sparse", "-cf", "-", "sparse"]);
        let archive = gnu_tar(&src, &args);
        let id = round_trip(&repo, &archive);
        let list = read_entries(&repo, &id);
        check_contents(&repo, &list);
        let e = list.last().expect("an entry");
        assert_eq!(e.path, b"sparse", "{opts:?}");
        let sparse = e.sparse.as_ref().expect("sparse");
        assert_eq!(sparse.format, *format);
        assert_eq!(sparse.real_size, 8 << 20);
        assert_eq!(e.size, 8 << 20);
        if let Some(map) = &sparse.map {
            let stored: u64 = map.iter().map(|(_, l)| l).sum();
            assert_eq!(stored, e.data_size, "{opts:?}");
        }
        assert!(matches!(e.content, Content::External { .. }));
    }
}

#[test]
fn gnu_tar_xattrs_and_devices() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"hello").expect("write");
    // A value with a newline and a NUL: PAX records must be split by length, not by lines.
    let value = b"line1\nline2\0end";
    let have_xattrs = rustix::fs::setxattr(
        src.join("f").as_path(),
        "user.test",
        value,
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    let have_dev = rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null").as_path(),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    let mut names = vec!["f"];
    if have_dev {
        names.push("null");
    } else {
        eprintln!("mknod not permitted here: device entries come from the tar crate test only");
    }
    let mut args = vec!["--format=pax", "--xattrs", "--xattrs-include=*", "-cf", "-"];
    args.extend(&names);
    let archive = gnu_tar(&src, &args);
    let repo = new_repo(tmp.path());
    let id = round_trip(&repo, &archive);
    let list = read_entries(&repo, &id);
    let map = by_path(&list);
    if have_xattrs {
        assert_eq!(
            map["f"].xattrs,
            vec![(b"user.test".to_vec(), value.to_vec())]
        );
    } else {
        eprintln!("no user xattrs on this filesystem: xattrs come from the tar crate test only");
    }
    assert_eq!(map["f"].content, Content::Inline(b"hello".to_vec()));
    if have_dev {
        assert_eq!(map["null"].kind, EntryKind::CharDevice);
        assert_eq!(map["null"].device, Some((1, 3)));
    }
}

#[test]
fn tar_crate_archives() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let mut b = tar::Builder::new(Vec::new());
    // PAX header with xattrs, sub-second mtime, and a path override.
    b.append_pax_extensions([
        (
            "SCHILY.xattr.security.capability",
            &[1u8, 0, 0, 2, 0x0a, 0x20][..],
        ),
        ("SCHILY.xattr.user.empty", &b""[..]),
        ("mtime", &b"1700000000.123456789"[..]),
        ("path", &b"pax/overridden-name"[..]),
    ])
    .expect("pax");
    let data = bytes(11, 70_000);
    let mut h = tar::Header::new_ustar();
    h.set_path("short").expect("path");
    h.set_size(data.len() as u64);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(2000);
    h.set_mtime(5);
    h.set_cksum();
    b.append(&h, &data[..]).expect("append");
    // GNU long name (tar crate writes `L` headers).
    let long = format!("{LONG_DIR}/{LONG_DIR}/{LONG_DIR}/leaf");
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"abc"[..]).expect("long");
    // Devices and a FIFO.
    for (name, ty, major, minor) in [
        ("dev/blk", tar::EntryType::Block, 8u32, 1u32),
        ("dev/chr", tar::EntryType::Char, 1, 5),
        ("dev/fifo", tar::EntryType::Fifo, 0, 0),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(ty);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        b.append(&h, std::io::empty()).expect("dev");
    }
    let mut archive = b.into_inner().expect("finish");
    // Garbage after the end-of-archive marker is kept too.
    archive.extend_from_slice(b"trailing garbage");
    let id = round_trip(&repo, &archive);
    let list = read_entries(&repo, &id);
    check_contents(&repo, &list);
    let map = by_path(&list);
    let e = map["pax/overridden-name"];
    assert_eq!(
        e.xattrs,
        vec![
            (
                b"security.capability".to_vec(),
                vec![1u8, 0, 0, 2, 0x0a, 0x20]
            ),
            (b"user.empty".to_vec(), Vec::new()),
        ]
    );
    assert_eq!((e.mtime, e.mtime_nsec), (1_700_000_000, 123_456_789));
    assert_eq!((e.mode & 0o7777, e.uid, e.gid), (0o4755, 1000, 2000));
    assert_eq!(e.size, 70_000);
    assert!(matches!(e.content, Content::External { size: 70_000, .. }));
    assert_eq!(map[long.as_str()].content, Content::Inline(b"abc".to_vec()));
    assert_eq!(map["dev/blk"].kind, EntryKind::BlockDevice);
    assert_eq!(map["dev/blk"].device, Some((8, 1)));
    assert_eq!(map["dev/chr"].device, Some((1, 5)));
    assert_eq!(map["dev/fifo"].kind, EntryKind::Fifo);
}

// ----- hand-made archives -----

fn header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("path");
    h.set_entry_type(tar::EntryType::new(typeflag));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    *h.as_bytes()
}

fn pax_header(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = format!(" {k}={v}\n");
        let mut n = rest.len() + 1;
        while format!("{n}{rest}").len() != n {
            n += 1;
        }
        body.extend_from_slice(format!("{n}{rest}").as_bytes());
    }
    let mut out = header("PaxHeaders/x", b'x', body.len() as u64).to_vec();
    out.extend_from_slice(&padded(&body));
    out
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

fn refuse(archive: &[u8]) -> TarError {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    split(&repo, archive).expect_err("must be refused")
}

#[test]
fn pax_size_overrides_header_size() {
    // TARmageddon: the ustar size says 0, PAX says 1536; the "data" looks like a tar header.
    // The one reading (GNU tar's) is: one file of 1536 bytes.
    let mut inner = header("smuggled", b'0', 0).to_vec();
    inner.extend(end());
    let mut archive = pax_header(&[("size", "1536")]);
    archive.extend_from_slice(&header("outer", b'0', 0));
    archive.extend_from_slice(&inner);
    archive.extend(end());
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let id = round_trip(&repo, &archive);
    let list = read_entries(&repo, &id);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].path, b"outer");
    assert_eq!(list[0].size, 1536);
    assert_eq!(gnu_list(&archive), vec!["outer".to_owned()]);
}

#[test]
fn lone_zero_block_ends_the_archive() {
    let mut archive = header("a", b'0', 0).to_vec();
    archive.extend_from_slice(&[0u8; 512]);
    archive.extend_from_slice(&header("after-the-end", b'0', 0));
    archive.extend(end());
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let id = round_trip(&repo, &archive);
    let list = read_entries(&repo, &id);
    assert_eq!(list.len(), 1, "GNU tar stops at the first zero block");
}

#[test]
fn malformed_archives_are_refused_clearly() {
    // Checksum.
    let mut bad = header("file", b'0', 0);
    bad[0] = b'g';
    let mut a = bad.to_vec();
    a.extend(end());
    let e = refuse(&a);
    assert!(matches!(e, TarError::Checksum { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains("checksum"));

    // Truncated data.
    let mut a = header("big", b'0', 100_000).to_vec();
    a.extend_from_slice(&bytes(1, 5000));
    let e = refuse(&a);
    assert!(matches!(e, TarError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("\"big\"") && e.to_string().contains("truncated"));

    // Negative base-256 size.
    let mut h = header("neg", b'0', 0);
    h[124..136].copy_from_slice(&[0xff; 12]);
    let mut t = tar::Header::new_old();
    t.as_mut_bytes().copy_from_slice(&h);
    t.set_cksum();
    let mut a = t.as_bytes().to_vec();
    a.extend(end());
    let e = refuse(&a);
    assert!(e.to_string().contains("negative"), "{e}");

    // Absurd PAX size (past off_t) and a non-numeric one.
    for size in ["99999999999999999999", "12abc"] {
        let mut a = pax_header(&[("size", size)]);
        a.extend_from_slice(&header("f", b'0', 0));
        a.extend(end());
        let e = refuse(&a);
        assert!(e.to_string().contains("invalid PAX size"), "{e}");
    }

    // A PAX header larger than the limit.
    let mut h = header("PaxHeaders/huge", b'x', cfs_oci::tar::METADATA_MAX + 1);
    let mut t = tar::Header::new_old();
    t.as_mut_bytes().copy_from_slice(&h);
    t.set_cksum();
    h = *t.as_bytes();
    let e = refuse(&h);
    assert!(matches!(e, TarError::TooLarge { .. }), "{e}");

    // Malformed PAX record.
    let mut a = header("PaxHeaders/x", b'x', 10).to_vec();
    a.extend_from_slice(&padded(b"10 path=ab"));
    a.extend_from_slice(&header("f", b'0', 0));
    let e = refuse(&a);
    assert!(e.to_string().contains("extended header"), "{e}");
}

#[test]
fn ambiguous_archives_are_refused() {
    // Symlink with data: `tar -t` skips it, `tar -x` and Go do not.
    let mut a = header("sym", b'2', 5).to_vec();
    a.extend_from_slice(&padded(b"hello"));
    a.extend(end());
    let e = refuse(&a);
    assert!(matches!(e, TarError::Ambiguous { .. }), "{e}");
    assert!(e.to_string().contains("symlink"));

    // Hard link with a PAX size.
    let mut a = pax_header(&[("size", "5")]);
    a.extend_from_slice(&header("lnk", b'1', 0));
    a.extend_from_slice(&padded(b"hello"));
    let e = refuse(&a);
    assert!(matches!(e, TarError::Ambiguous { .. }), "{e}");

    // Global size.
    let mut a = pax_header(&[("size", "5")]);
    a[156] = b'g';
    let mut t = tar::Header::new_old();
    t.as_mut_bytes().copy_from_slice(&a[..512]);
    t.set_cksum();
    a[..512].copy_from_slice(t.as_bytes());
    a.extend(end());
    let e = refuse(&a);
    assert!(e.to_string().contains("global"), "{e}");

    // A hard link's ustar size field is ignored by every reader but tar-rs: accepted, no data.
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let mut a = header("f", b'0', 0).to_vec();
    a.extend_from_slice(&header("lnk", b'1', 5));
    a.extend_from_slice(&header("g", b'0', 0));
    a.extend(end());
    let id = round_trip(&repo, &a);
    assert_eq!(read_entries(&repo, &id).len(), 3);
}

/// A PAX global header (`g`) with these records.
fn global_header(records: &[(&str, &str)]) -> Vec<u8> {
    let mut a = pax_header(records);
    let mut t = tar::Header::new_old();
    t.as_mut_bytes().copy_from_slice(&a[..512]);
    t.set_entry_type(tar::EntryType::XGlobalHeader);
    t.set_cksum();
    a[..512].copy_from_slice(t.as_bytes());
    a
}

#[test]
fn pax_global_headers_are_not_applied_as_in_go() {
    // Go's archive/tar (Docker, containerd, containers-storage) returns a `g` header as an
    // entry of its own (TypeXGlobalHeader) and never merges its records into later headers;
    // containers-storage's applier skips that entry. So Go extracts this archive as `plain`
    // (ustar mtime 0, uid 0, no xattrs), `own` (its own x header's mtime and xattr only), the
    // symlink `ln -> target` and `last`. GNU tar and Python would call the first three
    // `global-name`, owned by 4242, with the global xattr.
    let globals = [
        ("path", "global-name"),
        ("linkpath", "global-target"),
        ("mtime", "1500000000.5"),
        ("uid", "4242"),
        ("gid", "4343"),
        ("uname", "guser"),
        ("gname", "ggroup"),
        ("SCHILY.xattr.user.global", "gv"),
    ];
    let mut a = global_header(&globals);
    a.extend_from_slice(&header("plain", b'0', 5));
    a.extend_from_slice(&padded(b"hello"));
    let own = [("mtime", "1400000000"), ("SCHILY.xattr.user.own", "ov")];
    a.extend(pax_header(&own));
    a.extend_from_slice(&header("own", b'0', 0));
    let mut ln = tar::Header::new_ustar();
    ln.set_path("ln").expect("path");
    ln.set_entry_type(tar::EntryType::Symlink);
    ln.set_link_name("target").expect("link");
    ln.set_size(0);
    ln.set_cksum();
    a.extend_from_slice(ln.as_bytes());
    a.extend(global_header(&[("path", "")]));
    a.extend_from_slice(&header("last", b'0', 0));
    a.extend(end());

    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let id = round_trip(&repo, &a);
    let list = read_entries(&repo, &id);
    let paths: Vec<_> = list
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(paths, ["plain", "own", "ln", "last"]);
    for e in &list {
        assert_eq!((e.uid, e.gid), (0, 0), "{paths:?}");
        assert!(e.uname.is_empty() && e.gname.is_empty(), "{e:?}");
        assert_eq!(e.mtime_nsec, 0);
    }
    assert_eq!(list[0].mtime, 0);
    assert!(list[0].xattrs.is_empty() && list[0].pax.is_empty());
    assert_eq!(list[1].mtime, 1_400_000_000);
    assert_eq!(list[1].xattrs, [(b"user.own".to_vec(), b"ov".to_vec())]);
    let own_records: Vec<_> = own
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(list[1].pax, own_records);
    assert_eq!(list[2].link_target.as_deref(), Some(&b"target"[..]));
    assert!(list[3].pax.is_empty());
}

#[test]
fn pax_global_headers_that_readers_disagree_on_are_refused() {
    let file = || {
        let mut f = header("f", b'0', 5).to_vec();
        f.extend_from_slice(&padded(b"hello"));
        f.extend(end());
        f
    };
    let mut long_name = header("././@LongLink", b'L', 5).to_vec();
    long_name.extend_from_slice(&padded(b"long\0"));
    let cases: [(&str, Vec<u8>, &str); 5] = [
        // GNU tar and Python take it as every later entry's size: other boundaries.
        ("size", global_header(&[("size", "0")]), "`size`"),
        // GNU tar makes every later entry sparse: other contents and names.
        (
            "sparse",
            global_header(&[("GNU.sparse.name", "other")]),
            "GNU.sparse.name",
        ),
        // Go drops the `x` (its reader returns at the `g`); GNU and Python apply it after.
        (
            "x then g",
            [
                pax_header(&[("size", "0")]),
                global_header(&[("comment", "c")]),
            ]
            .concat(),
            "PAX extended header",
        ),
        (
            "L then g",
            [long_name, global_header(&[("comment", "c")])].concat(),
            "GNU long name",
        ),
        (
            "K then g",
            [
                header("././@LongLink", b'K', 0).to_vec(),
                global_header(&[("comment", "c")]),
            ]
            .concat(),
            "GNU long link",
        ),
    ];
    for (what, mut a, needle) in cases {
        a.extend(file());
        let e = refuse(&a);
        assert!(matches!(e, TarError::Ambiguous { .. }), "{what}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("global") && msg.contains(needle),
            "{what}: {msg}"
        );
    }

    // A `g` that only carries a comment (as `git archive` writes) is fine, as are records
    // after it that belong to the next entry.
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let mut a = global_header(&[("comment", "0123abcd")]);
    a.extend(pax_header(&[("path", "renamed")]));
    a.extend(file());
    let id = round_trip(&repo, &a);
    let list = read_entries(&repo, &id);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].path, b"renamed");
}

#[test]
fn nothing_is_held_in_memory_for_large_files() {
    // A 64 MiB file streamed from a reader that produces it on the fly.
    struct Gen {
        left: u64,
    }
    impl std::io::Read for Gen {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.left) as usize;
            buf[..n].fill(0x5a);
            self.left -= n as u64;
            Ok(n)
        }
    }
    let size = 64u64 << 20;
    let head = header("big", b'0', size);
    let input = std::io::Read::chain(
        std::io::Read::chain(&head[..], Gen { left: size }),
        &[0u8; 1024][..],
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let id = split(&repo, input).expect("split");
    let list = read_entries(&repo, &id);
    assert!(matches!(list[0].content, Content::External { size: s, .. } if s == size));
}
