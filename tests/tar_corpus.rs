//! The shared tar corpus (Go's archive/tar and CPython's tarfile test archives) through the real
//! binary: `cfsctl oci import-layer < archive`, then `cfsctl oci layer <diff_id>` must give the
//! archive back byte for byte, for every archive GNU tar accepts; archives GNU tar rejects must
//! be refused with an error that names the problem, and leave no stream behind. Where GNU tar
//! is installed, its verdict and its list of entry names are checked against ours too —
//! except where the archive has PAX global headers: cfs reads those as Go's archive/tar does
//! (not applied to later entries), so there ours must equal Go's reading, given below.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Archives GNU tar 1.34 rejects (`tar -tf` exits non-zero), with what our error must say.
const REFUSED: &[(&str, &str)] = &[
    // Symlink/FIFO/device entries with a size: `tar -t` skips data, `tar -x` reads none.
    ("go-archive-tar/hdr-only.tar", "ambiguous"),
    ("go-archive-tar/issue10968.tar", "size field"),
    ("go-archive-tar/issue11169.tar", "truncated"),
    ("go-archive-tar/issue12435.tar", "size field"),
    ("go-archive-tar/neg-size.tar", "size field"),
    ("go-archive-tar/pax-bad-hdr-file.tar", "missing newline"),
    ("go-archive-tar/pax-nul-xattrs.tar", "missing equal sign"),
    ("go-archive-tar/writer-big-long.tar", "truncated"),
    ("go-archive-tar/writer-big.tar", "truncated"),
    ("cpython/recursion.tar", "truncated"),
];

/// One entry as Go's archive/tar reads it: path, mtime (seconds), uname.
type GoEntry = (&'static str, i64, &'static str);

/// Archives with PAX global (`g`) headers, which GNU tar and Python apply to later entries and
/// Go does not: our reading must be Go's (the container engines'), entry by entry. Go's
/// expectations for `pax-global-records.tar` are in its `reader_test.go` (file1..file4, the
/// `path`/`mtime` of the globals not applied); for `testtar.tar` Go takes uname/gname from
/// each ustar header (`tarfile`), where Python's test expects the globals' `foo`/`bar`.
/// Only the entries where the readings differ are listed for testtar.
const GO_READINGS: &[(&str, &[GoEntry])] = &[
    (
        "go-archive-tar/pax-global-records.tar",
        &[
            ("file1", 0, ""),
            ("file2", 0, ""),
            ("file3", 0, ""),
            ("file4", 1_400_000_000, ""),
        ],
    ),
    (
        "cpython/testtar.tar",
        &[
            ("pax/regtype1", 1_041_808_783, "tarfile"),
            ("pax/regtype2", 1_041_808_783, "tarfile"),
            ("pax/regtype3", 1_041_808_783, "tarfile"),
        ],
    ),
];

/// Compressed archives in the corpus, with the tool that decompresses them.
const COMPRESSED: &[(&str, &str)] = &[
    ("go-archive-tar/pax-bad-hdr-large.tar.bz2", "bzcat"),
    ("cpython/testtar.tar.xz", "xzcat"),
];

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // The child may exit early (a refused archive): a broken pipe is fine.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread");
    out
}

fn cfsctl(repo: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .arg("--repo")
            .arg(repo)
            .args(args)
            .env_remove("CFS_REPO"),
        stdin,
    )
}

/// The corpus's archives, uncompressed, by name.
fn archives(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["go-archive-tar", "cpython"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .expect("read corpus")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar"))
            .collect();
        names.sort();
        for n in names {
            let data = std::fs::read(dir.join(sub).join(&n)).expect("read archive");
            out.push((format!("{sub}/{n}"), data));
        }
    }
    for (name, tool) in COMPRESSED {
        if !common::require_tool(tool) {
            continue;
        }
        let out_ = Command::new(tool)
            .arg(dir.join(name))
            .output()
            .expect("decompress");
        assert!(out_.status.success(), "{tool} {name}");
        out.push((format!("{name} (decompressed)"), out_.stdout));
    }
    out
}

/// GNU tar's verdict and its names (raw bytes, one per line).
fn gnu_list(archive: &[u8]) -> (bool, Vec<Vec<u8>>) {
    let out = run(
        Command::new("tar").args(["--quoting-style=literal", "-tf", "-"]),
        archive,
    );
    let names = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (out.status.success(), names)
}

fn stream_names(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("streams"))
        .expect("streams dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "refs")
        .collect()
}

#[test]
fn tar_corpus_round_trips_or_is_refused() {
    let Some(dir) = common::shared_corpus("tar-corpus") else {
        return;
    };
    let have_gnu_tar = common::find_tool("tar").is_some();
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut round_tripped, mut refused) = (0, 0);
    for (i, (name, archive)) in archives(&dir).into_iter().enumerate() {
        let repo = tmp.path().join(format!("repo{i}"));
        let init = cfsctl(&repo, &["init", "--insecure"], b"");
        assert!(init.status.success(), "init: {:?}", init);
        let expected_error = REFUSED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, msg)| *msg);
        let gnu = have_gnu_tar.then(|| gnu_list(&archive));
        if let Some((accepted, _)) = &gnu {
            assert_eq!(
                *accepted,
                expected_error.is_none(),
                "{name}: GNU tar's verdict differs from the table"
            );
        }

        let import = cfsctl(&repo, &["oci", "import-layer"], &archive);
        let stderr = String::from_utf8_lossy(&import.stderr);
        match expected_error {
            Some(msg) => {
                assert!(!import.status.success(), "{name} must be refused");
                assert!(
                    stderr.contains(msg) && stderr.contains("byte"),
                    "{name}: error should say {msg:?} and where: {stderr}"
                );
                assert!(
                    stream_names(&repo).is_empty(),
                    "{name}: a refused layer left a stream"
                );
                refused += 1;
            }
            None => {
                assert!(import.status.success(), "{name}: {stderr}");
                let cid = String::from_utf8_lossy(&import.stdout).trim().to_owned();
                let layer = cfsctl(&repo, &["oci", "layer", &cid], b"");
                assert!(layer.status.success(), "{name}: {:?}", layer);
                assert!(
                    layer.stdout == archive,
                    "{name}: not re-created byte for byte"
                );
                let fsck = cfsctl(&repo, &["fsck"], b"");
                assert!(fsck.status.success(), "{name}: fsck {:?}", fsck);
                let go = GO_READINGS.iter().find(|(n, _)| *n == name);
                if let Some((_, go_entries)) = go {
                    check_go_reading(&repo, &cid, go_entries, &name, gnu.as_ref());
                } else if let Some((_, gnu_names)) = &gnu {
                    check_names(&repo, &cid, gnu_names, &name);
                }
                round_tripped += 1;
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "tar corpus: {round_tripped} archives round-trip, {refused} refused"
    );
    assert!(round_tripped >= 30 && refused == REFUSED.len());
}

/// The entries of a stored layer.
fn stored_entries(repo: &Path, cid: &str) -> Vec<cfs_oci::tar::TarEntry> {
    let repo = cfs_repository::Repository::open(repo).expect("open repo");
    let reader = repo.open_stream(cid).expect("open stream");
    cfs_oci::tar::entries(&repo, reader)
        .expect("entries")
        .map(|e| e.expect("entry"))
        .collect()
}

/// Our reader sees the `g` headers' records as Go does: not applied. Where GNU tar's
/// listing is at hand it must differ (else the archive would not need a table row).
fn check_go_reading(
    repo: &Path,
    cid: &str,
    go: &[GoEntry],
    name: &str,
    gnu: Option<&(bool, Vec<Vec<u8>>)>,
) {
    let ours = stored_entries(repo, cid);
    for (path, mtime, uname) in go {
        let e = ours
            .iter()
            .find(|e| e.path == path.as_bytes())
            .unwrap_or_else(|| panic!("{name}: no entry {path:?} (Go reads one)"));
        assert_eq!(
            (e.mtime, String::from_utf8_lossy(&e.uname).into_owned()),
            (*mtime, (*uname).to_owned()),
            "{name}: {path}: mtime/uname differ from Go's reading"
        );
    }
    if name.ends_with("pax-global-records.tar") {
        let paths: Vec<_> = ours.iter().map(|e| e.path.clone()).collect();
        let go_paths: Vec<_> = go.iter().map(|(p, ..)| p.as_bytes().to_vec()).collect();
        assert_eq!(paths, go_paths, "{name}: entry names differ from Go's");
        if let Some((_, gnu_names)) = gnu {
            assert_ne!(
                gnu_names, &go_paths,
                "{name}: GNU tar now reads it as Go does"
            );
        }
    }
}

/// Our reader sees the entries GNU tar lists, with the same names.
fn check_names(repo: &Path, cid: &str, gnu_names: &[Vec<u8>], name: &str) {
    let repo = cfs_repository::Repository::open(repo).expect("open repo");
    let reader = repo.open_stream(cid).expect("open stream");
    let ours: Vec<Vec<u8>> = cfs_oci::tar::entries(&repo, reader)
        .expect("entries")
        .map(|e| e.expect("entry").path)
        .collect();
    // GNU tar lists an empty name as "" but may print names with embedded newlines split;
    // the corpus has neither problem except empty names, which it omits from its listing.
    let ours: Vec<Vec<u8>> = ours.into_iter().filter(|p| !p.is_empty()).collect();
    assert_eq!(
        ours.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>(),
        gnu_names
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>(),
        "{name}: entry names differ from GNU tar's"
    );
}
