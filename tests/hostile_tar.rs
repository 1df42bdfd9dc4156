//! Hostile tar layers: path tricks (`..`, absolute paths, paths through a symlink, hardlinks to
//! missing, later or directory entries, duplicates, NUL/newline/non-UTF-8 bytes, 100k-deep
//! paths), PAX/ustar size disagreement (TARmageddon, CVE-2025-62518), negative and absurd
//! sizes, truncation at every block. Each archive is either stored byte for byte with its
//! names exactly as written (the splitter stores bytes, it never creates files from names) or
//! refused with a `TarError` that says why; in every case nothing dangling is registered and
//! `cfsctl fsck` passes afterwards.
//!
//! What a path *means* (whether `../x` may escape, whether `link/x` follows `link`) is decided
//! where layers become a tree, not here: see docs/security.md.

use std::path::Path;
use std::process::Command;

use cfs_oci::tar::{self, Content, TarEntry, TarError};
use cfs_repository::{HashAlgorithm, InitVerity, Repository};

/// A raw ustar header block: `name` (≤ 100 bytes, any bytes), type, size (octal), link name.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14000000000\0");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

/// A PAX `x` header carrying `records` (values are raw bytes).
fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest_len = 1 + k.len() + 1 + v.len() + 1;
        let mut n = rest_len + 1;
        while format!("{n}").len() + rest_len != n {
            n += 1;
        }
        body.extend_from_slice(format!("{n} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    let mut out = header(b"PaxHeaders/x", b'x', body.len() as u64, b"").to_vec();
    out.extend(padded(&body));
    out
}

/// A regular file entry with its data.
fn file(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = header(name, b'0', data.len() as u64, b"").to_vec();
    v.extend(padded(data));
    v
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

fn new_repo(dir: &Path) -> Repository {
    Repository::init(
        &dir.join("repo"),
        HashAlgorithm::Sha256,
        InitVerity::Insecure,
    )
    .expect("init")
}

/// Splits and registers `archive`, checks it re-creates byte for byte, returns its entries.
fn accept(repo: &Repository, archive: &[u8]) -> Vec<TarEntry> {
    let imported = cfs_oci::import_layer(repo, archive).expect("archive accepted");
    let back = repo
        .open_stream(&imported.content_id)
        .expect("open")
        .read_to_vec(repo)
        .expect("re-create");
    assert!(back == archive, "the stored layer differs from the archive");
    let stream = repo.open_stream(&imported.content_id).expect("open");
    tar::entries(repo, stream)
        .expect("entries")
        .collect::<Result<Vec<_>, _>>()
        .expect("every entry reads back")
}

/// `cfsctl fsck` on the repository must pass.
fn fsck_ok(repo: &Repository) {
    let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .arg("--repo")
        .arg(repo.path())
        .arg("fsck")
        .env_remove("CFS_REPO")
        .output()
        .expect("run cfsctl fsck");
    assert!(
        out.status.success(),
        "fsck failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn no_streams(repo: &Repository) {
    let streams = repo.list_streams().expect("list streams");
    assert!(
        streams.is_empty(),
        "a refused archive left streams: {streams:?}"
    );
}

#[test]
fn hostile_paths_are_stored_exactly_as_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let deep: Vec<u8> = b"a/".repeat(100_000).into_iter().chain(*b"leaf").collect();
    let mut archive = Vec::new();
    archive.extend(file(b"../escape", b"up and out"));
    archive.extend(file(b"/etc/passwd", b"root::0:0::/:/bin/sh\n"));
    archive.extend(file(b"a/../../b", b"x"));
    archive.extend(header(b"link", b'2', 0, b"/etc"));
    archive.extend(file(b"link/shadow", b"through the symlink"));
    archive.extend(header(b"rel", b'2', 0, b"../../../../"));
    archive.extend(file(b"rel/evil", b"through a relative symlink"));
    archive.extend(header(b"hl-missing", b'1', 0, b"nowhere"));
    archive.extend(header(b"hl-later", b'1', 0, b"later"));
    archive.extend(file(b"later", b"defined after its hardlink"));
    archive.extend(header(b"dir/", b'5', 0, b""));
    archive.extend(header(b"hl-dir", b'1', 0, b"dir/"));
    archive.extend(header(b"hl-self", b'1', 0, b"hl-self"));
    archive.extend(file(b"dup", &[1u8; 100]));
    archive.extend(file(b"dup", &[2u8; 100]));
    archive.extend(file(b"new\nline", b"n"));
    archive.extend(file(b"\xff\xfe-not-utf8", b"u"));
    archive.extend(pax(&[("path", b"nul\0after")]));
    archive.extend(file(b"ignored-name", b"p"));
    archive.extend(pax(&[("path", &deep)]));
    archive.extend(file(b"ignored-too", b"deep"));
    archive.extend(end());

    let entries = accept(&repo, &archive);
    let paths: Vec<&[u8]> = entries.iter().map(|e| e.path.as_slice()).collect();
    let expected: Vec<&[u8]> = vec![
        b"../escape",
        b"/etc/passwd",
        b"a/../../b",
        b"link",
        b"link/shadow",
        b"rel",
        b"rel/evil",
        b"hl-missing",
        b"hl-later",
        b"later",
        b"dir/",
        b"hl-dir",
        b"hl-self",
        b"dup",
        b"dup",
        b"new\nline",
        b"\xff\xfe-not-utf8",
        // Strings are C strings, as in GNU tar: a NUL ends the PAX path.
        b"nul",
        &deep,
    ];
    assert_eq!(paths.len(), expected.len());
    for (got, want) in paths.iter().zip(&expected) {
        assert!(
            got == want,
            "path {:?} read back as {:?}",
            lossy(want),
            lossy(got)
        );
    }
    // Duplicates keep both contents in archive order (the tree builder lets the later win).
    let dup: Vec<_> = entries.iter().filter(|e| e.path == b"dup").collect();
    match (&dup[0].content, &dup[1].content) {
        (Content::External { object: a, .. }, Content::External { object: b, .. }) => {
            assert_ne!(a, b)
        }
        other => panic!("duplicate contents: {other:?}"),
    }
    assert_eq!(
        entries[7].link_target.as_deref(),
        Some(&b"nowhere"[..]),
        "hardlink target kept raw"
    );
    fsck_ok(&repo);
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(80).collect()
}

/// TARmageddon (CVE-2025-62518): one reader took the ustar size, another the PAX size, and the
/// "data" of the entry was a second archive only one of them saw. Here the splitter and the
/// reader use one parser: the PAX size wins in both, and the smuggled header is file data.
#[test]
fn pax_and_ustar_sizes_that_disagree_give_one_archive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let smuggled = [file(b"smuggled", b"evil").as_slice(), &end()].concat();

    // ustar says 0, PAX says the smuggled bytes' length: the smuggled entry is data.
    let mut a = pax(&[("size", smuggled.len().to_string().as_bytes())]);
    a.extend(header(b"outer", b'0', 0, b""));
    a.extend(padded(&smuggled));
    a.extend(file(b"after", b"a"));
    a.extend(end());
    let entries = accept(&repo, &a);
    let names: Vec<String> = entries.iter().map(|e| lossy(&e.path)).collect();
    assert_eq!(names, ["outer", "after"]);
    assert_eq!(entries[0].data_size, smuggled.len() as u64);

    // ustar says the smuggled length, PAX says 0: the smuggled entry is an entry, then the
    // end-of-archive blocks inside it end the archive (everything after is trailing bytes).
    let mut b = pax(&[("size", b"0")]);
    b.extend(header(b"outer", b'0', smuggled.len() as u64, b""));
    b.extend(padded(&smuggled));
    b.extend(file(b"after", b"a"));
    b.extend(end());
    let entries = accept(&repo, &b);
    let names: Vec<String> = entries.iter().map(|e| lossy(&e.path)).collect();
    assert_eq!(names, ["outer", "smuggled"]);

    // If GNU tar is here, it must list the same names.
    if let Some(list) = gnu_list(tmp.path(), &a) {
        assert_eq!(list, ["outer", "after"]);
    }
    if let Some(list) = gnu_list(tmp.path(), &b) {
        assert_eq!(list, ["outer", "smuggled"]);
    }
    fsck_ok(&repo);
}

fn gnu_list(dir: &Path, archive: &[u8]) -> Option<Vec<String>> {
    let p = dir.join("gnu.tar");
    std::fs::write(&p, archive).ok()?;
    let out = Command::new("tar").arg("-tf").arg(&p).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// Refuses `archive`, checking the error mentions `needle` and nothing is registered.
fn refuse(repo: &Repository, archive: &[u8], needle: &str) -> TarError {
    let e = cfs_oci::import_layer(repo, archive).expect_err("archive must be refused");
    let msg = e.to_string();
    assert!(
        msg.to_lowercase().contains(needle),
        "error {msg:?} should mention {needle:?}"
    );
    no_streams(repo);
    e
}

#[test]
fn negative_and_absurd_sizes_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());

    // Base-256 negative size (-1).
    let mut h = header(b"neg", b'0', 0, b"");
    h[124..136].copy_from_slice(&[0xff; 12]);
    set_checksum(&mut h);
    refuse(&repo, &[h.as_slice(), &end()].concat(), "size");

    // Base-256 size past off_t.
    let mut h = header(b"huge", b'0', 0, b"");
    h[124] = 0x80;
    h[125..136].copy_from_slice(&[0xff; 11]);
    set_checksum(&mut h);
    refuse(&repo, &[h.as_slice(), &end()].concat(), "size");

    // A size field that is not a number.
    let mut h = header(b"nan", b'0', 0, b"");
    h[124..136].copy_from_slice(b"12345678zzz\0");
    set_checksum(&mut h);
    refuse(&repo, &[h.as_slice(), &end()].concat(), "size");

    // A plausible-looking 8 GiB (minus one) size with 10 bytes of data: truncated, nothing allocated for it.
    let mut a = header(b"big", b'0', (8 << 30) - 1, b"").to_vec();
    a.extend(padded(b"0123456789"));
    refuse(&repo, &a, "truncated");

    // PAX sizes: negative, not a number, past off_t.
    for v in [&b"-1"[..], b"12x", b"99999999999999999999", b""] {
        let mut a = pax(&[("size", v)]);
        a.extend(file(b"f", b"data"));
        a.extend(end());
        refuse(&repo, &a, "size");
    }

    // A PAX header claiming to be huge: bounded, not allocated.
    let mut a = header(b"PaxHeaders/x", b'x', 0o77_777_777_777, b"").to_vec();
    a.extend(end());
    refuse(&repo, &a, "larger than");

    // A GNU long name of 17 MiB: over the metadata bound.
    let mut a = header(b"././@LongLink", b'L', 17 << 20, b"").to_vec();
    a.extend(vec![b'a'; 4096]);
    refuse(&repo, &a, "larger than");

    // A symlink or hard link with data: readers disagree, refused.
    let mut a = header(b"sl", b'2', 512, b"target").to_vec();
    a.extend(padded(&smuggle()));
    a.extend(end());
    refuse(&repo, &a, "ambiguous");
    let mut a = pax(&[("size", b"512")]);
    a.extend(header(b"hl", b'1', 0, b"target"));
    a.extend(padded(&smuggle()));
    a.extend(end());
    refuse(&repo, &a, "ambiguous");
    fsck_ok(&repo);
}

fn smuggle() -> Vec<u8> {
    file(b"smuggled", b"")
}

#[test]
fn truncated_archives_are_refused_at_every_cut() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    // Entry boundaries: a cut there, or less than a block after one (a partial header block
    // ends the archive, as in GNU tar), leaves a shorter but complete archive; a cut anywhere
    // else must be refused. (In a pull the diff_id check refuses any shortened layer.)
    let mut a = Vec::new();
    let mut boundaries = vec![0];
    for part in [
        // A PAX header followed by the end of input is accepted too (GNU tar lists nothing).
        pax(&[("path", b"long/pax/name"), ("mtime", b"1.5")]),
        file(b"one", &[7u8; 2000]),
        file(b"two", b"small"),
        header(b"d/", b'5', 0, b"").to_vec(),
        file(b"three", &[9u8; 700]),
    ] {
        a.extend(part);
        boundaries.push(a.len());
    }
    let body_end = a.len();
    a.extend(end());
    let clean = |cut: usize| boundaries.iter().any(|&b| (b..b + 512).contains(&cut));
    let mut refused = 0;
    for cut in (0..=a.len()).filter(|c| c % 512 == 0 || c % 97 == 0) {
        let part = &a[..cut];
        match cfs_oci::import_layer(&repo, part) {
            Ok(imported) => {
                assert!(
                    clean(cut) || cut >= body_end,
                    "accepted a cut at {cut} inside an entry"
                );
                let back = repo
                    .open_stream(&imported.content_id)
                    .expect("open")
                    .read_to_vec(&repo)
                    .expect("re-create");
                assert!(back == part);
            }
            Err(e) => {
                refused += 1;
                assert!(!clean(cut), "refused a clean cut at {cut}: {e}");
                let m = e.to_string();
                assert!(m.contains("truncated"), "cut at {cut}: {m}");
            }
        }
    }
    assert!(refused > 10);
    fsck_ok(&repo);
}

/// Merges a one-layer archive into an empty tree (as an image build does).
fn merge(repo: &Repository, archive: &[u8]) -> Result<cfs_image::tree::FileSystem, String> {
    let entries = accept(repo, archive);
    let mut fs = cfs_oci::tree::empty_tree();
    cfs_oci::tree::merge_layer(repo, &mut fs, &entries).map_err(|e| e.to_string())?;
    Ok(fs)
}

/// A tree that merged must also make a valid image whose dumpfile round-trips.
fn image_round_trip(fs: &cfs_image::tree::FileSystem) {
    let image = cfs_image::erofs::write(fs, cfs_image::FormatOptions::default()).expect("image");
    let back = cfs_image::erofs::read(&image).expect("read back");
    let dump = cfs_image::dumpfile::to_vec(&back);
    let again = cfs_image::dumpfile::parse(&dump).expect("dump parses");
    assert!(again == back, "dumpfile round trip");
}

fn names(fs: &cfs_image::tree::FileSystem) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    fs.walk(|p, _| v.push(p.to_vec()));
    v
}

#[test]
fn hostile_paths_in_the_layer_tree() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let one = |entries: Vec<Vec<u8>>| [entries.concat(), end()].concat();

    // `..` anywhere: refused, naming the entry.
    for p in [&b"../escape"[..], b"a/../../b", b"a/..", b"./../x"] {
        let e = merge(&repo, &one(vec![file(p, b"x")])).expect_err("`..` must be refused");
        assert!(e.contains(".."), "{e}");
    }
    // Absolute paths are taken relative to the image root.
    let fs = merge(
        &repo,
        &one(vec![
            file(b"/etc/passwd", b"x"),
            file(b"//etc//group", b"y"),
        ]),
    )
    .expect("absolute paths");
    let n = names(&fs);
    assert!(n.iter().any(|p| p.ends_with(b"etc/passwd")), "{n:?}");
    assert!(n.iter().any(|p| p.ends_with(b"etc/group")), "{n:?}");
    image_round_trip(&fs);

    // A path through a symlink of an earlier entry never follows the link.
    for target in [&b"/etc"[..], b"../../..", b"."] {
        match merge(
            &repo,
            &one(vec![
                header(b"link", b'2', 0, target).to_vec(),
                file(b"link/shadow", b"through the symlink"),
            ]),
        ) {
            Ok(fs) => {
                // The link was replaced by a directory holding the file, inside the root.
                let n = names(&fs);
                assert!(n.iter().any(|p| p.ends_with(b"link/shadow")), "{n:?}");
                assert!(!n.iter().any(|p| p.ends_with(b"etc/shadow")), "{n:?}");
                image_round_trip(&fs);
            }
            Err(e) => assert!(e.contains("link"), "{e}"),
        }
    }

    // Hardlinks to a missing entry, a later one, a directory, themselves: refused.
    for (name, archive) in [
        (
            "missing",
            one(vec![header(b"hl", b'1', 0, b"nowhere").to_vec()]),
        ),
        (
            "later",
            one(vec![
                header(b"hl", b'1', 0, b"later").to_vec(),
                file(b"later", b"l"),
            ]),
        ),
        (
            "directory",
            one(vec![
                header(b"dir/", b'5', 0, b"").to_vec(),
                header(b"hl", b'1', 0, b"dir").to_vec(),
            ]),
        ),
        ("self", one(vec![header(b"hl", b'1', 0, b"hl").to_vec()])),
        (
            "escape",
            one(vec![header(b"hl", b'1', 0, b"../../etc/passwd").to_vec()]),
        ),
    ] {
        let e = merge(&repo, &archive).expect_err(name);
        assert!(e.contains("hl"), "{name}: {e}");
    }

    // Duplicates: the later entry wins.
    let fs = merge(
        &repo,
        &one(vec![file(b"dup", &[1u8; 100]), file(b"dup", &[2u8; 100])]),
    )
    .expect("duplicates");
    let mut found = None;
    fs.walk(|p, inode| {
        if p.ends_with(b"dup") {
            found = Some(format!("{inode:?}"));
        }
    });
    let second = cfs_repository::FsVerityHasher::digest(HashAlgorithm::Sha256, &[2u8; 100]);
    assert!(
        found
            .as_deref()
            .is_some_and(|s| s.contains(&second.to_hex())),
        "the later duplicate must win: {found:?}"
    );

    // Newline, non-UTF-8, NUL-cut names: kept as bytes, escaped in dumpfiles.
    let fs = merge(
        &repo,
        &one(vec![
            file(b"new\nline", b"n"),
            file(b"\xff\xfe", b"u"),
            pax(&[("path", b"nul\0after")]),
            file(b"x", b"p"),
        ]),
    )
    .expect("odd names");
    let n = names(&fs);
    for want in [&b"new\nline"[..], b"\xff\xfe", b"nul"] {
        assert!(n.iter().any(|p| p.ends_with(want)), "{want:?} in {n:?}");
    }
    image_round_trip(&fs);
}

#[test]
fn a_100k_deep_path_is_refused_or_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path());
    let deep: Vec<u8> = b"a/".repeat(100_000).into_iter().chain(*b"leaf").collect();
    let archive = [pax(&[("path", &deep)]), file(b"x", b"deep"), end()].concat();
    // Run on a thread with a normal 2 MiB stack: recursion must not depend on the depth.
    let repo_path = repo.path().to_owned();
    let result = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let repo = Repository::open(&repo_path).expect("open");
            merge(&repo, &archive).map(|fs| {
                cfs_image::erofs::write(&fs, cfs_image::FormatOptions::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic");
    match result {
        Err(e) | Ok(Err(e)) => assert!(e.contains("deep") || e.contains("depth"), "{e}"),
        Ok(Ok(())) => panic!("a 100k-deep tree must be refused"),
    }

    // Just under the limit works, on the same small stack, through image and drop.
    let ok_deep: Vec<u8> = b"a/".repeat(2000).into_iter().chain(*b"leaf").collect();
    let archive = [pax(&[("path", &ok_deep)]), file(b"x", b"deep"), end()].concat();
    let repo_path = repo.path().to_owned();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let repo = Repository::open(&repo_path).expect("open");
            let fs = merge(&repo, &archive).expect("2000 levels merge");
            image_round_trip(&fs);
        })
        .expect("spawn")
        .join()
        .expect("2000 levels: no stack overflow");
}
