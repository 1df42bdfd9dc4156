//! `oci pull --progress-fd N` and `oci pull --json` (docs/cli.md): the JSON lines a caller
//! reads from its own descriptor, on a cold pull, a partly stored image, a warm pull and a
//! failing pull; and the descriptor checks.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{cfsctl, ok};
use serde_json::Value;

/// Runs `cfsctl --repo REPO oci pull ARGS` with fd 3 redirected to `log` (through sh, which
/// opens it); returns the output and the parsed lines.
fn pull_with_fd(repo: &Path, args: &[&str], log: &Path) -> (Output, Vec<Value>) {
    let mut script = String::from("exec \"$0\" --repo \"$1\" oci pull --progress-fd 3");
    for i in 0..args.len() {
        script.push_str(&format!(" \"${}\"", i + 3));
    }
    script.push_str(" 3>\"$2\"");
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_cfsctl"))
        .arg(repo)
        .arg(log)
        .args(args)
        .output()
        .expect("run sh");
    let text = std::fs::read_to_string(log).expect("progress log");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (out, lines)
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

/// Every line has version 1; `start` first, `done`/`error` last.
fn check_frame(lines: &[Value], last: &str) {
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["version"] == 1), "{lines:?}");
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[lines.len() - 1]["type"], last, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l["type"] == last).count(),
        1,
        "one {last} line"
    );
}

#[test]
fn progress_lines_follow_the_pull() {
    let Some((fixtures, _)) = common::fixtures() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let small = format!("oci:{}:debian-small", fixtures.join("oci").display());
    let gzip = format!("oci:{}:debian-gzip", fixtures.join("oci").display());

    // Cold: every layer starts, progresses to its size and is done.
    let (out, lines) = pull_with_fd(&repo, &[&small, "small"], &tmp.path().join("1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_frame(&lines, "done");
    let resolved = of_type(&lines, "resolved");
    assert_eq!(resolved.len(), 1);
    let starts = of_type(&lines, "layer_start");
    assert_eq!(Some(starts.len() as u64), resolved[0]["to_fetch"].as_u64());
    assert_eq!(of_type(&lines, "layer_done").len(), starts.len());
    for s in &starts {
        let last = lines
            .iter()
            .rfind(|l| l["type"] == "layer_progress" && l["index"] == s["index"])
            .unwrap_or_else(|| panic!("no progress for {s}"));
        assert_eq!(last["bytes"], s["size"], "{s}");
    }
    let done = lines.last().expect("done");
    assert_eq!(done["name"], "small");
    let image_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(done["image_id"], image_id.as_str());

    // Partly stored: the shared base layer is skipped, the others fetched.
    let (out, lines) = pull_with_fd(&repo, &[&gzip], &tmp.path().join("2"));
    assert!(out.status.success());
    check_frame(&lines, "done");
    assert_eq!(of_type(&lines, "layer_skipped").len(), 1, "{lines:?}");
    assert_eq!(of_type(&lines, "layer_done").len(), 3);

    // Warm: nothing fetched.
    let (out, lines) = pull_with_fd(&repo, &[&gzip], &tmp.path().join("3"));
    assert!(out.status.success());
    check_frame(&lines, "done");
    assert!(of_type(&lines, "layer_start").is_empty());
    assert_eq!(lines.last().expect("done")["fetched"], 0);

    // --json: the same result object on stdout instead of the image ID.
    let json: Value =
        serde_json::from_str(&ok(&cfsctl(&repo, &["oci", "pull", "-q", "--json", &gzip])))
            .expect("json");
    assert!(
        json["image_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:"))
    );
    assert_eq!(json["name"], "debian-gzip");
}

#[test]
fn a_failing_pull_ends_with_an_error_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let missing = format!("oci:{}:x", tmp.path().join("no-layout").display());
    let (out, lines) = pull_with_fd(&repo, &[&missing], &tmp.path().join("log"));
    assert_eq!(out.status.code(), Some(1));
    check_frame(&lines, "error");
    let message = lines.last().expect("error")["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("no-layout"), "{message}");
}

#[test]
fn a_descriptor_that_is_not_open_for_writing_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let out = cfsctl(&repo, &["oci", "pull", "--progress-fd", "57", "oci:/x:y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--progress-fd 57"));
    let input = tmp.path().join("input");
    std::fs::write(&input, b"").expect("write");
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" --repo \"$1\" oci pull --progress-fd 3 oci:/x:y 3<\"$2\"")
        .arg(env!("CARGO_BIN_EXE_cfsctl"))
        .arg(&repo)
        .arg(&input)
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading only"), "{err}");
}
