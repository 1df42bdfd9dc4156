//! End-to-end tests of `cfsctl setup-root` (root only; skipped with a message otherwise), each
//! in a private mount namespace (`unshare --mount --propagation private` around a shell script
//! that runs cfsctl): a tmpfs is the physical root, `SYSROOT/composefs` an insecure repository
//! holding a bootable image made from a small directory.
//!
//! - The root is mounted: SYSROOT is a read-only overlay whose source is `composefs:<hex>`,
//!   files read right, `/etc` is writable and writes land in the state directory's
//!   `etc/upper`, `/var` is the state's `var`, `/sysroot` shows the physical root, and gc sees
//!   the mounted image. Both orders of building `/etc` are run (detached lower, and the one for
//!   kernels before 6.15).
//! - Refusals (no argument, a malformed one, an unknown digest, a `?`-less argument on the
//!   insecure repository, a replaced image file, an image link out of the repository, a
//!   missing repository, an image without `/var`, a symlink in the state directory's path):
//!   each fails naming what is wrong, the mount table is unchanged and no state directory is
//!   created. A mount failing after the image is attached (the `/etc` overlay) is undone: the
//!   mount table is unchanged too. Each case runs in both `/etc` orders.
//! - composefs-rs 0.9.4's `cfsctl mount` mounts an image of a cfs repository (its meta.json).
//!
//! (The fs-verity path, `verity=require` and the kernel's measurement, needs a filesystem
//! with fs-verity: proved in the QEMU boot test, `cargo xtask vm-test --boot`.)

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ok, root_or_skip};

/// The cfsctl under test, hard-linked (or copied) into `dir` first: every call of a test then
/// runs the same binary even if a build replaces the target directory's copy meanwhile.
fn own_binary(dir: &Path) -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_cfsctl"));
    let own = dir.join("cfsctl");
    if std::fs::hard_link(built, &own).is_err() {
        std::fs::copy(built, &own).expect("copy cfsctl");
    }
    own
}

/// The shell prelude of every scenario: `$S` a tmpfs (the physical root) with an insecure
/// repository `$S/composefs` holding image `$ID` (bootable) of `$SRC`; `$OTHER` a second
/// image of another directory.
const PRELUDE: &str = r#"
set -eu
mount -t tmpfs physical "$S"
"$C" --repo "$S/composefs" init --insecure >/dev/null
ID=$("$C" --repo "$S/composefs" create-image --bootable "$SRC")
OTHER=$("$C" --repo "$S/composefs" create-image --bootable "$SRC2")
object() { echo "$S/composefs/objects/$(echo "$1" | cut -c1-2)/$(echo "$1" | cut -c3-)"; }
"#;

/// Runs `script` (after [`PRELUDE`]) with `sh` in a new private mount namespace.
fn in_namespace(tmp: &Path, script: &str, envs: &[(&str, &str)]) -> Output {
    let sysroot = tmp.join("sysroot");
    std::fs::create_dir_all(&sysroot).expect("mkdir sysroot");
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{PRELUDE}\n{script}"))
        .env("C", own_binary(tmp))
        .env("S", &sysroot)
        .env("SRC", tmp.join("src"))
        .env("SRC2", tmp.join("src2"))
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare")
}

/// The image's source tree: what a bootable image needs (`/etc`, `/var`, `/sysroot`, `/boot`)
/// and some files.
fn make_sources(tmp: &Path) {
    let src = tmp.join("src");
    for d in ["boot", "etc", "var", "sysroot", "usr/bin", "run"] {
        std::fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    std::fs::write(src.join("etc/os-release"), "ID=cfs-test\n").expect("write");
    std::fs::write(src.join("usr/bin/hello"), "hello from the image\n").expect("write");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
    std::fs::write(src.join("usr/big"), big).expect("write");
    let src2 = tmp.join("src2");
    for d in ["boot", "etc", "var", "sysroot", "usr"] {
        std::fs::create_dir_all(src2.join(d)).expect("mkdir");
    }
    std::fs::write(src2.join("etc/os-release"), "ID=someone-else\n").expect("write");
}

/// `KEY=value` lines of a script's stdout.
fn value<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in:\n{stdout}"))
}

#[test]
fn mounts_the_image_as_the_root() {
    if !root_or_skip("setup-root") || !common::require_tool("unshare") {
        return;
    }
    for attached_lower in ["0", "1"] {
        let tmp = tempfile::tempdir().expect("tmp");
        make_sources(tmp.path());
        let script = r#"
"$C" setup-root --sysroot "$S" --cmdline "root=/dev/vda rw composefs.digest=?v1-sha256-12:$ID quiet"
echo "ID=$ID"
# The top mount at $S: mountinfo's last line for it.
echo "TOP=$(awk -v s="$S" '$5 == s { l = $0 } END { print l }' /proc/self/mountinfo)"
echo "HELLO=$(cat "$S/usr/bin/hello")"
cmp "$S/usr/big" "$SRC/usr/big" && echo "BIG=same"
echo "OSREL=$(cat "$S/etc/os-release")"
if touch "$S/usr/new" 2>/dev/null; then echo "RO=no"; else echo "RO=yes"; fi
echo marker > "$S/etc/marker"
echo "UPPER=$(cat "$S/sysroot/state/deploy/$ID/etc/upper/marker")"
echo varmark > "$S/var/mark"
echo "VAR=$(cat "$S/sysroot/state/deploy/$ID/var/mark")"
echo "PHYS=$(ls "$S/sysroot" | tr '\n' ' ')"
"$C" --repo "$S/sysroot/composefs" mounts | sed 's/^/MOUNTS=/'
"$C" --repo "$S/sysroot/composefs" gc --dry-run | sed 's/^/GC=/'
"#;
        let out = in_namespace(
            tmp.path(),
            script,
            &[("CFS_SETUP_ROOT_ATTACHED_LOWER", attached_lower)],
        );
        let stdout = ok(&out);
        let id = value(&stdout, "ID");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("setup-root: mounted image"))
            .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
        assert!(line.contains(id) && line.contains("insecure"), "{line}");

        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
        let top = value(&stdout, "TOP");
        let fields: Vec<&str> = top.split(' ').collect();
        let dash = fields
            .iter()
            .position(|f| *f == "-")
            .expect("mountinfo dash");
        assert_eq!(fields[dash + 1], "overlay", "{top}");
        assert_eq!(fields[dash + 2], format!("composefs:{id}"), "{top}");
        assert!(
            fields[5].split(',').any(|o| o == "ro"),
            "not read-only: {top}"
        );
        assert!(
            !fields[dash + 3].contains("verity=require"),
            "insecure repository mounted with verity: {top}"
        );
        assert_eq!(value(&stdout, "HELLO"), "hello from the image");
        assert_eq!(value(&stdout, "BIG"), "same");
        assert_eq!(value(&stdout, "OSREL"), "ID=cfs-test");
        assert_eq!(value(&stdout, "RO"), "yes");
        assert_eq!(value(&stdout, "UPPER"), "marker");
        assert_eq!(value(&stdout, "VAR"), "varmark");
        let phys = value(&stdout, "PHYS");
        assert!(
            phys.contains("composefs") && phys.contains("state"),
            "{phys}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("MOUNTS={id}"))),
            "cfsctl mounts does not list the root:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("GC=kept image {id} (mounted")),
            "gc does not see the root as mounted:\n{stdout}"
        );
    }
}

#[test]
fn refusals_mount_nothing() {
    if !root_or_skip("setup-root") || !common::require_tool("unshare") {
        return;
    }
    let unknown = "ab".repeat(32);
    // (what, shell commands before setup-root, the command line, the expected message)
    let cases: &[(&str, &str, String, &str)] = &[
        (
            "no argument",
            "",
            "root=/dev/vda rw quiet".into(),
            "no composefs argument",
        ),
        (
            "malformed argument",
            "",
            "rw composefs.digest=?v1-sha256-12:not-hex".into(),
            "invalid composefs.digest",
        ),
        (
            "unknown digest",
            "",
            format!("rw composefs.digest=?v1-sha256-12:{unknown}"),
            "is not in the repository",
        ),
        (
            "verity demanded of an insecure repository",
            "",
            "rw composefs.digest=v1-sha256-12:$ID".into(),
            "is insecure",
        ),
        (
            "shorthand demanding verity of an insecure repository",
            "",
            "rw composefs=$ID".into(),
            "is insecure",
        ),
        (
            "replaced image file",
            r#"rm -f "$(object "$ID")"; cp "$(object "$OTHER")" "$(object "$ID")""#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "replaced or corrupt",
        ),
        (
            "image link out of the repository",
            r#"rm "$S/composefs/images/$ID"; ln -s "../../$(basename "$(object "$OTHER")")" "$S/composefs/images/$ID""#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "not to its object",
        ),
        (
            "image without /var",
            r#"mkdir -p "$S/../src3/boot" "$S/../src3/etc" "$S/../src3/sysroot" "$S/../src3/usr"
ID=$("$C" --repo "$S/composefs" create-image --bootable "$S/../src3")"#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "has no directory /var",
        ),
        (
            // overlayfs refuses a work dir on another mount than the upper dir: the /etc
            // overlay fails after the image is attached (kernels before 6.15, or forced),
            // which must be undone.
            "the /etc overlay failing after the root is attached",
            r#"D="$S/state/deploy/$ID"; mkdir -p "$D/etc/upper" "$D/etc/work" "$D/var"
mount -t tmpfs elsewhere "$D/etc/work""#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "mounting the /etc overlay",
        ),
        (
            "a symlink in the state directory's path",
            r#"mkdir -p "$S/state" "$S/../elsewhere"; ln -s "$S/../elsewhere" "$S/state/deploy""#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "symlinks not followed",
        ),
        (
            "missing repository",
            r#"rm -rf "$S/composefs""#,
            "rw composefs.digest=?v1-sha256-12:$ID".into(),
            "cannot open the repository",
        ),
    ];
    for ((what, mutate, cmdline, expected), attached_lower) in
        cases.iter().flat_map(|case| [(case, "0"), (case, "1")])
    {
        let tmp = tempfile::tempdir().expect("tmp");
        make_sources(tmp.path());
        let script = format!(
            r#"
{mutate}
cat /proc/self/mountinfo > "$S/../before"
set +e
"$C" setup-root --sysroot "$S" --cmdline "{cmdline}" 2> "$S/../stderr"
echo "RC=$?"
set -e
cat /proc/self/mountinfo > "$S/../after"
if cmp -s "$S/../before" "$S/../after"; then echo "TABLE=unchanged"; else echo "TABLE=changed"; diff "$S/../before" "$S/../after" || true; fi
if [ -e "$S/state" ]; then echo "STATE=created"; else echo "STATE=none"; fi
echo "ERR=$(cat "$S/../stderr")"
"#
        );
        let stdout = ok(&in_namespace(
            tmp.path(),
            &script,
            &[("CFS_SETUP_ROOT_ATTACHED_LOWER", attached_lower)],
        ));
        assert_ne!(value(&stdout, "RC"), "0", "{what}: accepted\n{stdout}");
        let err = value(&stdout, "ERR");
        assert!(
            err.starts_with("cfsctl: error: setup-root") && err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ERR=")).count(),
            1,
            "{what}"
        );
        assert_eq!(value(&stdout, "TABLE"), "unchanged", "{what}:\n{stdout}");
        if !mutate.contains("state/") {
            assert_eq!(value(&stdout, "STATE"), "none", "{what}:\n{stdout}");
        }
    }
}

#[test]
fn composefs_rs_mounts_a_cfs_repository() {
    if !root_or_skip("composefs-rs mount") || !common::require_tool("unshare") {
        return;
    }
    let Some(peer) = peers::composefs_rs() else {
        return;
    };
    // Under the target directory, not on a tmpfs (nor /tmp, a tmpfs on some systems):
    // composefs-rs mounts EROFS from the file only (no loop device), which tmpfs cannot back.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    make_sources(tmp.path());
    let script = r#"
R="$S/../repo"
"$C" --repo "$R" init --insecure >/dev/null
ID=$("$C" --repo "$R" create-image "$SRC")
mkdir -p "$S/../mnt"
"$P" --repo "$R" mount "$ID" "$S/../mnt"
echo "SOURCE=$(awk -v m="$(realpath "$S/../mnt")" '$5 == m { for (i = 7; $i != "-"; i++); print $(i + 2) }' /proc/self/mountinfo)"
echo "HELLO=$(cat "$S/../mnt/usr/bin/hello")"
cmp "$S/../mnt/usr/big" "$SRC/usr/big" && echo "BIG=same"
echo "ID=$ID"
"$C" --repo "$R" mounts | sed 's/^/MOUNTS=/'
"#;
    let out = in_namespace(tmp.path(), script, &[("P", peer.to_str().expect("utf-8"))]);
    let stdout = ok(&out);
    let id = value(&stdout, "ID");
    assert_eq!(value(&stdout, "SOURCE"), format!("composefs:{id}"));
    assert_eq!(value(&stdout, "HELLO"), "hello from the image");
    assert_eq!(value(&stdout, "BIG"), "same");
    // The same source name: cfs's gc sees composefs-rs's mount of the image.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("MOUNTS={id}"))),
        "{stdout}"
    );
}

/// The shipped unit and dracut module agree with each other and with the command line: the
/// unit's `ExecStart` is a `cfsctl setup-root` this cfsctl accepts, at the path the dracut
/// module installs cfsctl to, and the module installs and enables that unit.
#[test]
fn contrib_unit_and_dracut_module_match_the_command() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib");
    let unit_name = "cfs-setup-root.service";
    let unit = std::fs::read_to_string(contrib.join("systemd").join(unit_name)).expect("unit");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/cfsctl"), "{exec}");
    let args: Vec<&str> = words.collect();
    assert_eq!(args.first(), Some(&"setup-root"), "{exec}");
    for line in [
        "Before=initrd-root-fs.target",
        "After=sysroot.mount",
        "WantedBy=initrd-root-fs.target",
        "DefaultDependencies=no",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // The arguments parse (`--help` stops before anything runs).
    let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .args(&args)
        .arg("--help")
        .output()
        .expect("run cfsctl");
    let help = ok(&out);
    assert!(
        help.contains("--sysroot") && help.contains("--cmdline"),
        "{help}"
    );

    let module = contrib.join("dracut/90cfs/module-setup.sh");
    let script = std::fs::read_to_string(&module).expect("module-setup.sh");
    assert!(script.contains("/usr/bin/cfsctl"), "{script}");
    assert!(script.contains(&format!("service={unit_name}")), "{script}");
    assert!(
        script.contains("add-wants initrd-root-fs.target"),
        "{script}"
    );
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&module)
        .output()
        .expect("bash -n");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
}
