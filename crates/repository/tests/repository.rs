//! Integration tests of the repository: splitstream round trips (property-based), fsck finding
//! each kind of damage, gc keeping exactly what refs reach, and concurrent writers.

use std::io::Write;
use std::path::Path;

use cfs_repository::{
    Chunk, FsVerityHasher, HashAlgorithm, InitVerity, ObjectId, Repository, VerityMode,
};
use proptest::prelude::*;

fn new_repo(dir: &Path, hash: HashAlgorithm) -> Repository {
    Repository::init(&dir.join("repo"), hash, InitVerity::Insecure).expect("init")
}

/// What a test stream is made of.
#[derive(Clone, Debug)]
enum Piece {
    Inline(Vec<u8>),
    Data(Vec<u8>),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Piece::Inline),
        proptest::collection::vec(any::<u8>(), 0..20_000).prop_map(Piece::Data),
        // Repeated small alphabet: forces duplicate objects within one stream.
        (1usize..5, 60usize..200).prop_map(|(b, n)| Piece::Data(vec![b as u8; n])),
    ]
}

fn write_pieces(repo: &Repository, pieces: &[Piece]) -> (ObjectId, Vec<u8>) {
    let mut w = repo
        .create_stream("application/octet-stream")
        .expect("create");
    let mut expect = Vec::new();
    for p in pieces {
        match p {
            Piece::Inline(b) => w.write_inline(b).expect("inline"),
            Piece::Data(b) => w.write_data(b).expect("data"),
        }
        let (Piece::Inline(b) | Piece::Data(b)) = p;
        expect.extend_from_slice(b);
    }
    assert_eq!(w.size(), expect.len() as u64);
    (w.finish().expect("finish"), expect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn splitstream_round_trips(pieces in proptest::collection::vec(piece(), 0..40), sha512 in any::<bool>()) {
        let tmp = tempfile::tempdir().expect("tmp");
        let alg = if sha512 { HashAlgorithm::Sha512 } else { HashAlgorithm::Sha256 };
        let repo = new_repo(tmp.path(), alg);
        let (id, expect) = write_pieces(&repo, &pieces);
        repo.register_stream("test-stream:1", &id).expect("register");

        // Re-created byte for byte.
        let got = repo.open_stream("test-stream:1").expect("open").read_to_vec(&repo).expect("read");
        prop_assert_eq!(&got, &expect);

        // Chunks: inline pieces ≤ 64 bytes stay inline; larger data is referenced.
        let mut r = repo.open_stream_object(&id).expect("open");
        let header = r.header().clone();
        prop_assert_eq!(header.stream_size, expect.len() as u64);
        let mut buf = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = r.next_chunk(&mut buf).expect("chunk") {
            if let Chunk::External { object, size } = c {
                prop_assert!(size > 64);
                prop_assert!(header.objects.contains(&object));
                seen.insert(object);
            }
        }
        // The header lists each referenced object exactly once.
        prop_assert_eq!(seen.len(), header.objects.len());
        prop_assert!(repo.fsck(None, 2).expect("fsck").ok());
    }
}

#[test]
fn objects_are_deduplicated_and_read_only() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path(), HashAlgorithm::Sha256);
    let data = vec![7u8; 100_000];
    let a = repo.ensure_object(&data).expect("write");
    let b = repo.ensure_object(&data).expect("write again");
    assert_eq!(a, b);
    assert_eq!(a, FsVerityHasher::digest(HashAlgorithm::Sha256, &data));
    let mut w = repo.object_writer().expect("writer");
    w.write_all(&data).expect("stream write");
    assert_eq!(w.finish().expect("finish"), a);
    let meta = std::fs::metadata(repo.object_path(&a)).expect("stat");
    assert_eq!(meta.nlink(), 1, "no second copy or link");
    assert_eq!(meta.mode() & 0o222, 0, "objects are read-only");
    assert_eq!(meta.len(), data.len() as u64);
    assert_eq!(repo.read_object(&a).expect("read"), data);
    assert_eq!(repo.verity(), VerityMode::Insecure);
    // Nothing left behind in staging.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("repo/tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[test]
fn refs_are_replaced_atomically_and_listed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path(), HashAlgorithm::Sha256);
    let (a, _) = write_pieces(&repo, &[Piece::Data(vec![1; 1000])]);
    let (b, _) = write_pieces(&repo, &[Piece::Data(vec![2; 1000])]);
    repo.register_streams(&[("s:a", a), ("s:b", b)])
        .expect("register");
    repo.set_stream_ref("localhost:5000/app:v1", "s:a")
        .expect("ref");
    repo.set_stream_ref("localhost:5000/app:v1", "s:b")
        .expect("replace");
    repo.set_stream_ref("plain", "s:a").expect("ref");
    let refs = repo.list_stream_refs().expect("list");
    let names: Vec<_> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(names, [("localhost:5000/app:v1", "s:b"), ("plain", "s:a")]);
    assert_eq!(
        repo.resolve_stream("localhost:5000/app:v1")
            .expect("resolve"),
        ("s:b".to_owned(), b)
    );
    assert!(repo.set_stream_ref("../escape", "s:a").is_err());
    assert!(repo.register_stream("../escape", &a).is_err());
    assert!(repo.remove_stream_ref("plain").expect("rm"));
    assert!(!repo.remove_stream_ref("plain").expect("rm again"));
    assert!(repo.resolve_stream("plain").is_err());
}

fn problem_kinds(repo: &Repository) -> Vec<(String, &'static str)> {
    let report = repo.fsck(None, 2).expect("fsck runs");
    report
        .problems
        .iter()
        .map(|p| (p.path.clone(), p.kind))
        .collect()
}

/// A repository holding one stream `s:1` (ref `r`) referencing two objects; returns the objects.
fn damaged_setup(dir: &Path) -> (Repository, ObjectId, ObjectId, ObjectId) {
    let repo = new_repo(dir, HashAlgorithm::Sha256);
    let o1 = repo.ensure_object(&[1u8; 5000]).expect("o1");
    let o2 = repo.ensure_object(&[2u8; 5000]).expect("o2");
    let mut w = repo.create_stream("test").expect("create");
    w.write_inline(b"header").expect("inline");
    w.write_reference(o1, 5000).expect("ref");
    w.write_reference(o2, 5000).expect("ref");
    let s = w.finish().expect("finish");
    repo.register_stream("s:1", &s).expect("register");
    repo.set_stream_ref("r", "s:1").expect("ref");
    assert!(problem_kinds(&repo).is_empty());
    (repo, s, o1, o2)
}

#[test]
fn fsck_finds_a_flipped_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, _, o1, _) = damaged_setup(tmp.path());
    let p = repo.object_path(&o1);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[1234] ^= 0x01;
    std::fs::write(&p, bytes).expect("write");
    let kinds = problem_kinds(&repo);
    assert!(
        kinds.contains(&(format!("objects/{}", o1.object_path()), "corrupt-object")),
        "{kinds:?}"
    );
}

#[test]
fn fsck_finds_a_truncated_splitstream() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, s, _, _) = damaged_setup(tmp.path());
    let p = repo.object_path(&s);
    let len = std::fs::metadata(&p).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.set_len(len - 5).expect("truncate");
    let kinds = problem_kinds(&repo);
    assert!(
        kinds.contains(&("streams/s:1".to_owned(), "bad-stream")),
        "{kinds:?}"
    );
    assert!(
        repo.open_stream("s:1")
            .and_then(|r| r.read_to_vec(&repo))
            .is_err()
    );
}

#[test]
fn fsck_finds_a_dangling_ref() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, _, _, _) = damaged_setup(tmp.path());
    repo.set_stream_ref("dangling", "s:nothing").expect("ref");
    let kinds = problem_kinds(&repo);
    assert_eq!(
        kinds,
        [("streams/refs/dangling".to_owned(), "dangling-ref")]
    );
}

#[test]
fn fsck_finds_a_missing_object() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, _, _, o2) = damaged_setup(tmp.path());
    std::fs::remove_file(repo.object_path(&o2)).expect("rm");
    let kinds = problem_kinds(&repo);
    assert_eq!(kinds, [("streams/s:1".to_owned(), "missing-object")]);
    let err = repo
        .open_stream("s:1")
        .and_then(|r| r.read_to_vec(&repo))
        .expect_err("must fail");
    assert!(err.to_string().contains(&o2.to_string()), "{err}");
}

#[test]
fn gc_keeps_reachable_and_removes_the_rest() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path(), HashAlgorithm::Sha256);
    let shared = vec![9u8; 4000];
    // A "layer" stream and a "config" stream naming it; only the config has a ref.
    let (layer, _) = write_pieces(
        &repo,
        &[Piece::Data(shared.clone()), Piece::Data(vec![3; 500])],
    );
    repo.register_stream("layer:1", &layer).expect("register");
    let mut w = repo.create_stream("config").expect("create");
    w.write_inline(b"{}").expect("inline");
    w.add_stream_ref("diff-1", "layer:1", layer)
        .expect("stream ref");
    let config = w.finish().expect("finish");
    repo.register_stream("config:1", &config).expect("register");
    repo.set_stream_ref("image", "config:1").expect("ref");
    // An unreferenced stream sharing one object with the layer.
    let (junk, _) = write_pieces(&repo, &[Piece::Data(shared), Piece::Data(vec![4; 700])]);
    repo.register_stream("junk:1", &junk).expect("register");
    let loose = repo.ensure_object(&[5u8; 300]).expect("loose");

    let dry = repo.gc(None, true).expect("dry run");
    assert_eq!(dry.streams, ["junk:1"]);
    assert_eq!(
        dry.objects.len(),
        3,
        "junk stream, its own object, the loose object"
    );
    assert!(dry.objects.contains(&loose) && dry.objects.contains(&junk));
    assert!(
        repo.has_object(&loose).expect("has"),
        "dry run removes nothing"
    );

    let report = repo.gc(None, false).expect("gc");
    assert_eq!(report.objects, dry.objects);
    assert!(!repo.has_object(&loose).expect("has"));
    assert!(repo.resolve_stream("junk:1").is_err());
    let kept = repo
        .open_stream("layer:1")
        .expect("layer")
        .read_to_vec(&repo)
        .expect("read");
    assert_eq!(kept.len(), 4500);
    assert!(repo.fsck(None, 2).expect("fsck").ok());
    assert!(repo.gc(None, false).expect("gc again").objects.is_empty());
}

/// Run by `concurrent_writers` in child processes: writes the same objects as its sibling.
#[test]
fn concurrent_writer_child() {
    let Some(path) = std::env::var_os("CFS_TEST_CHILD_REPO") else {
        return;
    };
    let repo = Repository::open(Path::new(&path)).expect("open");
    let tag = std::env::var("CFS_TEST_CHILD_TAG").expect("tag");
    let mut w = repo.create_stream("test").expect("create");
    for i in 0..300u32 {
        let data: Vec<u8> = (0..(100 + i * 37)).map(|j| (i ^ j) as u8).collect();
        w.write_data(&data).expect("data");
    }
    let s = w.finish().expect("finish");
    repo.register_stream(&format!("s:{tag}"), &s)
        .expect("register");
    repo.set_stream_ref(&tag, &format!("s:{tag}")).expect("ref");
}

#[test]
fn concurrent_writers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = new_repo(tmp.path(), HashAlgorithm::Sha256);
    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|tag| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CFS_TEST_CHILD_REPO", repo.path())
                .env("CFS_TEST_CHILD_TAG", tag)
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let (_, a) = repo.resolve_stream("a").expect("a");
    let (_, b) = repo.resolve_stream("b").expect("b");
    assert_eq!(a, b, "same content, same stream object");
    let a_bytes = repo
        .open_stream("a")
        .expect("a")
        .read_to_vec(&repo)
        .expect("read");
    let b_bytes = repo
        .open_stream("b")
        .expect("b")
        .read_to_vec(&repo)
        .expect("read");
    assert_eq!(a_bytes, b_bytes);
    let report = repo.fsck(None, 2).expect("fsck");
    assert!(report.ok(), "{:?}", report.problems);
    // 300 objects (all > 64 bytes, all distinct) + the one stream object, each stored once.
    assert_eq!(report.objects, 301);
}

/// Whatever is at an object's path that is not a regular file (FIFO, directory, symlink to an
/// outside file, dangling symlink) is no object: `has_object` says so without blocking or
/// following it, and storing the object replaces it. Also an `objects/XX` that is a symlink.
#[test]
fn storing_an_object_replaces_a_non_regular_entry_at_its_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("canary"), b"canary").expect("canary");
    for (i, kind) in ["fifo", "dir", "symlink", "dangling", "xx-symlink"]
        .iter()
        .enumerate()
    {
        let repo = Repository::init(
            &tmp.path().join(format!("r{i}")),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init");
        let data = vec![u8::try_from(i).expect("small"); 10_000];
        let id = FsVerityHasher::digest(HashAlgorithm::Sha256, &data);
        let p = repo.object_path(&id);
        let xx = p.parent().expect("xx").to_owned();
        match *kind {
            "xx-symlink" => {
                std::fs::copy(
                    outside.join("canary"),
                    outside.join(p.file_name().expect("n")),
                )
                .expect("copy");
                std::os::unix::fs::symlink(&outside, &xx).expect("xx link");
            }
            _ => {
                std::fs::create_dir_all(&xx).expect("xx");
                match *kind {
                    "fifo" => rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &p,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o644),
                        0,
                    )
                    .expect("mkfifo"),
                    "dir" => std::fs::create_dir(&p).expect("dir"),
                    "symlink" => {
                        std::os::unix::fs::symlink(outside.join("canary"), &p).expect("link")
                    }
                    _ => std::os::unix::fs::symlink(outside.join("none"), &p).expect("link"),
                }
            }
        }
        assert!(!repo.has_object(&id).expect("has"), "{kind} is no object");
        assert!(repo.open_object(&id).is_err(), "{kind} opened as an object");
        assert_eq!(repo.ensure_object(&data).expect("store"), id);
        let m = std::fs::symlink_metadata(&p).expect("stored");
        assert!(m.is_file(), "{kind}: a regular file now");
        assert!(std::fs::symlink_metadata(&xx).expect("xx").is_dir());
        assert_eq!(repo.read_object(&id).expect("read"), data);
        assert_eq!(std::fs::read(outside.join("canary")).expect("c"), b"canary");
    }
}
