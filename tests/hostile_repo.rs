//! A hostile or damaged repository layout: layout directories that are symlinks to (or files
//! instead of) directories outside the repository, `objects/XX` as a symlink, object paths that
//! are FIFOs, devices, directories or symlinks, stray entries among the links and refs, ref
//! cycles, and a lock someone else holds. Nothing outside the repository is read, written or
//! removed (checked byte for byte), nothing hangs (every run has a deadline), fsck reports
//! each case, `fsck --repair` removes it and the next pull heals the repository.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cfs_repository::{FsVerityHasher, HashAlgorithm};
use oci_layout::{AMD64, Comp, Image, OciLayout, layer, noise, tar_of};

/// Runs `cfsctl --repo REPO ARGS` and kills it if it has not finished within `secs`: a hang
/// fails the test instead of hanging CI.
fn run(repo: &Path, args: &[&str], secs: u64) -> Output {
    run_env(repo, args, secs, &[])
}

fn run_env(repo: &Path, args: &[&str], secs: u64, env: &[(&str, &str)]) -> Output {
    // CFS_TEST_CFSCTL: a copy of the binary under test, where a target directory shared by
    // several checkouts may have another checkout's `cfsctl` by the time the tests run.
    let bin = std::env::var_os("CFS_TEST_CFSCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cfsctl")));
    let mut cmd = Command::new(bin);
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("CFS_REPO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run cfsctl");
    // Drained while it runs, so a large output (a layer) cannot fill the pipe and stall it.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out_t = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err_t = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_t.join().unwrap_or_default();
            panic!(
                "cfsctl {args:?} did not finish within {secs} s (hung):\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "cfsctl failed: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Everything under `dir` (not following symlinks): path → (mode, contents or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read outside") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let data = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_dir() {
                todo.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).expect("read")
            };
            out.insert(p, (m.mode(), data));
        }
    }
    out
}

/// A directory outside the repository with a canary file and a subdirectory.
fn outside(base: &Path) -> PathBuf {
    let o = base.join("outside");
    std::fs::create_dir_all(o.join("sub")).expect("outside");
    std::fs::write(o.join("canary"), b"do not touch").expect("canary");
    std::fs::write(o.join("sub/file"), b"nor this").expect("canary 2");
    o
}

struct Fixture {
    layout: OciLayout,
    img: Image,
    a: Vec<u8>,
}

fn fixture(base: &Path) -> Fixture {
    let mut layout = OciLayout::create(&base.join("layout"));
    let a = noise(70_000, 7);
    let img = layout.add_image(
        Some("app"),
        &[
            layer(&tar_of(&[("usr/a", &a)]), Comp::Gzip),
            layer(&tar_of(&[("etc/b", &noise(5_000, 8))]), Comp::Zstd),
        ],
        AMD64,
    );
    Fixture { layout, img, a }
}

fn pull(repo: &Path, f: &Fixture) {
    let out = ok(&run(
        repo,
        &["oci", "pull", "-q", &f.layout.reference("app")],
        120,
    ));
    assert_eq!(
        out.lines().last().unwrap_or_default(),
        f.img.config_digest,
        "{out}"
    );
}

fn new_repo(path: &Path, f: &Fixture) -> PathBuf {
    ok(&run(path, &["init", "--insecure"], 30));
    pull(path, f);
    path.to_owned()
}

fn fsck_ok(repo: &Path) {
    let out = run(repo, &["fsck"], 120);
    assert!(out.status.success(), "fsck: {}", text(&out));
}

fn object_rel(data: &[u8]) -> String {
    let id = FsVerityHasher::digest(HashAlgorithm::Sha256, data);
    format!("objects/{}", id.object_path())
}

/// fsck reports `want` (a `path: kind` prefix), repair succeeds, the next pull heals and fsck
/// is clean again.
fn report_repair_heal(repo: &Path, f: &Fixture, want: &str) -> String {
    let out = run(repo, &["fsck"], 120);
    let report = text(&out);
    assert!(!out.status.success(), "fsck passed: {report}");
    assert!(report.contains(want), "fsck must report {want}: {report}");
    let repaired = ok(&run(repo, &["fsck", "--repair"], 120));
    pull(repo, f);
    fsck_ok(repo);
    repaired
}

#[test]
fn layout_dirs_that_are_symlinks_or_files_are_never_followed() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let outside = outside(tmp.path());
    let before = snapshot(&outside);
    let dirs = [
        "tmp",
        "objects",
        "streams",
        "streams/refs",
        "images",
        "images/refs",
    ];
    for (i, d) in dirs.iter().flat_map(|d| [(0, *d), (1, *d)]).enumerate() {
        let (as_file, d) = d;
        let repo = new_repo(&tmp.path().join(format!("repo{i}")), &f);
        // Something for gc to remove, and a spill in tmp/.
        std::fs::write(repo.join("tmp/leftover"), b"x").expect("leftover");
        std::fs::remove_dir_all(repo.join(d)).expect("rm layout dir");
        if as_file == 1 {
            std::fs::write(repo.join(d), b"not a directory").expect("file");
        } else {
            std::os::unix::fs::symlink(&outside, repo.join(d)).expect("symlink");
        }
        let what = if as_file == 1 {
            "a regular file"
        } else {
            "a symlink"
        };
        let named = format!("the repository's {d} is {what}");
        for args in [
            &["oci", "pull", "-q", &f.layout.reference("app")][..],
            &["gc"],
            &["oci", "images"],
            &["images"],
            &["oci", "layer", &f.img.layers[0].diff_id],
        ] {
            let out = run(&repo, args, 60);
            assert!(!out.status.success(), "{args:?} on a damaged {d}");
            assert!(text(&out).contains(&named), "{args:?}: {}", text(&out));
        }
        let out = run(&repo, &["fsck"], 60);
        assert!(!out.status.success());
        assert!(
            text(&out).contains(&format!("{d}: damaged-layout: {what}")),
            "{}",
            text(&out)
        );
        assert_eq!(snapshot(&outside), before, "{d}: outside changed");
        let repaired = ok(&run(&repo, &["fsck", "--repair"], 60));
        assert!(
            repaired.contains(&format!("repaired layout {d}: {what} replaced")),
            "{repaired}"
        );
        let m = std::fs::symlink_metadata(repo.join(d)).expect("repaired dir");
        assert!(m.is_dir(), "{d} is a directory again");
        assert_eq!(snapshot(&outside), before, "{d}: repair changed outside");
        // Removed names are re-created by the pull; the lost objects re-fetched.
        pull(&repo, &f);
        fsck_ok(&repo);
        ok(&run(&repo, &["gc"], 60));
        fsck_ok(&repo);
        assert_eq!(snapshot(&outside), before, "{d}: outside changed");
    }
}

#[test]
fn an_object_dir_that_is_a_symlink_is_not_followed() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let repo = new_repo(&tmp.path().join("repo"), &f);
    let rel = object_rel(&f.a);
    let xx = &rel[..10];
    // The real objects moved outside, with a canary: valid content, but not the repository's.
    let outside = outside(tmp.path());
    for e in std::fs::read_dir(repo.join(xx)).expect("xx") {
        let e = e.expect("e");
        std::fs::copy(e.path(), outside.join(e.file_name())).expect("copy");
    }
    std::fs::remove_dir_all(repo.join(xx)).expect("rm xx");
    std::os::unix::fs::symlink(&outside, repo.join(xx)).expect("symlink");
    let before = snapshot(&outside);
    // Reading the layer needs the object: a clean failure, not a read through the link.
    let out = run(&repo, &["oci", "layer", &f.img.layers[0].diff_id], 60);
    assert!(!out.status.success(), "read through objects/XX symlink");
    ok(&run(&repo, &["gc"], 60));
    assert_eq!(snapshot(&outside), before);
    let repaired = report_repair_heal(&repo, &f, &format!("{xx}: damaged-layout: a symlink"));
    assert!(
        repaired.contains(&format!("removed stray {xx}")),
        "{repaired}"
    );
    assert!(
        std::fs::symlink_metadata(repo.join(xx))
            .expect("xx")
            .is_dir()
    );
    assert_eq!(std::fs::read(repo.join(&rel)).expect("healed"), f.a);
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn object_paths_that_are_not_regular_files_never_block_and_are_healed() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let outside = outside(tmp.path());
    let before = snapshot(&outside);
    let kinds: &[(&str, &str)] = &[
        ("fifo", "a FIFO"),
        ("chardev", "a character device"),
        ("dir", "a directory"),
        ("symlink", "a symlink"),
        ("dangling", "a symlink"),
    ];
    for (kind, what) in kinds {
        if *kind == "chardev" && !common::root_or_skip("a character device object") {
            continue;
        }
        let repo = new_repo(&tmp.path().join(format!("repo-{kind}")), &f);
        let rel = object_rel(&f.a);
        let p = repo.join(&rel);
        std::fs::remove_file(&p).expect("rm object");
        let made = match *kind {
            "fifo" => Command::new("mkfifo").arg(&p).status(),
            // /dev/zero: a reader would never see the end.
            "chardev" => Command::new("mknod").arg(&p).args(["c", "1", "5"]).status(),
            "dir" => {
                std::fs::create_dir(&p).expect("dir");
                std::fs::write(p.join("inside"), b"x").expect("inside");
                Command::new("true").status()
            }
            "symlink" => {
                std::os::unix::fs::symlink(outside.join("canary"), &p).expect("link");
                Command::new("true").status()
            }
            _ => {
                std::os::unix::fs::symlink(outside.join("missing"), &p).expect("link");
                Command::new("true").status()
            }
        };
        assert!(made.expect("make").success(), "{kind}");
        // Reading it fails cleanly (no hang, no read of /dev/zero or the canary).
        let out = run(&repo, &["oci", "layer", &f.img.layers[0].diff_id], 60);
        assert!(!out.status.success(), "{kind}: read a non-regular object");
        assert!(text(&out).contains(what), "{kind}: {}", text(&out));
        ok(&run(&repo, &["gc"], 60));
        ok(&run(&repo, &["oci", "images"], 60));
        let repaired = report_repair_heal(&repo, &f, &format!("{rel}: not-regular-object: {what}"));
        assert!(
            repaired.contains(&format!("removed stray {rel}")),
            "{repaired}"
        );
        let m = std::fs::symlink_metadata(&p).expect("healed");
        assert!(m.is_file(), "{kind}: healed to a regular file");
        assert_eq!(std::fs::read(&p).expect("healed"), f.a);
        assert_eq!(snapshot(&outside), before, "{kind}: outside changed");
    }
}

#[test]
fn a_pull_replaces_a_non_regular_object_path_without_repair() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let repo = new_repo(&tmp.path().join("repo"), &f);
    let rel = object_rel(&f.a);
    let p = repo.join(&rel);
    // Every kind of damage at the object's path; the image is fully stored otherwise, so only
    // a pull that checks the layer's objects (not just its stream) heals it.
    for damage in ["fifo", "dir", "symlink"] {
        std::fs::remove_file(&p).expect("rm object");
        match damage {
            "fifo" => assert!(
                Command::new("mkfifo")
                    .arg(&p)
                    .status()
                    .expect("mkfifo")
                    .success()
            ),
            "dir" => std::fs::create_dir(&p).expect("dir"),
            _ => std::os::unix::fs::symlink("/etc/passwd", &p).expect("symlink"),
        }
        pull(&repo, &f);
        // Checked without opening: a FIFO left in place would block the read below.
        let meta = std::fs::symlink_metadata(&p).expect("object path");
        assert!(
            meta.file_type().is_file(),
            "{damage}: the pull left {:?} at {rel}",
            meta.file_type()
        );
        assert_eq!(std::fs::read(&p).expect("replaced"), f.a, "{damage}");
        fsck_ok(&repo);
    }
}

#[test]
fn stray_entries_and_ref_cycles_are_reported_and_never_wedge() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let outside = outside(tmp.path());
    let before = snapshot(&outside);
    let repo = new_repo(&tmp.path().join("repo"), &f);
    let sym = |target: &str, at: &str| {
        std::os::unix::fs::symlink(target, repo.join(at)).expect("symlink");
    };
    let hex = "ab".repeat(32);
    std::fs::write(repo.join("streams/junk"), b"x").expect("file");
    std::fs::create_dir(repo.join("streams/oci-layer-sha256:dead")).expect("dir");
    std::fs::write(repo.join("streams/oci-layer-sha256:dead/x"), b"x").expect("x");
    std::fs::write(repo.join(format!("images/{hex}")), b"x").expect("file");
    std::fs::write(repo.join("streams/refs/stray"), b"x").expect("file");
    assert!(
        Command::new("mkfifo")
            .arg(repo.join("images/refs/fifo"))
            .status()
            .expect("mkfifo")
            .success()
    );
    let canary = outside.join("canary");
    sym(&canary.to_string_lossy(), "streams/oci-blob-sha256:evil");
    sym("../../outside/canary", "streams/oci-blob-sha256:up");
    sym("../refs/b", "streams/refs/a");
    sym("../refs/a", "streams/refs/b");
    sym("c", "streams/refs/c");
    sym(&outside.to_string_lossy(), "images/refs/out");

    // Listing, gc and a pull neither fail nor hang, and leave strays alone.
    ok(&run(&repo, &["oci", "images"], 60));
    ok(&run(&repo, &["images"], 60));
    ok(&run(&repo, &["gc"], 60));
    pull(&repo, &f);
    ok(&run(&repo, &["oci", "layer", &f.img.layers[0].diff_id], 60));
    assert!(
        repo.join("streams/junk").exists(),
        "gc leaves strays to fsck"
    );
    // (gc removes an image link no ref reaches, whatever it points at: made after gc.)
    sym("../meta.json", &format!("images/{}", "cd".repeat(32)));

    let out = run(&repo, &["fsck"], 60);
    let report = text(&out);
    assert!(!out.status.success());
    for want in [
        "streams/junk: stray-entry".to_owned(),
        "streams/oci-layer-sha256:dead: stray-entry".into(),
        format!("images/{hex}: stray-entry"),
        "streams/refs/stray: stray-entry".into(),
        "images/refs/fifo: stray-entry".into(),
        "streams/oci-blob-sha256:evil: bad-link".into(),
        "streams/oci-blob-sha256:up: bad-link".into(),
        format!("images/{}: bad-link", "cd".repeat(32)),
        "streams/refs/a: bad-ref".into(),
        "streams/refs/b: bad-ref".into(),
        "streams/refs/c: bad-ref".into(),
        "images/refs/out: bad-ref".into(),
    ] {
        assert!(report.contains(&want), "fsck must report {want}: {report}");
    }
    ok(&run(&repo, &["fsck", "--repair"], 60));
    fsck_ok(&repo);
    pull(&repo, &f);
    fsck_ok(&repo);
    assert_eq!(snapshot(&outside), before);
}

/// Makes the temporary directories on the way to `p` searchable by others (tempdir is 0700).
fn open_up(p: &Path) {
    let mut cur = Some(p);
    while let Some(d) = cur {
        if d == Path::new("/") || d == Path::new("/tmp") {
            break;
        }
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        cur = d.parent();
    }
}

#[test]
fn an_unprivileged_user_cannot_block_roots_gc() {
    if !common::root_or_skip("the unprivileged lock holder") || !common::require_tool("setpriv") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"], 30));
    open_up(&repo);
    let nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "flock"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    // The lock file is not the nobody's to open.
    let out = nobody(&["-x", "-n"])
        .arg(repo.join("lock"))
        .arg("true")
        .output()
        .expect("flock lock file");
    assert!(!out.status.success(), "nobody opened the lock file");
    // Holding the repository directory (the lock before the lock file) blocks nothing.
    let mut holder = nobody(&["-x"])
        .arg(&repo)
        .args(["sleep", "60"])
        .spawn()
        .expect("hold");
    std::thread::sleep(Duration::from_millis(300));
    let out = run(&repo, &["gc"], 30);
    let _ = holder.kill();
    let _ = holder.wait();
    ok(&out);
}

#[test]
fn a_held_lock_times_out_naming_the_file_and_holder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&run(&repo, &["init", "--insecure"], 30));
    let mut holder = Command::new("flock")
        .arg("-s")
        .arg(repo.join("lock"))
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let out = run_env(&repo, &["gc"], 30, &[("CFS_LOCK_TIMEOUT", "1")]);
    let waited = start.elapsed();
    let pid = holder.id();
    let _ = holder.kill();
    let _ = holder.wait();
    let msg = text(&out);
    assert!(
        !out.status.success(),
        "gc ran while the lock was held: {msg}"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert!(
        msg.contains(&repo.join("lock").display().to_string()) && msg.contains("timed out"),
        "{msg}"
    );
    // flock(1) forks `sleep`, which inherits the lock: either may be named.
    assert!(
        msg.contains(&format!("pid {pid} (flock)")) || msg.contains("(sleep)"),
        "{msg}"
    );
}

#[test]
fn strays_whose_names_are_not_utf8_are_reported_and_repaired() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let f = fixture(tmp.path());
    let repo = new_repo(&tmp.path().join("repo"), &f);
    let xx = object_rel(&f.a);
    let xx = Path::new(&xx).parent().expect("objects/XX").to_owned();
    let bad = |dir: &Path| dir.join(OsStr::from_bytes(b"stray-\xff\xfe"));
    std::fs::write(bad(&repo.join("streams")), b"x").expect("streams stray");
    std::os::unix::fs::symlink("../x", bad(&repo.join("streams/refs"))).expect("ref stray");
    std::fs::create_dir(bad(&repo.join("images"))).expect("images stray dir");
    std::fs::write(bad(&repo.join(&xx)), b"x").expect("object stray");
    let out = run(&repo, &["fsck"], 120);
    assert!(!out.status.success(), "fsck passed: {}", text(&out));
    ok(&run(&repo, &["fsck", "--repair"], 120));
    fsck_ok(&repo);
    for dir in ["streams", "streams/refs", "images"] {
        assert!(!bad(&repo.join(dir)).exists(), "{dir}: stray left");
    }
    assert!(!bad(&repo.join(&xx)).exists(), "objects/XX: stray left");
    pull(&repo, &f);
    fsck_ok(&repo);
}
