//! `compute-karg`, `oci compute-karg` and `oci prepare-boot` against composefs-rs 0.9.4's
//! `cfsctl` (found or installed by `common/peers.rs`), on small bootable OCI images built here
//! and pulled into both stores (docs/boot.md):
//!
//! - a kernel at `/usr/lib/modules/KVER/vmlinuz` with its `initramfs.img` and an os-release;
//!   BLS entries shipped in `/boot/loader/entries`; a UKI (a real PE image with `.osrel`,
//!   `.cmdline`, `.linux`, `.initrd` sections) in `/boot/EFI/Linux` whose `.cmdline` seals the
//!   image's kernel argument: the same kernel argument, the same file names, the same kernel,
//!   initramfs and UKI bytes, the same entry text (composefs-rs writes the placeholder title
//!   `todoOS` / version `0-todo` for a `/usr/lib/modules` kernel, cfs the image's os-release:
//!   only those two lines differ), the same state directory; SHA-256 and SHA-512;
//! - refusals: a UKI naming another image, no kernel, a kernel that is a symlink out of the
//!   tree, a hostile `--entry-id` / `--cmdline`: nothing written to the boot directory;
//! - the prepared image survives `oci rm` + `gc` until `rmi deploy/<hex>`; a re-run replaces
//!   the entry and leaves no temporary file.

#[path = "common/bootable.rs"]
mod bootable;
mod common;
#[path = "common/oci_layout.rs"]
mod oci_layout;
#[path = "common/peers.rs"]
mod peers;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bootable::{E, Entries, KVER, base, modules_kernel, tar, uki_with, write_dir};
use common::{cfsctl, ok};
use oci_layout::{AMD64, Comp, OciLayout, layer, noise};

const ALGS: [&str; 2] = ["sha256", "sha512"];

/// Runs composefs-rs's `cfsctl ARGS...`.
fn peer<S: AsRef<OsStr>>(bin: &Path, args: &[S]) -> Output {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run composefs-rs cfsctl")
}

/// A cfs and a composefs-rs repository for `alg`, each `repo` in a directory of its own
/// (the state directory goes beside it), neither requiring fs-verity.
struct Pair {
    bin: PathBuf,
    cfs: PathBuf,
    rs: PathBuf,
}

impl Pair {
    fn new(dir: &Path, bin: &Path, alg: &str) -> Self {
        let cfs = dir.join(format!("cfs-{alg}/repo"));
        let rs = dir.join(format!("rs-{alg}/repo"));
        std::fs::create_dir_all(cfs.parent().expect("parent")).expect("mkdir");
        std::fs::create_dir_all(rs.parent().expect("parent")).expect("mkdir");
        ok(&cfsctl(&cfs, &["init", "--insecure", "--hash", alg]));
        let algorithm = format!("fsverity-{alg}-12");
        ok(&peer(
            bin,
            &[
                OsStr::new("init"),
                OsStr::new("--insecure"),
                OsStr::new("--algorithm"),
                OsStr::new(&algorithm),
                rs.as_os_str(),
            ],
        ));
        Self {
            bin: bin.to_owned(),
            cfs,
            rs,
        }
    }

    fn pull(&self, reference: &str, name: &str) {
        ok(&cfsctl(&self.cfs, &["oci", "pull", "-q", reference, name]));
        ok(&self.theirs(&["oci", "pull", reference, name]));
    }

    fn theirs(&self, args: &[&str]) -> Output {
        let mut a = vec![OsStr::new("--repo"), self.rs.as_os_str()];
        a.extend(args.iter().map(OsStr::new));
        peer(&self.bin, &a)
    }

    /// `oci prepare-boot NAME --bootdir B EXTRA...` in both, into fresh boot directories.
    fn prepare(&self, name: &str, tag: &str, extra: &[&str]) -> (PathBuf, Output, PathBuf, Output) {
        let ours_dir = self.cfs.with_file_name(format!("boot-{tag}"));
        let theirs_dir = self.rs.with_file_name(format!("boot-{tag}"));
        for d in [&ours_dir, &theirs_dir] {
            std::fs::create_dir_all(d).expect("bootdir");
        }
        let mut ours = vec!["oci", "prepare-boot", name, "--bootdir"];
        let od = ours_dir.to_str().expect("utf-8");
        ours.push(od);
        ours.extend_from_slice(extra);
        let o = cfsctl(&self.cfs, &ours);
        let mut theirs = vec!["oci", "prepare-boot", name, "--bootdir"];
        let td = theirs_dir.to_str().expect("utf-8");
        theirs.push(td);
        theirs.extend_from_slice(extra);
        let t = self.theirs(&theirs);
        (ours_dir, o, theirs_dir, t)
    }
}

/// Every file below `dir`: relative path → bytes (directories listed with no bytes).
fn files(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .expect("below")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("type");
            if ft.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

/// The composefs argument on a BLS entry's options line.
fn entry_karg(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("options "))
        .flat_map(str::split_whitespace)
        .find(|a| a.starts_with("composefs.digest=") || a.starts_with("composefs="))
        .unwrap_or_else(|| panic!("no composefs argument in {text:?}"))
        .to_owned()
}

/// Asserts both boot directories hold the same files with the same bytes; in `.conf` files
/// the lines `placeholders` lists are compared by key only (composefs-rs's placeholder title
/// and version), and ours must be `title TITLE` / `version VERSION`. Returns the karg.
fn same_boot_dirs(ours: &Path, theirs: &Path, placeholders: Option<(&str, &str)>) -> String {
    let (a, b) = (files(ours), files(theirs));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "file names in {} vs {}",
        ours.display(),
        theirs.display()
    );
    let mut karg = None;
    for (name, data) in &a {
        let theirs_data = &b[name];
        if !name.ends_with(".conf") {
            assert!(data == theirs_data, "{name}: bytes differ");
            continue;
        }
        let o = String::from_utf8(data.clone().expect("file")).expect("utf-8");
        let t = String::from_utf8(theirs_data.clone().expect("file")).expect("utf-8");
        let (o_cmp, t_cmp) = match placeholders {
            None => (o.clone(), t.clone()),
            Some((title, version)) => {
                assert!(t.contains("title todoOS\nversion 0-todo\n"), "{t}");
                assert!(
                    o.contains(&format!("title {title}\nversion {version}\n")),
                    "{o}"
                );
                let strip = |s: &str| {
                    s.lines()
                        .filter(|l| !l.starts_with("title ") && !l.starts_with("version "))
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                };
                (strip(&o), strip(&t))
            }
        };
        assert_eq!(o_cmp, t_cmp, "{name}: entry text");
        karg = Some(entry_karg(&o));
    }
    karg.unwrap_or_default()
}

/// The last line of stdout.
fn last_line(out: &Output) -> String {
    ok(out).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn usr_lib_modules_kernels_match_composefs_rs() {
    let Some(bin) = peers::composefs_rs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut entries = base();
    entries.extend(modules_kernel());
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("k"), &[layer(&tar(&entries), Comp::Gzip)], AMD64);
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    write_dir(&rootfs, &entries);
    for alg in ALGS {
        let pair = Pair::new(tmp.path(), &bin, alg);
        pair.pull(&layout.reference("k"), "k");
        // compute-karg DIR (both), oci compute-karg (ours).
        let dir = rootfs.to_str().expect("utf-8");
        let ours_dir = last_line(&cfsctl(
            &pair.cfs,
            &["compute-karg", "--hash", alg, "--insecure", dir],
        ));
        let theirs_dir = last_line(&peer(
            &bin,
            &[
                "--no-repo",
                "--hash",
                alg,
                "--insecure",
                "compute-karg",
                dir,
            ],
        ));
        assert_eq!(ours_dir, theirs_dir, "compute-karg --insecure DIR ({alg})");
        let secure = last_line(&cfsctl(&pair.cfs, &["compute-karg", "--hash", alg, dir]));
        let theirs_secure = last_line(&peer(
            &bin,
            &["--no-repo", "--hash", alg, "compute-karg", dir],
        ));
        assert_eq!(secure, theirs_secure, "compute-karg DIR ({alg})");
        assert!(
            secure.starts_with(&format!("composefs.digest=v1-{alg}-12:")),
            "{secure}"
        );
        let oci_karg = last_line(&cfsctl(&pair.cfs, &["oci", "compute-karg", "k"]));
        assert_eq!(
            oci_karg, ours_dir,
            "oci compute-karg vs compute-karg DIR ({alg})"
        );

        for (tag, extra) in [
            ("default", vec![]),
            (
                "custom",
                vec![
                    "--entry-id",
                    "mine",
                    "--cmdline",
                    "rw",
                    "--cmdline",
                    "console=ttyS0",
                ],
            ),
        ] {
            let (od, o, td, t) = pair.prepare("k", &format!("{alg}-{tag}"), &extra);
            let printed = last_line(&o);
            ok(&t);
            let karg = same_boot_dirs(&od, &td, Some(("Test OS 13 (trixie)", "13")));
            assert_eq!(
                karg, printed,
                "prepare-boot prints the entry's karg ({alg} {tag})"
            );
            assert_eq!(
                karg, oci_karg,
                "the entry names the bootable image ({alg} {tag})"
            );
            let id = if tag == "default" { KVER } else { "mine" };
            let conf = std::fs::read_to_string(od.join(format!("loader/entries/{id}.conf")))
                .expect("entry");
            assert!(
                conf.contains(&format!(
                    "linux /{id}/vmlinuz\ninitrd /{id}/initramfs.img\n"
                )),
                "{conf}"
            );
            if tag == "custom" {
                assert!(
                    conf.ends_with(&format!("options {karg} rw console=ttyS0\n")),
                    "{conf}"
                );
            }
            let vmlinuz = std::fs::read(od.join(format!("{id}/vmlinuz"))).expect("vmlinuz");
            assert_eq!(vmlinuz, noise(20_000, 7));
            // The same state directory, beside each repository.
            let hex = karg.rsplit(':').next().expect("hex");
            for repo in [&pair.cfs, &pair.rs] {
                let state = repo.with_file_name("state/deploy").join(hex);
                for sub in ["etc/upper", "etc/work", "var"] {
                    assert!(state.join(sub).is_dir(), "{}/{sub}", state.display());
                }
            }
        }
    }
}

#[test]
fn bls_entries_in_the_image_match_composefs_rs() {
    let Some(bin) = peers::composefs_rs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut entries = base();
    entries.extend([
        ("boot/loader".into(), E::Dir),
        ("boot/loader/entries".into(), E::Dir),
        (
            "boot/loader/entries/a-test.conf".into(),
            E::File(
                b"title Test OS (BLS)\nversion 6.1\nlinux /boot/vmlinuz-6.1\ninitrd /boot/initrd.img-6.1\ninitrd /boot/ucode.img\noptions root=UUID=1234 ro quiet\n"
                    .to_vec(),
            ),
        ),
        (
            "boot/loader/entries/b-other.conf".into(),
            E::File(b"title Other\nlinux /boot/vmlinuz-6.1\n".to_vec()),
        ),
        ("boot/vmlinuz-6.1".into(), E::File(noise(30_000, 21))),
        ("boot/initrd.img-6.1".into(), E::File(noise(7_000, 22))),
        // Small enough to be stored inline in the image.
        ("boot/ucode.img".into(), E::File(b"microcode".to_vec())),
    ]);
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("bls"), &[layer(&tar(&entries), Comp::Gzip)], AMD64);
    for alg in ALGS {
        let pair = Pair::new(tmp.path(), &bin, alg);
        pair.pull(&layout.reference("bls"), "bls");
        let oci_karg = last_line(&cfsctl(&pair.cfs, &["oci", "compute-karg", "bls"]));
        for (tag, extra) in [
            ("default", vec![]),
            (
                "custom",
                vec!["--entry-id", "dep1", "--cmdline", "console=ttyS0"],
            ),
        ] {
            let (od, o, td, t) = pair.prepare("bls", &format!("{alg}-{tag}"), &extra);
            ok(&t);
            let karg = same_boot_dirs(&od, &td, None);
            assert_eq!(karg, last_line(&o));
            assert_eq!(karg, oci_karg);
            let (conf, kernel) = if tag == "default" {
                ("a-test.conf", "boot/vmlinuz-6.1")
            } else {
                ("dep1.conf", "dep1/vmlinuz-6.1")
            };
            let text = std::fs::read_to_string(od.join("loader/entries").join(conf)).expect("conf");
            assert!(
                text.contains(&format!("options root=UUID=1234 ro quiet {karg}")),
                "{text}"
            );
            assert_eq!(
                std::fs::read(od.join(kernel)).expect("kernel"),
                noise(30_000, 21)
            );
            assert!(
                !od.join("loader/entries/b-other.conf").exists(),
                "only the first entry"
            );
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("b-other.conf"),
                "the other entry is named"
            );
        }
    }
}

#[test]
fn ukis_are_checked_and_copied_as_composefs_rs() {
    let Some(bin) = peers::composefs_rs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_tar = tar(&base());
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("plain"), &[layer(&base_tar, Comp::Gzip)], AMD64);
    for alg in ALGS {
        let pair = Pair::new(tmp.path(), &bin, alg);
        pair.pull(&layout.reference("plain"), "plain");
        // /boot is emptied by the boot rules: adding a UKI there keeps the image's ID, so
        // the UKI can seal the karg of the image it is part of.
        let karg = last_line(&cfsctl(&pair.cfs, &["oci", "compute-karg", "plain"]));
        let (prefix, hex) = karg.rsplit_once(':').expect("karg");
        let flipped = if hex.starts_with('0') { "1" } else { "0" };
        let other = format!("{prefix}:{flipped}{}", &hex[1..]);
        for (tag, cmdline) in [
            // The refused one first: it must leave no gc root.
            ("wrong", format!("{other} rw")),
            ("good", format!("{karg} rw")),
        ] {
            let efi: Entries = vec![
                ("boot/EFI".into(), E::Dir),
                ("boot/EFI/Linux".into(), E::Dir),
                (
                    "boot/EFI/Linux/test-uki.efi".into(),
                    E::File(uki_with(&cmdline)),
                ),
            ];
            let name = format!("uki-{tag}-{alg}");
            layout.add_image(
                Some(&name),
                &[layer(&base_tar, Comp::Gzip), layer(&tar(&efi), Comp::Gzip)],
                AMD64,
            );
            pair.pull(&layout.reference(&name), &name);
            assert_eq!(
                last_line(&cfsctl(&pair.cfs, &["oci", "compute-karg", &name])),
                karg
            );
            let (od, o, td, t) = pair.prepare(&name, &format!("{alg}-{tag}"), &[]);
            if tag == "good" {
                ok(&t);
                assert_eq!(last_line(&o), karg);
                same_boot_dirs(&od, &td, None);
                assert_eq!(
                    std::fs::read(od.join("EFI/Linux/test-uki.efi")).expect("uki"),
                    uki_with(&cmdline)
                );
                // With --entry-id the UKI is renamed; --cmdline is refused.
                let (od, o, _, t) =
                    pair.prepare(&name, &format!("{alg}-{tag}-id"), &["--entry-id", "dep"]);
                ok(&t);
                ok(&o);
                assert!(od.join("EFI/Linux/dep.efi").is_file());
                let (od, o, _, t) =
                    pair.prepare(&name, &format!("{alg}-{tag}-cmd"), &["--cmdline", "rw"]);
                assert!(!o.status.success() && !t.status.success());
                assert!(
                    String::from_utf8_lossy(&o.stderr).contains("sealed"),
                    "{o:?}"
                );
                assert!(files(&od).is_empty(), "a refused run writes nothing");
            } else {
                assert!(
                    !t.status.success(),
                    "composefs-rs accepted a UKI of another image"
                );
                assert!(!o.status.success(), "cfs accepted a UKI of another image");
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(
                    err.contains("not the image being prepared") && err.contains("test-uki.efi"),
                    "{err}"
                );
                // Refused before the image is stored: no gc root is left behind.
                let images = ok(&cfsctl(&pair.cfs, &["images"]));
                assert!(!images.contains("deploy/"), "{images}");
                assert!(files(&od).is_empty(), "left behind: {:?}", files(&od));
            }
        }
    }
}

#[test]
fn images_without_a_usable_kernel_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("r/repo");
    std::fs::create_dir_all(repo.parent().expect("parent")).expect("mkdir");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    let mut cases: Vec<(&str, Entries, &str)> = vec![("none", base(), "no kernel found")];
    for (tag, target) in [
        ("abs", "/../../../etc/shadow"),
        ("rel", "../../../../../../etc/shadow"),
    ] {
        let mut e = base();
        e.extend([
            ("usr/lib/modules".into(), E::Dir),
            (format!("usr/lib/modules/{KVER}"), E::Dir),
            (format!("usr/lib/modules/{KVER}/vmlinuz"), E::Link(target)),
            (
                format!("usr/lib/modules/{KVER}/initramfs.img"),
                E::File(noise(100, 1)),
            ),
        ]);
        cases.push((tag, e, "is a symlink, not a regular file"));
    }
    let mut no_initramfs = base();
    no_initramfs.extend(modules_kernel().into_iter().take(3));
    cases.push(("noinitrd", no_initramfs, "has no initramfs.img"));
    let mut bad_kver = base();
    bad_kver.extend([
        ("usr/lib/modules".into(), E::Dir),
        ("usr/lib/modules/..evil".into(), E::Dir),
        (
            "usr/lib/modules/..evil/vmlinuz".into(),
            E::File(noise(100, 2)),
        ),
        (
            "usr/lib/modules/..evil/initramfs.img".into(),
            E::File(noise(100, 3)),
        ),
    ]);
    cases.push(("kver", bad_kver, "invalid boot entry id"));
    for (tag, entries, expect) in cases {
        layout.add_image(Some(tag), &[layer(&tar(&entries), Comp::Gzip)], AMD64);
        ok(&cfsctl(
            &repo,
            &["oci", "pull", "-q", &layout.reference(tag), tag],
        ));
        let boot = tmp.path().join(format!("boot-{tag}"));
        std::fs::create_dir(&boot).expect("mkdir");
        let out = cfsctl(
            &repo,
            &[
                "oci",
                "prepare-boot",
                tag,
                "--bootdir",
                boot.to_str().expect("utf-8"),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: prepare-boot succeeded");
        assert!(err.contains(expect), "{tag}: {err}");
        assert!(files(&boot).is_empty(), "{tag}: wrote {:?}", files(&boot));
    }
    // Hostile --entry-id and --cmdline values: refused before anything is written.
    let mut good = base();
    good.extend(modules_kernel());
    layout.add_image(Some("good"), &[layer(&tar(&good), Comp::Gzip)], AMD64);
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("good"), "good"],
    ));
    let boot = tmp.path().join("boot-hostile");
    std::fs::create_dir(&boot).expect("mkdir");
    let b = boot.to_str().expect("utf-8");
    for extra in [
        &["--entry-id", "../../etc"][..],
        &["--entry-id", "a/b"],
        &["--entry-id", ".."],
        &["--entry-id", "x\nlinux /evil"],
        &["--cmdline", "quiet\ninitrd /evil"],
        &["--cmdline", "composefs.digest=v1-sha256-12:00"],
        &["--cmdline", "a b"],
    ] {
        let mut args = vec!["oci", "prepare-boot", "good", "--bootdir", b];
        args.extend_from_slice(extra);
        let out = cfsctl(&repo, &args);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(
            files(&boot).is_empty(),
            "{extra:?}: wrote {:?}",
            files(&boot)
        );
    }
}

#[test]
fn a_prepared_image_is_a_gc_root_and_a_rerun_replaces_the_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("r/repo");
    std::fs::create_dir_all(repo.parent().expect("parent")).expect("mkdir");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut entries = base();
    entries.extend(modules_kernel());
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("k"), &[layer(&tar(&entries), Comp::Gzip)], AMD64);
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("k"), "k"],
    ));
    let boot = tmp.path().join("boot");
    std::fs::create_dir(&boot).expect("mkdir");
    let b = boot.to_str().expect("utf-8");
    let karg = last_line(&cfsctl(
        &repo,
        &[
            "oci",
            "prepare-boot",
            "k",
            "--bootdir",
            b,
            "--cmdline",
            "first",
        ],
    ));
    let hex = karg.rsplit(':').next().expect("hex").to_owned();
    // A re-run with other arguments replaces the entry; no temporary file is left.
    ok(&cfsctl(
        &repo,
        &[
            "oci",
            "prepare-boot",
            "k",
            "--bootdir",
            b,
            "--cmdline",
            "second",
        ],
    ));
    let conf =
        std::fs::read_to_string(boot.join(format!("loader/entries/{KVER}.conf"))).expect("conf");
    assert!(
        conf.ends_with(&format!("options {karg} second\n")),
        "{conf}"
    );
    let names: Vec<String> = files(&boot).into_keys().collect();
    assert!(names.iter().all(|n| !n.contains(".cfs-tmp-")), "{names:?}");
    // `oci create-image --bootable` stores the same bootable image the entry names.
    let stored = ok(&cfsctl(&repo, &["oci", "create-image", "--bootable", "k"]));
    assert_eq!(stored.trim(), hex, "oci create-image --bootable");
    // `oci mount --bootable` (root) mounts that image: /boot is empty, the rest is there.
    if common::root_or_skip("oci mount --bootable") {
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        ok(&cfsctl(
            &repo,
            &[
                "oci",
                "mount",
                "--bootable",
                "k",
                mnt.to_str().expect("utf-8"),
            ],
        ));
        let _mounted = common::Mounted(mnt.clone());
        assert_eq!(
            std::fs::read(mnt.join("etc/hostname")).expect("hostname"),
            b"bootme\n"
        );
        assert!(
            std::fs::read_dir(mnt.join("boot"))
                .expect("boot")
                .next()
                .is_none()
        );
        assert_eq!(
            std::fs::read(mnt.join(format!("usr/lib/modules/{KVER}/vmlinuz"))).expect("kernel"),
            noise(20_000, 7)
        );
    }
    // `oci rm` + gc: the bootable image stays (image ref deploy/<hex>), with its objects.
    ok(&cfsctl(&repo, &["oci", "rm", "k"]));
    ok(&cfsctl(&repo, &["gc"]));
    let images = ok(&cfsctl(&repo, &["images"]));
    assert!(
        images.contains(&hex) && images.contains(&format!("deploy/{hex}")),
        "{images}"
    );
    ok(&cfsctl(&repo, &["fsck"]));
    let mnt = ok(&cfsctl(
        &repo,
        &[
            "image",
            "dump",
            repo.join("images").join(&hex).to_str().expect("utf-8"),
        ],
    ));
    assert!(mnt.contains("/etc/hostname"), "the image reads back");
    // Removing the deployment's ref lets gc free it.
    ok(&cfsctl(&repo, &["rmi", &format!("deploy/{hex}")]));
    ok(&cfsctl(&repo, &["gc"]));
    let images = ok(&cfsctl(&repo, &["images"]));
    assert!(!images.contains(&hex), "{images}");
    ok(&cfsctl(&repo, &["fsck"]));
}

/// An insecure repository whose kernel object was replaced (same length, other bytes): the
/// copy's fs-verity digest is checked, so prepare-boot refuses naming the file, and nothing
/// is written to the boot directory.
#[test]
fn a_replaced_kernel_object_is_never_written_to_the_boot_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("r/repo");
    std::fs::create_dir_all(repo.parent().expect("parent")).expect("mkdir");
    ok(&cfsctl(&repo, &["init", "--insecure"]));
    let mut entries = base();
    entries.extend(modules_kernel());
    let mut layout = OciLayout::create(&tmp.path().join("layout"));
    layout.add_image(Some("k"), &[layer(&tar(&entries), Comp::Gzip)], AMD64);
    ok(&cfsctl(
        &repo,
        &["oci", "pull", "-q", &layout.reference("k"), "k"],
    ));
    let kernel = tmp.path().join("kernel");
    std::fs::write(&kernel, noise(20_000, 7)).expect("kernel");
    let digest = ok(&cfsctl(&repo, &["digest", kernel.to_str().expect("utf-8")]));
    let hex = digest
        .split_whitespace()
        .next()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("digest")
        .to_owned();
    let object = repo.join("objects").join(&hex[..2]).join(&hex[2..]);
    assert!(object.is_file(), "{}", object.display());
    std::fs::write(&object, noise(20_000, 99)).expect("replace the object");
    let boot = tmp.path().join("boot");
    std::fs::create_dir(&boot).expect("mkdir");
    let out = cfsctl(
        &repo,
        &[
            "oci",
            "prepare-boot",
            "k",
            "--bootdir",
            boot.to_str().expect("utf-8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "prepare-boot copied a replaced kernel"
    );
    assert!(
        err.contains(&format!("/usr/lib/modules/{KVER}/vmlinuz")) && err.contains("digest"),
        "{err}"
    );
    assert!(files(&boot).is_empty(), "wrote {:?}", files(&boot));
}
