//! End-to-end tests of `cfsctl mount` (root only; skipped with a message otherwise): a directory
//! holding every kind of file is stored with `create-image --no-oci-rules` (the tree as scanned, every xattr), mounted, and compared with the
//! source file by file — type, content, permission bits, owner, mtime with nanoseconds,
//! xattrs (including escaped `trusted.overlay.*`), symlink targets, device numbers and hardlink
//! groups. Mounting a wrong or corrupted image fails. gc keeps an image that only a mount
//! uses (also one in another mount namespace, or one a chrooted process of it cannot see), and
//! a repository on tmpfs mounts through a loop device.

mod common;

use common::snapshot::{assert_same, snapshot};
use common::{Mounted, cfsctl, ok};

use std::path::{Path, PathBuf};

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// A directory with every kind of file composefs can hold.
fn make_source(src: &Path) {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
    use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
    let w = |rel: &str, data: &[u8]| std::fs::write(src.join(rel), data).expect("write");
    std::fs::create_dir_all(src.join("dir/nested/deeper")).expect("mkdir");
    std::fs::create_dir(src.join("empty-dir")).expect("mkdir");
    w("empty", b"");
    w("small", b"hello\n");
    w("inline-64", &[b'a'; 64]);
    w("object-65", &[b'b'; 65]);
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    w("dir/big", &big);
    w("dir/nested/medium", &vec![b'm'; 70_000]);
    w("dup-of-medium", &vec![b'm'; 70_000]);
    std::fs::hard_link(src.join("dir/big"), src.join("big-link")).expect("link");
    std::fs::hard_link(src.join("dir/big"), src.join("dir/nested/big-link2")).expect("link");
    std::fs::hard_link(src.join("small"), src.join("dir/small-link")).expect("link");
    symlink("dir/big", src.join("sym-rel")).expect("symlink");
    symlink(
        "/absolute/target/that/does/not/exist",
        src.join("dir/sym-abs"),
    )
    .expect("symlink");
    symlink("x".repeat(1000), src.join("sym-long")).expect("symlink");
    mknodat(
        CWD,
        src.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        makedev(1, 3),
    )
    .expect("mknod");
    mknodat(
        CWD,
        src.join("dir/blk"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o640),
        makedev(259, 70000),
    )
    .expect("mknod");
    mknodat(
        CWD,
        src.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o620),
        0,
    )
    .expect("mkfifo");
    drop(std::os::unix::net::UnixListener::bind(src.join("socket")).expect("socket"));
    // Unusual permission bits and owners.
    for (rel, mode) in [
        ("small", 0o4755),
        ("object-65", 0o2640),
        ("empty-dir", 0o1777),
        ("dir/nested", 0o700),
    ] {
        std::fs::set_permissions(src.join(rel), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    chown(src.join("object-65"), Some(1234), Some(70000)).expect("chown");
    chown(src.join("dir"), Some(100_000), Some(5)).expect("chown");
    lchown(src.join("sym-rel"), Some(42), Some(43)).expect("lchown");
    // xattrs, including ones overlayfs would interpret if they were not escaped.
    let setx = |rel: &str, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(src.join(rel), name, value, rustix::fs::XattrFlags::empty())
            .expect("setxattr")
    };
    setx("small", "user.greeting", b"hi there");
    setx("small", "user.empty", b"");
    setx("dir/big", "user.binary", &[0, 1, 2, 255, b'=']);
    setx("dir/big", "trusted.overlay.redirect", b"/elsewhere");
    setx("dir", "trusted.overlay.opaque", b"y");
    setx("dir", "user.on-dir", b"d");
    setx("fifo", "trusted.cfs-test", b"t");
    // mtimes with nanoseconds, children first (changing a child changes its directory).
    set_mtime(&src.join("small"), 1_600_000_000, 123_456_789);
    set_mtime(&src.join("sym-rel"), 1_500_000_000, 1);
    set_mtime(&src.join("dir/big"), 2_000_000_000, 999_999_999);
    set_mtime(&src.join("dir/nested"), 1_000, 5);
    set_mtime(&src.join("dir"), 1_700_000_000, 500_000_000);
    set_mtime(src, 1_234_567_890, 42);
}

fn compare(src: &Path, mnt: &Path) {
    let a = snapshot(src);
    let b = snapshot(mnt);
    assert!(a.len() > 20, "{a:?}");
    // The escaped overlay xattrs come back as they were.
    assert_eq!(
        b[Path::new("dir/big")].xattrs[&b"trusted.overlay.redirect"[..]],
        b"/elsewhere"
    );
    assert_same(&a, &b);
}

/// Under `base`: a source directory made by [`make_source`], an empty mount point and a new
/// insecure repository; returns (repo, src, mnt).
fn repo_with_source(base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (repo, src, mnt) = (base.join("repo"), base.join("src"), base.join("mnt"));
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::create_dir(&mnt).expect("mkdir");
    make_source(&src);
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    (repo, src, mnt)
}

#[test]
fn mounted_image_matches_its_source() {
    if !common::root_or_skip("mount tests") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, src, mnt) = repo_with_source(tmp.path());
    let id = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &[
            "create-image".as_ref(),
            "--no-oci-rules".as_ref(),
            src.as_os_str(),
            "test/img".as_ref(),
        ],
    ))
    .trim()
    .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    // compute-id gives the same ID without a repository.
    let computed = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &[
            "compute-id".as_ref(),
            "--no-oci-rules".as_ref(),
            src.as_os_str(),
        ],
    ));
    assert_eq!(computed.trim(), id);

    for name in [id.as_str(), "test/img"] {
        ok(&cfsctl::<&std::ffi::OsStr>(
            &repo,
            &["mount".as_ref(), name.as_ref(), mnt.as_os_str()],
        ));
        let guard = Mounted(mnt.clone());
        compare(&src, &mnt);
        // The EROFS mount is detached: the only new mount is the overlay.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mountinfo
                .lines()
                .any(|l| l.contains(" - erofs ") && l.contains(&*tmp.path().to_string_lossy())),
            "erofs mount visible:\n{mountinfo}"
        );
        drop(guard);
    }

    // gc keeps everything the image needs; fsck checks it.
    let gc = ok(&cfsctl::<&std::ffi::OsStr>(&repo, &["gc".as_ref()]));
    assert!(gc.contains("removed 0 objects"), "{gc}");
    ok(&cfsctl::<&std::ffi::OsStr>(&repo, &["fsck".as_ref()]));
}

#[test]
fn wrong_or_corrupt_images_do_not_mount() {
    if !common::root_or_skip("mount tests") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    let src = tmp.path().join("src");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(src.join("d")).expect("mkdir");
    std::fs::create_dir(&mnt).expect("mkdir");
    std::fs::write(src.join("d/f"), vec![1u8; 10_000]).expect("write");
    ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &["init".as_ref(), "--insecure".as_ref()],
    ));
    let id = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &[
            "create-image".as_ref(),
            "--no-oci-rules".as_ref(),
            src.as_os_str(),
        ],
    ))
    .trim()
    .to_owned();

    let mount = |name: &str| {
        cfsctl::<&std::ffi::OsStr>(&repo, &["mount".as_ref(), name.as_ref(), mnt.as_os_str()])
    };
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&*mnt.to_string_lossy())
    };
    // An ID nobody registered, a ref that does not exist.
    for wrong in ["0".repeat(64), "no-such-ref".to_owned()] {
        let out = mount(&wrong);
        assert!(!out.status.success(), "{wrong} mounted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not found"), "{err}");
        assert!(!mounted());
    }
    // The image object replaced behind the repository's back (by another valid image): its
    // digest no longer matches its name.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("g"), b"different").expect("write");
    let oid = ok(&cfsctl::<&std::ffi::OsStr>(
        &repo,
        &[
            "create-image".as_ref(),
            "--no-oci-rules".as_ref(),
            other.as_os_str(),
        ],
    ))
    .trim()
    .to_owned();
    let object = |id: &str| repo.join("objects").join(&id[..2]).join(&id[2..]);
    std::fs::remove_file(object(&id)).expect("rm");
    std::fs::copy(object(&oid), object(&id)).expect("copy");
    let out = mount(&id);
    assert!(!out.status.success(), "corrupt image mounted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(!mounted());
}

/// A process that holds a mount namespace of its own (`unshare -m`) with an image mounted in
/// it; killed on drop, which ends the namespace and its mount.
struct MountInOtherNamespace(std::process::Child);

impl Drop for MountInOtherNamespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd`, waits until it prints `ready`; returns it (killed on drop) and its pid.
fn spawn_ready(cmd: &mut std::process::Command) -> (MountInOtherNamespace, u32) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let pid = child.id();
    let holder = MountInOtherNamespace(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
    assert_eq!(line.trim(), "ready", "{cmd:?} did not get ready");
    (holder, pid)
}

#[test]
fn gc_keeps_images_in_use_by_mounts_without_refs() {
    if !common::root_or_skip("mount tests")
        || !common::require_tool("unshare")
        || !common::require_tool("nsenter")
        || !common::require_tool("busybox")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, src, mnt) = repo_with_source(tmp.path());
    let run = |args: &[&std::ffi::OsStr]| ok(&cfsctl(&repo, args));
    // No image ref: only the mount keeps this image alive.
    let id = run(&[
        "create-image".as_ref(),
        "--no-oci-rules".as_ref(),
        src.as_os_str(),
    ])
    .trim()
    .to_owned();
    let image_link = repo.join("images").join(&id);
    assert!(image_link.exists());

    run(&["mount".as_ref(), id.as_ref(), mnt.as_os_str()]);
    let guard = Mounted(mnt.clone());
    let listed = run(&["mounts".as_ref()]);
    assert!(
        listed
            .lines()
            .any(|l| l == format!("{id}\t{}", mnt.display())),
        "{listed}"
    );
    let gc = run(&["gc".as_ref()]);
    assert!(gc.contains(&format!("kept image {id} (mounted")), "{gc}");
    assert!(gc.contains("removed 0 objects"), "{gc}");
    assert!(image_link.exists(), "the mounted image's link survives gc");
    // Forget cached lookups so every read goes to the objects directory again.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    compare(&src, &mnt);
    drop(guard);

    // A mount in another mount namespace, invisible from this one, counts too.
    let ns_mnt = tmp.path().join("ns-mnt");
    std::fs::create_dir(&ns_mnt).expect("mkdir");
    let script = format!(
        "'{}' --repo '{}' mount {id} '{}' && echo ready && exec sleep 600",
        env!("CARGO_BIN_EXE_cfsctl"),
        repo.display(),
        ns_mnt.display()
    );
    let (holder, _) = spawn_ready(std::process::Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let own = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!own.contains(&id), "the mount leaked into this namespace");
    let listed = run(&["mounts".as_ref()]);
    assert!(
        listed.contains(&format!("{id}\t{}\t(namespace mnt:[", ns_mnt.display())),
        "{listed}"
    );
    let gc = run(&["gc".as_ref()]);
    assert!(gc.contains(&format!("kept image {id} (mounted")), "{gc}");
    assert!(gc.contains("removed 0 objects"), "{gc}");

    drop(holder);

    // A namespace whose only process is chrooted away from the mount, while another process
    // of it (entered with nsenter, so at the namespace's root) uses the mount: the chrooted
    // process's table does not show the mount, the other's does.
    let chroot = tmp.path().join("chroot");
    std::fs::create_dir(&chroot).expect("mkdir");
    std::fs::copy("/bin/busybox", chroot.join("busybox")).expect("copy busybox");
    let script = format!(
        "'{}' --repo '{}' mount {id} '{}' && echo ready && exec chroot '{}' /busybox sleep 600",
        env!("CARGO_BIN_EXE_cfsctl"),
        repo.display(),
        ns_mnt.display(),
        chroot.display()
    );
    let (chrooted, pid) = spawn_ready(std::process::Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let (user, _) = spawn_ready(std::process::Command::new("nsenter").args([
        "-t",
        &pid.to_string(),
        "-m",
        "sh",
        "-c",
        &format!("cd '{}' && echo ready && exec sleep 600", ns_mnt.display()),
    ]));
    let gc = run(&["gc".as_ref()]);
    assert!(gc.contains(&format!("kept image {id} (mounted")), "{gc}");
    assert!(gc.contains("removed 0 objects"), "{gc}");
    drop(user);
    drop(chrooted);

    // A mount source names anything its maker likes (an unprivileged user can mount an
    // overlay in a user namespace): one naming an object that is not an image does not stop
    // gc, nor keep anything.
    let digest = ok(&cfsctl(
        &repo,
        &["digest".as_ref(), src.join("dir/big").as_os_str()],
    ));
    let object = digest.split(' ').next().expect("digest").to_owned();
    let (lower, upper, fake) = (
        tmp.path().join("l1"),
        tmp.path().join("l2"),
        tmp.path().join("fake"),
    );
    for d in [&lower, &upper, &fake] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let options =
        std::ffi::CString::new(format!("lowerdir={}:{}", lower.display(), upper.display()))
            .expect("options");
    rustix::mount::mount(
        format!("cfs:{object}").as_str(),
        &fake,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(options.as_c_str()),
    )
    .expect("mount the fake overlay");
    let _fake = Mounted(fake.clone());
    let listed = run(&["mounts".as_ref()]);
    assert!(listed.contains(&object[7..]), "{listed}");
    let gc = run(&["gc".as_ref(), "--dry-run".as_ref()]);
    assert!(
        !gc.contains(&format!("kept image {}", &object[7..])),
        "{gc}"
    );

    // Once no mount uses it, the image and its objects go.
    let gc = run(&["gc".as_ref(), "-v".as_ref()]);
    assert!(gc.contains(&format!("removed image {id}")), "{gc}");
    assert!(!gc.contains("removed 0 objects"), "{gc}");
    assert!(!image_link.exists());
    run(&["fsck".as_ref()]);
}

/// The loop devices whose backing file lies under `dir`.
fn loop_devices_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
    {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing)
            && file.starts_with(&*dir.to_string_lossy())
        {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn a_repository_on_tmpfs_mounts_through_a_loop_device() {
    if !common::root_or_skip("mount tests") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let fs = tmp.path().join("tmpfs");
    std::fs::create_dir(&fs).expect("mkdir");
    rustix::mount::mount(
        "tmpfs",
        &fs,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mount tmpfs");
    let _tmpfs = Mounted(fs.clone());
    let (repo, src, mnt) = repo_with_source(&fs);
    let run = |args: &[&std::ffi::OsStr]| ok(&cfsctl(&repo, args));
    let id = run(&[
        "create-image".as_ref(),
        "--no-oci-rules".as_ref(),
        src.as_os_str(),
    ])
    .trim()
    .to_owned();
    // EROFS cannot read a file on tmpfs directly (ENOTBLK); the mount goes through a loop
    // device over the image object.
    run(&["mount".as_ref(), id.as_ref(), mnt.as_os_str()]);
    let guard = Mounted(mnt.clone());
    compare(&src, &mnt);
    assert_eq!(loop_devices_under(&fs).len(), 1, "one loop device");
    drop(guard);
    // Auto-clear: the device goes with the mount (the kernel releases it asynchronously).
    let mut left = loop_devices_under(&fs);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = loop_devices_under(&fs);
    }
    assert!(left.is_empty(), "loop devices left behind: {left:?}");
}
