//! Pulling from a TLS + basic-auth registry (Debian's docker-registry on 127.0.0.1): the right
//! credentials and `--cert-dir` work, and each failure a podman/skopeo user meets (wrong
//! password, unknown tag, unknown repository, a certificate nobody vouches for, a registry that
//! is down) fails with skopeo's own text, unescaped, without skopeo's misleading
//! "Error parsing image name" prefix, naming the image.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;
#[path = "common/registry.rs"]
mod registry;

use std::process::Command;

use common::{cfsctl, ok};
use oci_layout::{AMD64, Comp, OciLayout, layer, noise, tar_of};

#[test]
fn registry_failures_read_as_skopeo_says_them() {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let regdir = tmp.path().join("registry");
    let Some(reg) = registry::Registry::start_secure(&regdir, "alice", "s3cret") else {
        return;
    };
    let certs = registry::Registry::cert_dir(&regdir);
    let certs_s = certs.to_str().expect("utf-8");

    // An image in the registry, put there by skopeo.
    let mut l = OciLayout::create(&tmp.path().join("layout"));
    let tar = tar_of(&[
        ("etc/hostname", b"cfs\n"),
        ("usr/bin/tool", &noise(50_000, 3)),
    ]);
    let img = l.add_image(Some("v1"), &[layer(&tar, Comp::Gzip)], AMD64);
    let target = format!("{}:1", reg.reference("team/app"));
    let st = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-creds",
            "alice:s3cret",
            "--dest-cert-dir",
            certs_s,
        ])
        .arg(l.reference("v1"))
        .arg(&target)
        .status()
        .expect("skopeo copy");
    assert!(st.success(), "skopeo copy into the registry");

    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let pulled = ok(&cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "-q",
            "--creds",
            "alice:s3cret",
            "--cert-dir",
            certs_s,
            &target,
            "app",
        ],
    ));
    assert_eq!(pulled.trim(), img.config_digest);

    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("docker://127.0.0.1:{port}/team/app:1")
    };
    let unknown_tag = format!("{}:nope", reg.reference("team/app"));
    let unknown_repo = format!("{}:1", reg.reference("team/nothing"));
    let cases: [(&str, Vec<&str>, &str, &[&str]); 5] = [
        (
            "wrong password",
            vec!["--creds", "alice:wrong", "--cert-dir", certs_s],
            &target,
            &[
                "unauthorized",
                "invalid username/password",
                "authentication required",
            ],
        ),
        (
            "unknown tag",
            vec!["--creds", "alice:s3cret", "--cert-dir", certs_s],
            &unknown_tag,
            &["manifest unknown"],
        ),
        (
            "unknown repository",
            vec!["--creds", "alice:s3cret", "--cert-dir", certs_s],
            &unknown_repo,
            &[
                "name unknown",
                "manifest unknown",
                "repository name not known",
            ],
        ),
        (
            "untrusted certificate",
            vec!["--creds", "alice:s3cret"],
            &target,
            &["x509", "certificate"],
        ),
        ("registry down", vec![], &down, &["connection refused"]),
    ];
    for (what, opts, image, expect) in cases {
        let mut args = vec!["oci", "pull", "-q"];
        args.extend(opts);
        args.push(image);
        let out = cfsctl(&repo, &args);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{what}: {err}");
        assert!(expect.iter().any(|e| err.contains(e)), "{what}: {err}");
        assert!(err.contains(image), "{what}: names the image: {err}");
        assert!(!err.contains("Error parsing image name"), "{what}: {err}");
        assert!(!err.contains("\\\""), "{what}: escaped quotes: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
    }
    // Push takes the same registry options: with them it lands (and pulls back to the same
    // image ID); without --cert-dir it is refused by TLS.
    let pushed = format!("{}:2", reg.reference("team/pushed"));
    let out = cfsctl(
        &repo,
        &["oci", "push", "app", &pushed, "--creds", "alice:s3cret"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("x509"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&cfsctl(
        &repo,
        &[
            "oci",
            "push",
            "app",
            &pushed,
            "--creds",
            "alice:s3cret",
            "--cert-dir",
            certs_s,
        ],
    ));
    let back = tmp.path().join("back");
    ok(&cfsctl(&back, &["init", "--insecure"]));
    let again = ok(&cfsctl(
        &back,
        &[
            "oci",
            "pull",
            "-q",
            "--creds",
            "alice:s3cret",
            "--cert-dir",
            certs_s,
            &pushed,
            "app",
        ],
    ));
    assert_eq!(again.trim(), img.config_digest);

    // Nothing but the one good pull was stored.
    let images = ok(&cfsctl(&repo, &["oci", "images"]));
    assert_eq!(images.lines().count(), 2, "{images}");
    ok(&cfsctl(&repo, &["fsck"]));
}
