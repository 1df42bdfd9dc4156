//! Image names as podman users expect them (issue 13 §1): the reference grammar (refused
//! before anything is fetched, naming what a name may be), names that would collide as paths,
//! `moved NAME from <old id>` on pull and tag, and the unnamed image listed as `<none>`,
//! found by ID or prefix, until `oci rm ID` or gc.

mod common;

use common::{cfsctl, ok};
use serde_json::Value;

#[test]
fn names_follow_the_reference_grammar_and_are_checked_before_the_pull() {
    let Some((fixtures, _)) = common::fixtures() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let small = format!("oci:{}:debian-small", fixtures.join("oci").display());
    for bad in [
        "bad name!",
        "Upper",
        "a//b",
        "x:",
        "line\nbreak",
        "a\u{7}b",
        "a:b:c",
        "x-",
    ] {
        let out = cfsctl(&repo, &["oci", "pull", "-q", &small, bad]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid image name") && err.contains("a name is"),
            "{err}"
        );
        assert!(
            !err.contains("Not a directory") && !err.contains("symlink"),
            "{err}"
        );
    }
    // Nothing was fetched for the refused names.
    let gc: Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["gc", "--dry-run", "--json"]))).expect("json");
    assert_eq!(gc["kept_objects"], 0, "{gc}");
    assert_eq!(gc["objects"].as_array().map(Vec::len), Some(0), "{gc}");

    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &small, "localhost:5000/team/app:1"],
    ));
    // A name cannot be a path prefix of another, either way round, with pull or tag.
    for (args, existing) in [
        (
            vec!["oci", "pull", "-q", &small, "localhost:5000/team"],
            "localhost:5000/team/app:1",
        ),
        (
            vec!["oci", "tag", "localhost:5000/team/app:1", "localhost:5000"],
            "localhost:5000/team/app:1",
        ),
    ] {
        let out = cfsctl(&repo, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("while the name {existing:?} exists")),
            "{err}"
        );
    }
    ok(&cfsctl(
        &repo,
        &["oci", "tag", "localhost:5000/team/app:1", "org"],
    ));
    let out = cfsctl(&repo, &["oci", "tag", "org", "org/app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("while the name \"org\" exists"), "{err}");
    let images = ok(&cfsctl(&repo, &["oci", "images"]));
    assert_eq!(images.lines().count(), 3, "{images}");
}

#[test]
fn a_moved_name_is_reported_and_the_old_image_stays_as_none() {
    let Some((fixtures, _)) = common::fixtures() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let layout = fixtures.join("oci");
    let small = format!("oci:{}:debian-small", layout.display());
    let zstd = format!("oci:{}:debian-zstd", layout.display());
    let old = ok(&cfsctl(&repo, &["oci", "pull", "-q", &small, "app"]))
        .trim()
        .to_owned();
    let out = cfsctl(&repo, &["oci", "pull", "-q", &zstd, "app"]);
    let new = ok(&out).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("moved app from {old}")),
        "even with -q: {err}"
    );
    // Pulling the same image again moves nothing.
    let out = cfsctl(&repo, &["oci", "pull", "-q", &zstd, "app"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("moved"));

    let table = ok(&cfsctl(&repo, &["oci", "images"]));
    let old_short = &old[7..19];
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(old_short)),
        "{table}"
    );
    let json: Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "images", "--json"]))).expect("json");
    let none: Vec<&Value> = json
        .as_array()
        .expect("array")
        .iter()
        .filter(|i| i["name"].is_null())
        .collect();
    assert_eq!(none.len(), 1, "{json}");
    assert_eq!(none[0]["image_id"], old.as_str());
    // Inspectable by full ID and by a unique prefix; tag gives it a name back.
    let by_id: Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "inspect", &old]))).expect("json");
    assert_eq!(by_id["image_id"], old.as_str());
    ok(&cfsctl(&repo, &["oci", "inspect", old_short]));
    let out = cfsctl(&repo, &["oci", "tag", old_short, "app"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("moved app from {new}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Now the other one is <none>; `oci rm ID` removes it from the listing, gc frees it.
    let out = cfsctl(&repo, &["oci", "rm", &new[7..19]]);
    assert!(ok(&out).contains(&format!("removed unnamed image {new}")));
    let table = ok(&cfsctl(&repo, &["oci", "images"]));
    assert!(!table.contains("<none>"), "{table}");
    assert_eq!(
        cfsctl(&repo, &["oci", "inspect", &new]).status.code(),
        Some(3)
    );
    let gc: Value = serde_json::from_str(&ok(&cfsctl(&repo, &["gc", "--json"]))).expect("json");
    assert!(
        !gc["streams"].as_array().expect("streams").is_empty(),
        "{gc}"
    );
    ok(&cfsctl(&repo, &["fsck"]));
    // The named image is whole.
    ok(&cfsctl(&repo, &["oci", "compute-id", "app"]));
}
