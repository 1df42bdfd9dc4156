//! The pull as a library: `cfs_oci::pull::pull` called from inside tokio runtimes of both
//! flavours (as bootable-container tools call it), its events, and cancellation by dropping
//! its future, which must leave a valid repository that the next pull completes.

mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfs_oci::pull::{PullEvent, PullOptions, pull};
use cfs_repository::{HashAlgorithm, InitVerity, Repository};
use oci_layout::{AMD64, Comp, Image, OciLayout, layer, noise, tar_of};

fn repo(dir: &Path) -> Arc<Repository> {
    Arc::new(
        Repository::init(
            &dir.join("repo"),
            HashAlgorithm::Sha256,
            InitVerity::Insecure,
        )
        .expect("init"),
    )
}

/// A two-layer image: a few small files and one large incompressible one.
fn image(dir: &Path, big: usize) -> (OciLayout, Image) {
    let mut l = OciLayout::create(&dir.join("layout"));
    let small = tar_of(&[
        ("etc/hostname", b"cfs\n"),
        ("usr/bin/tool", &noise(70_000, 1)),
    ]);
    let large_data = noise(big, 2);
    let large = tar_of(&[("usr/share/big.bin", &large_data)]);
    let layers = [layer(&small, Comp::Gzip), layer(&large, Comp::Zstd)];
    let img = l.add_image(Some("v1"), &layers, AMD64);
    (l, img)
}

fn fsck_ok(repo: &Repository) {
    let report = repo.fsck(None, 0).expect("fsck");
    assert!(report.ok(), "fsck problems: {:?}", report.problems);
}

/// Pulls with events and checks them against the image.
async fn pull_and_check(dir: &Path) {
    let (layout, img) = image(dir, 3 << 20);
    let repo = repo(dir);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = PullOptions::default();
    let r = pull(
        Arc::clone(&repo),
        &layout.reference("v1"),
        Some("app"),
        &opts,
        Some(tx),
    )
    .await
    .expect("pull");
    assert_eq!(r.image_id, img.config_digest);
    assert_eq!(r.fetched, 2);
    // Every sender is gone once the pull returned: the channel ends.
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    let mut bytes: BTreeMap<usize, u64> = BTreeMap::new();
    let (mut started, mut done) = (Vec::new(), Vec::new());
    for e in &events {
        match e {
            PullEvent::BlobStarted {
                index,
                digest,
                size,
            } => {
                assert_eq!(*digest, img.layers[*index].digest);
                assert_eq!(*size, img.layers[*index].blob.len() as u64);
                started.push(*index);
            }
            PullEvent::BlobProgress { index, bytes: n } => *bytes.entry(*index).or_default() += n,
            PullEvent::BlobDone { index } => done.push(*index),
            _ => {}
        }
    }
    started.sort();
    done.sort();
    assert_eq!(started, [0, 1], "events: {events:?}");
    assert_eq!(done, [0, 1], "events: {events:?}");
    for (i, l) in img.layers.iter().enumerate() {
        assert_eq!(
            bytes.get(&i).copied(),
            Some(l.blob.len() as u64),
            "progress of layer {i}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PullEvent::Resolved { to_fetch: 2, .. }))
    );
    assert_eq!(
        cfs_oci::store::resolve(&repo, "app").expect("name"),
        format!("oci-config-sha256:{}", &img.config_digest[7..])
    );
    fsck_ok(&repo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_inside_a_multi_thread_runtime() {
    let tmp = tempfile::tempdir().expect("tmp");
    pull_and_check(tmp.path()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn pull_inside_a_current_thread_runtime() {
    let tmp = tempfile::tempdir().expect("tmp");
    pull_and_check(tmp.path()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn pull_can_be_spawned_as_a_task() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (layout, img) = image(tmp.path(), 1 << 20);
    let repo = repo(tmp.path());
    let reference = layout.reference("v1");
    // tokio::spawn needs a Send + 'static future.
    let task = tokio::spawn({
        let repo = Arc::clone(&repo);
        async move { pull(repo, &reference, None, &PullOptions::default(), None).await }
    });
    let r = task.await.expect("join").expect("pull");
    assert_eq!(r.image_id, img.config_digest);
    assert_eq!(r.name, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pull_cancels_it_and_leaves_a_valid_repository() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (layout, img) = image(tmp.path(), 96 << 20);
    let repo = repo(tmp.path());
    let reference = layout.reference("v1");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = PullOptions::default();
    let pulling = pull(Arc::clone(&repo), &reference, Some("app"), &opts, Some(tx));
    let first_bytes = async {
        while let Some(e) = rx.recv().await {
            if matches!(e, PullEvent::BlobProgress { index: 1, .. }) {
                return;
            }
        }
    };
    tokio::select! {
        r = pulling => panic!("the pull finished before it could be cancelled: {r:?}"),
        () = first_bytes => {}
    }
    // The future is dropped: the pull's threads stop and let go of the repository.
    let start = Instant::now();
    while Arc::strong_count(&repo) > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the pull's threads did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cfs_oci::store::resolve(&repo, "app").is_err(),
        "a cancelled pull named its image"
    );
    fsck_ok(&repo);
    // The next pull completes it.
    let r = pull(Arc::clone(&repo), &reference, Some("app"), &opts, None)
        .await
        .expect("pull again");
    assert_eq!(r.image_id, img.config_digest);
    fsck_ok(&repo);
}
