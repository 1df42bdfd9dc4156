//! Chaos: `cfsctl oci pull` SIGKILLed at random moments, over and over. After every kill fsck
//! must pass and the next pull must complete with the right image ID; then the image is removed
//! and gc'd so the next round starts cold. A short run (5 kills) is part of the normal tests;
//! `cargo xtask chaos` runs the ignored long one (100 kills by default; `CFS_CHAOS_ROUNDS`,
//! `CFS_CHAOS_SEED`).

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use common::{cfsctl, ok};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_layout::{AMD64, Comp, Image, OciLayout, layer, noise, tar_of};

fn image(layout: &mut OciLayout) -> Image {
    let files: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("d{}/f{i}", i % 7), noise(10_000 + i * 17, i as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    layout.add_image(
        Some("chaos"),
        &[
            layer(&tar_of(&[("big", &noise(12 << 20, 1))]), Comp::Gzip),
            layer(&tar_of(&refs), Comp::Zstd),
            layer(&tar_of(&[("mid", &noise(4 << 20, 2))]), Comp::Plain),
            layer(&tar_of(&[("small", b"s")]), Comp::GzipMulti),
        ],
        AMD64,
    )
}

fn chaos(rounds: u64, seed: u64) {
    if !common::require_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let img = image(&mut layout);
    let reference = layout.reference("chaos");
    let repo = tmp.path().join("repo");
    ok(&cfsctl(&repo, &["init", "--insecure"]));

    // How long a cold pull takes here: kills are spread over 0..1.2× that.
    let t = Instant::now();
    ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference]));
    let full = t.elapsed().as_millis().max(50) as u64;
    ok(&cfsctl(&repo, &["oci", "rm", "chaos"]));
    ok(&cfsctl(&repo, &["gc"]));

    let mut x = seed | 1;
    for round in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = x % (full * 6 / 5);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .arg("--repo")
            .arg(&repo)
            .args(["oci", "pull", "-q", &reference])
            .env_remove("CFS_REPO")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let fsck = cfsctl(&repo, &["fsck"]);
        assert!(
            fsck.status.success(),
            "round {round} (seed {seed}, killed after {delay} ms): fsck failed:\n{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        let out = ok(&cfsctl(&repo, &["oci", "pull", "-q", &reference]));
        assert_eq!(
            out.lines().last().unwrap_or_default(),
            img.config_digest,
            "round {round} (seed {seed}, killed after {delay} ms)"
        );
        ok(&cfsctl(&repo, &["oci", "rm", "chaos"]));
        ok(&cfsctl(&repo, &["gc"]));
    }
    ok(&cfsctl(&repo, &["fsck"]));
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed() -> u64 {
    env_u64("CFS_CHAOS_SEED").unwrap_or_else(|| {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        // Printed so a failure can be replayed with CFS_CHAOS_SEED.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("chaos seed {s}\n").as_bytes(),
        );
        s
    })
}

#[test]
fn a_few_random_kills() {
    chaos(5, seed());
}

/// `cargo xtask chaos`: 100 kills (or `CFS_CHAOS_ROUNDS`).
#[test]
#[ignore = "long: run with cargo xtask chaos"]
fn chaos_many_random_kills() {
    chaos(env_u64("CFS_CHAOS_ROUNDS").unwrap_or(100), seed());
}
