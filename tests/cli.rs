//! End-to-end tests of the repository commands of the `cfsctl` binary: init, fsck (exit status
//! and JSON), gc, cat, and the repository location defaults.

mod common;
#[path = "common/peers.rs"]
mod peers;

use common::{cfsctl, ok};
use std::path::Path;
use std::process::Command;

/// A tar archive with a few files, one large enough to become an object.
fn sample_tar(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("small"), b"tiny").expect("write");
    std::fs::write(src.join("sub/big"), vec![b'x'; 100_000]).expect("write");
    let out = Command::new("tar")
        .args(["-C"])
        .arg(&src)
        .args(["--sort=name", "-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(out.status.success());
    out.stdout
}

fn import(repo: &Path, tar: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .arg("--repo")
        .arg(repo)
        .args(["oci", "import-layer"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(tar)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    ok(&out).trim().to_owned()
}

#[test]
fn init_requires_verity_or_explicit_insecure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    let out = cfsctl(&repo, &["init"]);
    if out.status.success() {
        // This filesystem supports fs-verity: the repository must say enforced.
        let meta = std::fs::read_to_string(repo.join("meta.json")).expect("meta");
        assert!(meta.contains("\"enforced\""), "{meta}");
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fs-verity") && err.contains("--insecure"),
        "{err}"
    );
    assert!(!repo.join("meta.json").exists());

    let stdout = ok(&cfsctl(&repo, &["init", "--insecure", "--hash", "sha512"]));
    assert!(
        stdout.contains("sha512") && stdout.contains("insecure"),
        "{stdout}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("meta.json")).expect("meta"))
            .expect("json");
    assert_eq!(meta["hash"], "sha512");
    assert_eq!(meta["verity"], "insecure");
    for d in ["objects", "streams/refs", "images/refs", "tmp"] {
        assert!(repo.join(d).is_dir(), "{d}");
    }
    let again = cfsctl(&repo, &["init", "--insecure"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
}

#[test]
fn not_a_repository_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A missing repository (every kind of command) says how to create one.
    for args in [&["fsck"][..], &["images"], &["oci", "images"], &["gc"]] {
        let out = cfsctl(&tmp.path().join("nothing"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nothing") && err.contains("cfsctl --repo"),
            "{err}"
        );
        assert!(err.contains(" init"), "{err}");
    }
    // An empty directory likewise.
    let out = cfsctl(tmp.path(), &["images"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a cfs repository") && err.contains(" init"),
        "{err}"
    );
}

/// A composefs-rs repository is named as such, not reported as broken metadata: the
/// meta.json composefs-rs 0.9.4 writes, and (when installed) one made by composefs-rs itself.
#[test]
fn a_composefs_rs_repository_is_recognised() {
    let tmp = tempfile::tempdir().expect("tmp");
    let hand = tmp.path().join("by-hand");
    std::fs::create_dir(&hand).expect("mkdir");
    std::fs::write(
        hand.join("meta.json"),
        r#"{"version":1,"algorithm":"fsverity-sha512-12","features":{"compatible":[],"read-only-compatible":["v1_erofs"],"incompatible":[]},"erofs_formats":{"default":1}}"#,
    )
    .expect("meta");
    let mut repos = vec![hand];
    match peers::composefs_rs() {
        Some(peer) => {
            let made = tmp.path().join("by-composefs-rs");
            let st = Command::new(peer)
                .args(["init", "--insecure", "--algorithm", "fsverity-sha256-12"])
                .arg(&made)
                .status()
                .expect("run composefs-rs");
            assert!(st.success());
            repos.push(made);
        }
        None => {
            eprintln!("composefs-rs 0.9.4 not installed: checking the hand-made meta.json only")
        }
    }
    for repo in repos {
        let out = cfsctl(&repo, &["images"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is a composefs-rs repository"), "{err}");
    }
    // A damaged cfs meta.json is still reported as such.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).expect("mkdir");
    std::fs::write(broken.join("meta.json"), b"{\"format\": 7}").expect("meta");
    let err = String::from_utf8_lossy(&cfsctl(&broken, &["images"]).stderr).into_owned();
    assert!(err.contains("not valid repository metadata"), "{err}");
}

#[test]
fn cfs_repo_environment_variable_is_the_default() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("envrepo");
    let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .args(["init", "--insecure"])
        .env("CFS_REPO", &repo)
        .output()
        .expect("run");
    ok(&out);
    assert!(repo.join("meta.json").exists());
}

#[test]
fn cat_fsck_and_gc() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let tar = sample_tar(tmp.path());
    let cid = import(&repo, &tar);
    assert!(cid.starts_with("oci-layer-sha256:"), "{cid}");

    // cat re-creates the stream byte for byte.
    let out = cfsctl(&repo, &["cat", &cid]);
    assert!(out.status.success());
    assert_eq!(out.stdout, tar);

    // A sound repository: exit 0, JSON says ok.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["fsck", "--json"]))).expect("json");
    assert_eq!(json["ok"], true);
    assert!(json["objects"].as_u64().expect("objects") >= 1);

    // Unreferenced: gc --dry-run lists the stream, removes nothing; gc removes it.
    let dry = ok(&cfsctl(&repo, &["gc", "--dry-run", "-v"]));
    assert!(dry.contains(&format!("would remove stream {cid}")), "{dry}");
    assert!(cfsctl(&repo, &["cat", &cid]).status.success());
    let gc = ok(&cfsctl(&repo, &["gc", "-v"]));
    assert!(gc.contains(&format!("removed stream {cid}")), "{gc}");
    assert!(!cfsctl(&repo, &["cat", &cid]).status.success());
    let objects = std::fs::read_dir(repo.join("objects"))
        .expect("objects")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("dir"))
        .count();
    assert_eq!(objects, 0);
}

#[test]
fn fsck_exits_non_zero_on_damage() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let tar = sample_tar(tmp.path());
    let cid = import(&repo, &tar);
    // Flip one byte of the largest object.
    let mut objects: Vec<_> = std::fs::read_dir(repo.join("objects"))
        .expect("objects")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("dir"))
        .map(|e| e.expect("entry").path())
        .collect();
    objects.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let victim = objects.last().expect("an object");
    let mut bytes = std::fs::read(victim).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(victim, bytes).expect("write");

    let out = cfsctl(&repo, &["fsck"]);
    assert!(!out.status.success(), "fsck must fail");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("corrupt-object"), "{text}");
    let out = cfsctl(&repo, &["fsck", "--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["ok"], false);
    assert_eq!(json["problems"][0]["kind"], "corrupt-object");
    // A missing object: cat fails and says so.
    std::fs::remove_file(victim).expect("rm");
    let out = cfsctl(&repo, &["cat", &cid]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn images_rmi_and_gc_free_composefs_images() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("shared"), vec![b's'; 50_000]).expect("write");
    let run = |args: &[&str]| ok(&cfsctl(&repo, args));
    run(&["init", "--insecure"]);
    let create = |name: Option<&str>| {
        let mut args = vec!["create-image", src.to_str().expect("utf-8")];
        args.extend(name);
        run(&args).trim().to_owned()
    };
    let first = create(Some("app/v1"));
    run(&["create-image", src.to_str().expect("utf-8"), "app/latest"]);
    std::fs::write(src.join("own"), vec![b'o'; 60_000]).expect("write");
    let second = create(None);
    assert_ne!(first, second);

    let listed = run(&["images"]);
    assert!(
        listed.contains(&format!("{first}\tapp/latest,app/v1\t-\n")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "{second}\t-\t- (unused: the next gc removes it)\n"
        )),
        "{listed}"
    );

    // Unknown names are errors that name them; nothing is removed.
    let out = cfsctl(&repo, &["rmi", "app/v2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no composefs image or image ref \"app/v2\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The unnamed image goes with the next gc, with its own object; the shared one stays.
    let gc = run(&["gc", "-v"]);
    assert!(gc.contains(&format!("removed image {second}")), "{gc}");
    assert!(gc.contains("removed 2 objects"), "{gc}");
    // One name removed: the other still keeps the image.
    assert_eq!(run(&["rmi", "app/v1"]), "removed image ref app/v1\n");
    assert!(run(&["gc"]).contains("removed 0 objects"));
    // By ID: every remaining name goes, then gc frees the image and its file.
    assert_eq!(run(&["rmi", &first]), "removed image ref app/latest\n");
    let gc = run(&["gc", "-v"]);
    assert!(gc.contains(&format!("removed image {first}")), "{gc}");
    assert!(gc.contains("kept 0 objects"), "{gc}");
    assert_eq!(run(&["images"]), "COMPOSEFS ID\tNAMES\tMOUNTED AT\n");
    run(&["fsck"]);
}

/// `cfsctl completions SHELL` prints a script for each shell that knows the nested commands,
/// and refuses an unknown shell as a usage error.
#[test]
fn completions_for_every_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "_cfsctl"),
        ("zsh", "#compdef cfsctl"),
        ("fish", "complete -c cfsctl"),
    ] {
        let out = cfsctl(dir.path(), &["completions", shell]);
        let text = ok(&out);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        // Nested subcommands (oci pull) and their options are completed too.
        assert!(
            text.contains("pull") && text.contains("tls-verify"),
            "{shell}"
        );
    }
    let out = cfsctl(dir.path(), &["completions", "cmd.exe"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown shell must be a usage error"
    );
}

/// gc prints one summary line with human-readable sizes; `-v` adds a line per removed name and
/// object; `--json` has the counts and bytes removed and kept.
#[test]
fn gc_summary_verbose_and_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let cid = import(&repo, &sample_tar(tmp.path()));

    let json: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["gc", "--dry-run", "--json"]))).expect("json");
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["streams"][0], cid.as_str(), "{json}");
    let removed = json["objects"].as_array().expect("objects").len();
    assert!(removed >= 2, "the stream and the 100 kB file: {json}");
    assert!(json["bytes"].as_u64().expect("bytes") >= 100_000, "{json}");
    assert_eq!(json["kept_objects"], 0);
    assert_eq!(json["kept_bytes"], 0);

    let dry = ok(&cfsctl(&repo, &["gc", "--dry-run"]));
    assert_eq!(dry.lines().count(), 1, "one summary line: {dry}");
    assert!(
        dry.starts_with(&format!("would remove {removed} objects (")),
        "{dry}"
    );
    assert!(dry.contains(" KiB)") && dry.contains("1 streams"), "{dry}");
    let verbose = ok(&cfsctl(&repo, &["gc", "-v"]));
    assert!(
        verbose.contains(&format!("removed stream {cid}")),
        "{verbose}"
    );
    assert_eq!(
        verbose
            .lines()
            .filter(|l| l.starts_with("removed object "))
            .count(),
        removed,
        "{verbose}"
    );
    let again = ok(&cfsctl(&repo, &["gc"]));
    assert_eq!(
        again,
        "removed 0 objects (0 B), 0 streams, 0 images; kept 0 objects (0 B)\n"
    );
}

/// Exit statuses (docs/cli.md): 3 when the named image does not exist (whichever command and
/// kind of name), 2 for usage errors, 1 for other failures.
#[test]
fn exit_status_tells_not_found_from_usage_and_failure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let unknown_id = "8b7df143d91c716ecfa5fc1730022f6b421b05cedee8fd52b1fc65a96030ad52";
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mnt = mnt.to_str().expect("utf-8");
    for args in [
        vec!["rmi", "nothere"],
        vec!["rmi", unknown_id],
        vec!["oci", "rm", "nothere"],
        vec!["oci", "untag", "nothere"],
        vec!["oci", "inspect", "nothere"],
        vec!["oci", "tag", "nothere", "other"],
        vec!["oci", "compute-id", "nothere"],
        vec!["oci", "cat", "nothere"],
    ] {
        let out = cfsctl(&repo, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("nothere") || err.contains(unknown_id),
            "{args:?}: {err}"
        );
        // Each points to the other family of commands.
        assert!(
            err.contains("cfsctl images") && err.contains("cfsctl oci images"),
            "{err}"
        );
    }
    if rustix::process::geteuid().is_root() {
        for args in [
            vec!["mount", "nothere", mnt],
            vec!["mount", unknown_id, mnt],
        ] {
            let out = cfsctl(&repo, &args);
            assert_eq!(out.status.code(), Some(3), "{args:?}");
        }
    }
    assert_eq!(cfsctl(&repo, &["no-such-command"]).status.code(), Some(2));
    assert_eq!(cfsctl(&repo, &["gc", "--bogus"]).status.code(), Some(2));
    let missing = tmp.path().join("no-layout");
    let source = format!("oci:{}:x", missing.display());
    let out = cfsctl(&repo, &["oci", "pull", &source]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `images --json` and `mounts --json` name composefs IDs as such (`composefs_id`), never as
/// the OCI image ID.
#[test]
fn images_and_mounts_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("file"), vec![b'y'; 20_000]).expect("write");
    let src = src.to_str().expect("utf-8");
    let id = ok(&cfsctl(&repo, &["create-image", src, "app"]))
        .trim()
        .to_owned();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["images", "--json"]))).expect("json");
    assert_eq!(v[0]["composefs_id"], id.as_str(), "{v}");
    assert_eq!(v[0]["refs"][0], "app", "{v}");
    assert_eq!(v[0]["mounts"].as_array().map(Vec::len), Some(0), "{v}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["mounts", "--json"]))).expect("json");
    assert!(v.as_array().is_some(), "{v}");
    let table = ok(&cfsctl(&repo, &["images"]));
    assert!(
        table.starts_with("COMPOSEFS ID\tNAMES\tMOUNTED AT\n"),
        "{table}"
    );
}

/// Composefs images are found by a unique ID prefix too (rmi, mount), and several names go
/// at once.
#[test]
fn composefs_ids_by_unique_prefix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut ids = Vec::new();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let src = tmp.path().join(name);
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("f"), vec![b'a' + i as u8; 9000]).expect("write");
        let src = src.to_str().expect("utf-8").to_owned();
        ids.push(
            ok(&cfsctl(&repo, &["create-image", &src, name]))
                .trim()
                .to_owned(),
        );
    }
    // A prefix that is also not a ref: the image's every ref goes.
    let out = ok(&cfsctl(&repo, &["rmi", &ids[0][..10]]));
    assert_eq!(out, "removed image ref one\n");
    // An unknown prefix is "not found".
    let out = cfsctl(&repo, &["rmi", "0000000000"]);
    let status = out.status.code();
    if !ids[1].starts_with("0000000000") {
        assert_eq!(status, Some(3));
    }
    if rustix::process::geteuid().is_root() {
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let mnt_s = mnt.to_str().expect("utf-8");
        ok(&cfsctl(&repo, &["mount", &ids[1][..8], mnt_s]));
        let _m = common::Mounted(mnt.clone());
        assert_eq!(
            std::fs::read(mnt.join("f")).expect("read"),
            vec![b'b'; 9000]
        );
    }
    // rmi and oci rm take several names.
    let out = ok(&cfsctl(&repo, &["rmi", "two", &ids[0]]));
    assert!(out.contains("removed image ref two"), "{out}");
}
