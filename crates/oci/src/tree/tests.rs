//! Tests of the layer merge: synthetic layers built with the `tar` crate, merged, and the
//! resulting trees checked.

use cfs_repository::{HashAlgorithm, InitVerity};
use tar::{EntryType, Header};

use cfs_image::tree::{ExternalFile, LeafContent, Mtime, RegularFile};

use super::entry::makedev;
use super::*;

/// One tar entry of a synthetic layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8]),
    /// A file with mode, uid, mtime and PAX xattrs.
    FileWith(&'a str, &'a [u8], u32, u64, u64, &'a [(&'a str, &'a [u8])]),
    Link(&'a str, &'a str),
    Sym(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

/// Appends a header whose name and link name are written raw (no sanitising, so tests can
/// make `..` and absolute paths).
fn raw(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: EntryType,
    data: &[u8],
    link: &str,
    mode: u32,
    (uid, mtime): (u64, u64),
) {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(mtime);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (k, v) in records {
        let body_len = 1 + k.len() + 1 + v.len() + 1;
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    raw(
        b,
        "PaxHeaders/x",
        EntryType::XHeader,
        &data,
        "",
        0o644,
        (0, 0),
    );
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match *e {
            E::Dir(p, mode) => raw(&mut b, p, EntryType::Directory, b"", "", mode, (0, 100)),
            E::File(p, d) => raw(&mut b, p, EntryType::Regular, d, "", 0o644, (0, 100)),
            E::FileWith(p, d, mode, uid, mtime, xattrs) => {
                let recs: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                    .collect();
                let recs: Vec<(&str, &[u8])> = recs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                if !recs.is_empty() {
                    pax(&mut b, &recs);
                }
                raw(&mut b, p, EntryType::Regular, d, "", mode, (uid, mtime));
            }
            E::Link(p, t) => raw(&mut b, p, EntryType::Link, b"", t, 0o644, (0, 100)),
            E::Sym(p, t) => raw(&mut b, p, EntryType::Symlink, b"", t, 0o777, (0, 100)),
            E::Char(p, major, minor) => {
                let mut h = Header::new_gnu();
                h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_entry_type(EntryType::Char);
                h.set_mode(0o600);
                h.set_device_major(major).expect("major");
                h.set_device_minor(minor).expect("minor");
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &b""[..]).expect("append");
            }
            E::Fifo(p) => raw(&mut b, p, EntryType::Fifo, b"", "", 0o644, (0, 100)),
        }
    }
    b.into_inner().expect("tar")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: Repository,
}

fn repo() -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = Repository::init(
        &tmp.path().join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init");
    Fixture { _tmp: tmp, repo }
}

fn merge(fx: &Fixture, layers: &[Vec<u8>]) -> Result<FileSystem, MergeError> {
    let mut fs = empty_tree();
    for l in layers {
        let imported = crate::import_layer(&fx.repo, &l[..]).expect("import");
        let stream = fx.repo.open_stream(&imported.content_id).expect("open");
        let entries: Vec<TarEntry> = entries(&fx.repo, stream)
            .expect("entries")
            .collect::<Result<_, _>>()
            .expect("read");
        merge_layer(&fx.repo, &mut fs, &entries)?;
    }
    Ok(fs)
}

fn dump(fs: &FileSystem) -> String {
    String::from_utf8(cfs_image::dumpfile::to_vec(fs)).expect("utf-8")
}

/// The paths of the tree, depth first.
fn paths(fs: &FileSystem) -> Vec<String> {
    let mut out = Vec::new();
    fs.walk(|p, _| out.push(lossy(p)));
    out
}

fn get<'a>(fs: &'a FileSystem, path: &str) -> Option<&'a Inode> {
    let comps = components(path.as_bytes()).expect("path");
    let (last, dirs) = comps.split_last()?;
    find_dir(&fs.root, dirs)?.get(OsStr::from_bytes(last))
}

fn leaf(fs: &FileSystem, path: &str) -> Arc<Leaf> {
    match get(fs, path) {
        Some(Inode::Leaf(l)) => Arc::clone(l),
        other => panic!("{path}: {other:?}"),
    }
}

fn dir<'a>(fs: &'a FileSystem, path: &str) -> &'a Directory {
    match get(fs, path) {
        Some(Inode::Directory(d)) => d,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn whiteouts_remove_lower_files_and_directories() {
    let fx = repo();
    let fs = merge(
        &fx,
        &[
            layer(&[
                E::Dir("etc/", 0o755),
                E::File("etc/motd", b"hi"),
                E::File("etc/keep", b"k"),
                E::Dir("var/", 0o755),
                E::Dir("var/log/", 0o755),
                E::Dir("var/log/apt/", 0o755),
                E::File("var/log/apt/history", b"h"),
            ]),
            layer(&[
                E::Dir("etc/", 0o700),
                E::File("etc/.wh.motd", b""),
                E::File("var/log/.wh.apt", b""),
                E::File("etc/.wh.never-existed", b""),
                E::File("nowhere/.wh.x", b""),
            ]),
        ],
    )
    .expect("merge");
    assert_eq!(paths(&fs), ["/etc", "/etc/keep", "/var", "/var/log"]);
    assert_eq!(
        dir(&fs, "etc").stat.mode,
        0o700,
        "the later layer's metadata"
    );
    // `nowhere` was only named by a whiteout: not created.
    assert!(get(&fs, "nowhere").is_none());
}

#[test]
fn whiteouts_only_hide_lower_layers() {
    // The same layer re-creates what it whites out, in either order.
    let fx = repo();
    let fs = merge(
        &fx,
        &[
            layer(&[E::File("a", b"old"), E::File("b", b"old")]),
            layer(&[
                E::File("a", b"new"),
                E::File(".wh.a", b""),
                E::File(".wh.b", b""),
                E::File("b", b"new"),
            ]),
        ],
    )
    .expect("merge");
    for p in ["a", "b"] {
        assert_eq!(
            leaf(&fs, p).content,
            LeafContent::Regular(RegularFile::Inline(b"new"[..].into()))
        );
    }
}

#[test]
fn opaque_directories_clear_lower_contents_only() {
    let fx = repo();
    let fs = merge(
        &fx,
        &[
            layer(&[
                E::Dir("d/", 0o755),
                E::File("d/lower", b"x"),
                E::Dir("d/sub/", 0o755),
                E::File("d/sub/deep", b"x"),
                E::Dir("empty/", 0o755),
                E::File("empty/gone", b"x"),
            ]),
            layer(&[
                E::Dir("d/", 0o750),
                // Sorts before the marker: must survive it.
                E::File("d/-early", b"e"),
                E::File("d/.wh..wh..opq", b""),
                E::File("d/new", b"n"),
                E::File("empty/.wh..wh..opq", b""),
            ]),
        ],
    )
    .expect("merge");
    assert_eq!(
        paths(&fs),
        ["/d", "/d/-early", "/d/new", "/empty"],
        "{}",
        dump(&fs)
    );
    assert_eq!(dir(&fs, "d").stat.mode, 0o750);
}

#[test]
fn hardlinks_within_and_across_layers() {
    let fx = repo();
    let big = vec![7u8; 100];
    let fs = merge(
        &fx,
        &[
            layer(&[
                E::Dir("bin/", 0o755),
                E::File("bin/tool", &big),
                E::Link("bin/tool2", "bin/tool"),
            ]),
            layer(&[
                E::Dir("lib/", 0o755),
                E::Link("lib/tool.link", "./bin/tool"),
                E::Link("/lib/abs", "/bin/tool2"),
            ]),
        ],
    )
    .expect("merge");
    let t = leaf(&fs, "bin/tool");
    for p in ["bin/tool2", "lib/tool.link", "lib/abs"] {
        assert!(Arc::ptr_eq(&t, &leaf(&fs, p)), "{p}");
    }
    assert_eq!(fs.link_counts()[&Arc::as_ptr(&t)], 4);
    assert!(matches!(
        &t.content,
        LeafContent::Regular(RegularFile::External(ext)) if ext.size == 100
    ));
    // Replacing one name leaves the others linked to the old file.
    let fs = merge(
        &fx,
        &[
            layer(&[E::File("a", b"1"), E::Link("b", "a")]),
            layer(&[E::File("a", b"2")]),
        ],
    )
    .expect("merge");
    assert_eq!(
        leaf(&fs, "b").content,
        LeafContent::Regular(RegularFile::Inline(b"1"[..].into()))
    );
    assert_eq!(fs.link_counts()[&Arc::as_ptr(&leaf(&fs, "b"))], 1);
}

#[test]
fn bad_hardlinks_are_clear_errors() {
    let fx = repo();
    let e = merge(&fx, &[layer(&[E::Link("a", "missing")])]).expect_err("missing");
    assert!(e.problem.contains("does not exist"), "{e}");
    let e = merge(&fx, &[layer(&[E::Dir("d/", 0o755), E::Link("a", "d")])]).expect_err("directory");
    assert!(e.problem.contains("is a directory"), "{e}");
    // A link to a later entry of the same layer.
    let e = merge(&fx, &[layer(&[E::Link("a", "b"), E::File("b", b"")])]).expect_err("later");
    assert!(e.problem.contains("does not exist"), "{e}");
    // A link to a file whited out by the same layer.
    let e = merge(
        &fx,
        &[
            layer(&[E::File("a", b"")]),
            layer(&[E::File(".wh.a", b""), E::Link("b", "a")]),
        ],
    )
    .expect_err("whited out");
    assert!(e.problem.contains("does not exist"), "{e}");
    let e = merge(&fx, &[layer(&[E::Link("a", "./")])]).expect_err("root");
    assert!(e.problem.contains("root"), "{e}");
    let e = merge(&fx, &[layer(&[E::File("x", b""), E::Link("a", "../x")])]).expect_err("dotdot");
    assert!(e.problem.contains(".."), "{e}");
}

#[test]
fn type_changes_between_layers() {
    let fx = repo();
    let fs = merge(
        &fx,
        &[
            layer(&[
                E::Dir("d2f/", 0o755),
                E::File("d2f/child", b"c"),
                E::File("f2d", b"f"),
                E::Sym("s2d", "elsewhere"),
                E::File("f2s", b"f"),
            ]),
            layer(&[
                E::File("d2f", b"now a file"),
                E::Dir("f2d/", 0o711),
                E::File("f2d/inside", b"i"),
                E::File("s2d/under", b"u"),
                E::Sym("f2s", "target"),
            ]),
        ],
    )
    .expect("merge");
    assert_eq!(
        leaf(&fs, "d2f").content,
        LeafContent::Regular(RegularFile::Inline(b"now a file"[..].into()))
    );
    assert_eq!(dir(&fs, "f2d").stat.mode, 0o711);
    // A symlink below a new file's path is replaced by an implicit directory (overlay
    // semantics: paths never resolve through symlinks).
    assert_eq!(dir(&fs, "s2d").stat, implicit_dir_stat());
    assert!(matches!(leaf(&fs, "f2s").content, LeafContent::Symlink(_)));
    assert_eq!(
        paths(&fs),
        ["/d2f", "/f2d", "/f2d/inside", "/f2s", "/s2d", "/s2d/under"]
    );
}

#[test]
fn implicit_parents_root_and_path_normalisation() {
    let fx = repo();
    let fs = merge(
        &fx,
        &[layer(&[
            E::Dir("./", 0o777),
            E::File("./a/b/c", b"x"),
            E::File("/abs/file", b"y"),
            E::File("x//y/./z", b"z"),
            E::Dir("a/", 0o700),
        ])],
    )
    .expect("merge");
    assert_eq!(fs.root.stat, root_stat(), "root entries are ignored");
    assert_eq!(root_stat().mode, 0o555);
    assert_eq!(
        dir(&fs, "a").stat.mode,
        0o700,
        "named later: its own metadata"
    );
    for d in ["a/b", "abs", "x", "x/y"] {
        let s = &dir(&fs, d).stat;
        assert_eq!(
            (s.mode, s.uid, s.gid, s.mtime, s.xattrs.len()),
            (0o755, 0, 0, Mtime::default(), 0),
            "{d}"
        );
    }
    assert!(matches!(get(&fs, "x/y/z"), Some(Inode::Leaf(_))));
    for bad in ["../escape", "a/../../b", "a/.."] {
        let e = merge(&fx, &[layer(&[E::File(bad, b"")])]).expect_err(bad);
        assert!(e.problem.contains(".."), "{e}");
    }
    let e = merge(&fx, &[layer(&[E::Sym(".", "x")])]).expect_err("root symlink");
    assert!(e.problem.contains("root"), "{e}");
}

#[test]
fn duplicates_in_one_layer_later_wins() {
    let fx = repo();
    let fs = merge(
        &fx,
        &[layer(&[
            E::File("f", b"first"),
            E::File("f", b"second"),
            E::Dir("d/", 0o755),
            E::File("d/child", b""),
            E::Dir("d/", 0o700),
            E::File("g", b""),
            E::Dir("g/", 0o755),
        ])],
    )
    .expect("merge");
    assert_eq!(
        leaf(&fs, "f").content,
        LeafContent::Regular(RegularFile::Inline(b"second"[..].into()))
    );
    assert_eq!(dir(&fs, "d").stat.mode, 0o700);
    assert!(
        get(&fs, "d/child").is_some(),
        "a directory entry keeps the contents"
    );
    assert!(matches!(get(&fs, "g"), Some(Inode::Directory(_))));
}

#[test]
fn metadata_xattrs_devices_and_sizes() {
    let fx = repo();
    let big = vec![1u8; 65];
    let fs = merge(
        &fx,
        &[layer(&[
            E::FileWith(
                "f",
                b"data",
                0o4755,
                1000,
                1_747_699_200,
                &[
                    ("user.empty", b""),
                    ("user.bin", b"\x00\xff"),
                    ("security.capability", b"\x01\x00\x00\x02"),
                ],
            ),
            E::File("small64", &[2u8; 64]),
            E::File("big65", &big),
            E::Char("null", 1, 3),
            E::Char("whiteout", 0, 0),
            E::Fifo("fifo"),
            E::Sym("link", "/usr/bin/x"),
            E::File("AUFS/.wh..wh.plnk", b""),
            E::File(".wh..wh.plnk/123", b"hardlink source"),
            E::File(".wh..wh.aufs", b""),
        ])],
    )
    .expect("merge");
    let f = leaf(&fs, "f");
    assert_eq!((f.stat.mode, f.stat.uid, f.stat.gid), (0o4755, 1000, 1000));
    assert_eq!(f.stat.mtime.sec, 1_747_699_200);
    let xattrs: Vec<(&[u8], &[u8])> = f
        .stat
        .xattrs
        .iter()
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    assert_eq!(
        xattrs,
        [
            (&b"security.capability"[..], &b"\x01\x00\x00\x02"[..]),
            (b"user.bin", b"\x00\xff"),
            (b"user.empty", b""),
        ]
    );
    assert!(matches!(
        leaf(&fs, "small64").content,
        LeafContent::Regular(RegularFile::Inline(_))
    ));
    assert_eq!(
        leaf(&fs, "big65").content,
        LeafContent::Regular(RegularFile::External(Box::new(ExternalFile::object(
            cfs_repository::FsVerityHasher::digest(HashAlgorithm::Sha256, &big),
            65
        ))))
    );
    assert_eq!(leaf(&fs, "null").content, LeafContent::CharDevice(0x103));
    assert_eq!(leaf(&fs, "whiteout").content, LeafContent::CharDevice(0));
    assert_eq!(leaf(&fs, "fifo").content, LeafContent::Fifo);
    assert_eq!(
        leaf(&fs, "link").content,
        LeafContent::Symlink(OsStr::new("/usr/bin/x").into())
    );
    assert_eq!(
        paths(&fs),
        [
            "/big65",
            "/f",
            "/fifo",
            "/link",
            "/null",
            "/small64",
            "/whiteout"
        ]
    );
    assert_eq!(makedev(259, 0x12345), 0x1231_0345);
}

#[test]
fn whiteout_names_used_as_directories_are_refused() {
    let fx = repo();
    let e = merge(&fx, &[layer(&[E::File(".wh.x/y", b"")])]).expect_err("refused");
    assert!(e.problem.contains("whiteout"), "{e}");
    let e = merge(&fx, &[layer(&[E::File("d/.wh.", b"")])]).expect_err("empty name");
    assert!(e.problem.contains("whiteout"), "{e}");
}
