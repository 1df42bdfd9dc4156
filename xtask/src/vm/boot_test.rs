//! `cargo xtask vm-test --boot`: boots a real kernel from cfs under QEMU (docs/vm-test.md,
//! "Booting from cfs"). The host plays the boot loader; guests report on the serial console.
//!
//! 1. Build the bootable fixture (`boot_fixture.rs`) onto a read-only ext4 disk; make the
//!    physical root disk (ext4 with the verity feature).
//! 2. Maintenance guest (the `vm-test` initramfs, step `install`): `cfsctl init` (enforced),
//!    `oci pull`, `oci prepare-boot --bootdir /boot`, `oci compute-karg`, fsck.
//! 3. The host reads the one BLS entry from the disk with `debugfs` (no mount), takes its
//!    `linux`, `initrd` and `options`, checks the karg against the guest's `compute-karg` and
//!    composefs-rs 0.9.4's bootable ID of the same layout, and boots them: the entry's bzImage
//!    through its ELF payload (as `vm-test` does), its initramfs, its options.
//! 4. Boots of the entry: `first` (the test program checks the verified root and writes
//!    markers in /etc and /var), `second` (the markers survived), an unknown digest (refused,
//!    no test program), an object swapped for another with valid verity (EIO reading that
//!    file), the EROFS image replaced (setup-root refuses, no test program).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

use super::{
    Args, Cpio, Kernel, Outcome, add_program, boot, boot_fixture, boot_guest, extract_vmlinux,
    make_ext4, qemu_command, read,
};
use crate::{command_output, find_program, peers, run_command, vm_guest};

/// Host programs this test needs beyond `vm-test`'s, with their Debian packages.
const TOOLS: &[(&str, &str)] = &[
    ("debugfs", "e2fsprogs"),
    ("strip", "binutils"),
    ("fsverity", "fsverity"),
    ("cp", "coreutils"),
];

/// The results of all guests.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            eprintln!("  ok    {name}");
        } else {
            let why = why();
            eprintln!("  FAIL  {name}: {why}");
            self.failed.push(format!("{name}: {why}"));
        }
    }

    /// Takes the guest's `CFSVM PASS/FAIL` lines.
    fn guest(&mut self, outcome: &Outcome) {
        for line in outcome.console.lines() {
            if let Some(rest) = line.trim().strip_prefix("CFSVM PASS ") {
                self.check(rest, true, String::new);
            } else if let Some(rest) = line.trim().strip_prefix("CFSVM FAIL ") {
                let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
                self.check(name, false, || why.to_owned());
            }
        }
    }
}

/// Where one guest boots from and what it may write.
struct Guest<'a> {
    name: &'a str,
    kernel: &'a Path,
    initrd: &'a Path,
    append: String,
    /// The disks, in order (`vda`, `vdb`), and whether each is read-only.
    drives: Vec<(&'a Path, bool)>,
}

/// Runs the boot test.
pub(crate) fn run(
    args: &Args,
    kernel: &Kernel,
    cfsctl: &Path,
    busybox: &Path,
    cache: &Path,
    started: Instant,
) -> Result<()> {
    for (tool, package) in TOOLS {
        ensure!(
            find_program(tool).is_some(),
            "{tool} not found: install it with `apt-get install {package}`"
        );
    }
    let fixtures = crate::fixtures::ensure_default()?;
    let base_tar = crate::fixtures::base_tar(&fixtures);
    let work = cache.join("boot");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;

    // The fixture, on its own read-only disk.
    let oci_root = work.join("oci-root");
    let fixture = boot_fixture::build(&oci_root, kernel, cfsctl, busybox, &base_tar)?;
    let oci_disk = work.join("oci.ext4");
    let oci_mib = dir_size(&oci_root)? / (1 << 20) * 5 / 4 + 64;
    make_ext4(&oci_disk, oci_mib, Some(&oci_root))?;
    let root_disk = work.join("root.ext4");
    make_ext4(&root_disk, 1536, None)?;

    // The maintenance guest's initramfs: vm-test's /init with the steps of boot_guest.rs.
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "usr", "usr/bin", "proc", "sys", "dev", "tmp", "root", "modules", "etc",
    ] {
        cpio.dir(dir);
    }
    cpio.file("init", vm_guest::INIT.as_bytes(), 0o755);
    cpio.file("test.sh", boot_guest::MAINTENANCE.as_bytes(), 0o644);
    cpio.file("bin/busybox", &read(busybox)?, 0o755);
    add_program(&mut cpio, cfsctl, "usr/bin/cfsctl")?;
    let fsverity = find_program("fsverity").context("fsverity")?;
    add_program(&mut cpio, &fsverity, "usr/bin/fsverity")?;
    let mut order = String::new();
    for (name, bytes) in &kernel.modules {
        cpio.file(&format!("modules/{name}.ko"), bytes, 0o644);
        order.push_str(&format!("{name}.ko\n"));
    }
    cpio.file("modules/order", order.as_bytes(), 0o644);
    let maintenance = work.join("maintenance.cpio");
    fs::write(&maintenance, cpio.finish())?;
    eprintln!(
        "vm-test --boot: prepared in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut report = Report::default();
    let disks = vec![(root_disk.as_path(), false), (oci_disk.as_path(), true)];
    let base_append = "console=ttyS0 mitigations=off panic=-1";

    // A guest of the vm-test initramfs running one step of boot_guest::MAINTENANCE.
    let maintenance_step = |name: &'static str, extra: &str| Guest {
        name,
        kernel: &kernel.vmlinux,
        initrd: &maintenance,
        append: format!("{base_append} cfstest.step={name}{extra}"),
        drives: disks.clone(),
    };

    // 2. Install.
    let out = run_guest(args, &work, maintenance_step("install", ""))?;
    report.guest(&out);
    let karg = out
        .console
        .lines()
        .find_map(|l| l.trim().strip_prefix("CFSBOOT KARG "))
        .map(str::to_owned)
        .context("the install guest printed no karg (see install.console.log)")?;
    ensure!(
        out.done.is_some(),
        "the install guest did not finish (see {})",
        work.join("install.console.log").display()
    );

    // 3. The host as boot loader.
    let entry = read_entry(&root_disk, &work)?;
    report.check("bls-entry-title", !entry.title.is_empty(), || {
        "no title".into()
    });
    report.check(
        "bls-entry-names-image",
        entry.options.split_whitespace().any(|a| a == karg),
        || format!("options {:?} lack {karg:?}", entry.options),
    );
    let hex = karg
        .rsplit(':')
        .next()
        .context("karg without a digest")?
        .to_owned();
    match peers::composefs_rs(peers::Install::Never) {
        Ok(peer) => {
            let id = peer_bootable_id(&peer, &fixture.layout, &work)?;
            report.check("karg-equals-composefs-rs-bootable-id", id == hex, || {
                format!("composefs-rs {id}, cfs {hex}")
            });
        }
        Err(e) => eprintln!("vm-test --boot: not comparing with composefs-rs: {e:#}"),
    }
    let vmlinux = work.join("entry-vmlinux");
    fs::write(&vmlinux, extract_vmlinux(&read(&entry.linux)?)?)?;
    let root_only = vec![(root_disk.as_path(), false)];
    let entry_boot = |name: &'static str, append: String| Guest {
        name,
        kernel: &vmlinux,
        initrd: &entry.initrd,
        append,
        drives: root_only.clone(),
    };

    // 4. Boots of the entry.
    let mut timings = Vec::new();
    for phase in ["first", "second"] {
        let out = run_guest(
            args,
            &work,
            entry_boot(phase, format!("{} cfstest.phase={phase}", entry.options)),
        )?;
        report.guest(&out);
        report.check(
            &format!("{phase}-boot-completed"),
            out.done.is_some(),
            || "the test program did not finish".into(),
        );
        timings.push((phase, out.booted, out.exited));
    }

    let unknown = hex::encode(Sha256::digest(b"no such image"));
    let out = run_guest(
        args,
        &work,
        entry_boot(
            "unknown-digest",
            format!(
                "{} cfstest.phase=refused",
                entry.options.replace(&hex, &unknown)
            ),
        ),
    )?;
    refused(&mut report, "unknown-digest", &out, &unknown);

    let out = run_guest(args, &work, maintenance_step("tamper-object", ""))?;
    report.guest(&out);
    let out = run_guest(
        args,
        &work,
        entry_boot(
            "tampered",
            format!("{} cfstest.phase=tampered", entry.options),
        ),
    )?;
    report.guest(&out);
    report.check("tampered-boot-completed", out.done.is_some(), || {
        "the test program did not finish".into()
    });

    let out = run_guest(
        args,
        &work,
        maintenance_step("tamper-image", &format!(" cfstest.id={hex}")),
    )?;
    report.guest(&out);
    let out = run_guest(
        args,
        &work,
        entry_boot(
            "replaced-image",
            format!("{} cfstest.phase=refused", entry.options),
        ),
    )?;
    refused(&mut report, "replaced-image", &out, &hex);

    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
    for (phase, booted, exited) in timings {
        eprintln!(
            "vm-test --boot: {phase} boot: image's init after {}, qemu exited after {}",
            secs(booted),
            secs(Some(exited))
        );
    }
    eprintln!(
        "vm-test --boot: total {:.1}s; console logs in {}",
        started.elapsed().as_secs_f64(),
        work.display()
    );
    if !report.failed.is_empty() {
        bail!(
            "{} of {} boot checks failed",
            report.failed.len(),
            report.failed.len() + report.passed
        );
    }
    eprintln!("vm-test --boot: {} passed, 0 failed", report.passed);
    Ok(())
}

/// A boot that setup-root must refuse: its message on the console names `digest`, and the
/// image's program never runs.
fn refused(report: &mut Report, name: &str, out: &Outcome, digest: &str) {
    let said = out.console.contains("CFSBOOT SETUP-ROOT REFUSED");
    report.check(&format!("{name}-refused"), said, || {
        "setup-root did not refuse".into()
    });
    let named = out
        .console
        .lines()
        .any(|l| l.contains(digest) && !l.contains("Command line") && !l.contains("cmdline"));
    report.check(&format!("{name}-message-names-digest"), named, || {
        "no console line names the digest".into()
    });
    let ran = out.console.contains("CFSBOOT IMAGE-RUNNING");
    report.check(&format!("{name}-no-program-ran"), !ran, || {
        "the image's program ran".into()
    });
}

fn run_guest(args: &Args, work: &Path, guest: Guest<'_>) -> Result<Outcome> {
    eprintln!("vm-test --boot: guest {}: {}", guest.name, guest.append);
    let mut qemu = qemu_command(guest.kernel, guest.initrd, &guest.append, &guest.drives);
    let out = boot(&mut qemu, Duration::from_secs(args.timeout), args.verbose)?;
    let log = work.join(format!("{}.console.log", guest.name));
    fs::write(&log, &out.console)?;
    ensure!(
        !out.timed_out,
        "guest {} did not finish within {}s (see {})",
        guest.name,
        args.timeout,
        log.display()
    );
    Ok(out)
}

/// The boot entry prepare-boot wrote, with its kernel and initramfs copied out of the disk.
struct Entry {
    title: String,
    linux: PathBuf,
    initrd: PathBuf,
    options: String,
}

fn debugfs(disk: &Path, request: &str) -> Result<Vec<u8>> {
    command_output(Command::new("debugfs").arg("-R").arg(request).arg(disk))
}

/// Reads the single `boot/loader/entries/*.conf` from the (unmounted) root disk.
fn read_entry(disk: &Path, work: &Path) -> Result<Entry> {
    let listing =
        String::from_utf8_lossy(&debugfs(disk, "ls -p /boot/loader/entries")?).into_owned();
    // `ls -p` lines: /INODE/MODE/UID/GID/NAME/SIZE/
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| n.ends_with(".conf"))
        .collect();
    ensure!(
        names.len() == 1,
        "expected one boot entry in /boot/loader/entries, found {names:?}"
    );
    let text = String::from_utf8(debugfs(
        disk,
        &format!("cat /boot/loader/entries/{}", names[0]),
    )?)
    .context("the boot entry is not UTF-8")?;
    eprintln!("vm-test --boot: entry {}:\n{text}", names[0]);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(|v| v.trim().to_owned())
    };
    let dump = |key: &str, out: &str| -> Result<PathBuf> {
        let rel = field(key).with_context(|| format!("the entry has no {key} line"))?;
        ensure!(
            rel.starts_with('/') && !rel.contains(".."),
            "{key} {rel:?} is not an absolute path inside the boot directory"
        );
        let dest = work.join(out);
        run_command(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("dump /boot{rel} {}", dest.display()))
                .arg(disk),
        )?;
        ensure!(
            dest.is_file() && fs::metadata(&dest)?.len() > 0,
            "could not read /boot{rel} from the disk"
        );
        Ok(dest)
    };
    Ok(Entry {
        title: field("title").unwrap_or_default(),
        linux: dump("linux", "entry-vmlinuz")?,
        initrd: dump("initrd", "entry-initramfs.img")?,
        options: field("options").context("the entry has no options line")?,
    })
}

/// composefs-rs 0.9.4's `oci compute-id --bootable` of the fixture (pulled into a scratch
/// insecure repository).
fn peer_bootable_id(peer: &Path, layout: &Path, work: &Path) -> Result<String> {
    let repo = work.join("peer-repo");
    run_command(
        Command::new(peer)
            .args(["init", "--insecure", "--algorithm", "fsverity-sha256-12"])
            .arg(&repo),
    )?;
    let source = format!("oci:{}:{}", layout.display(), boot_fixture::TAG);
    run_command(
        Command::new(peer)
            .arg("--repo")
            .arg(&repo)
            .args(["oci", "pull", &source, "boot"]),
    )?;
    let out = command_output(Command::new(peer).arg("--repo").arg(&repo).args([
        "oci",
        "compute-id",
        "--bootable",
        "boot",
    ]))?;
    let id = String::from_utf8_lossy(&out).trim().to_owned();
    fs::remove_dir_all(&repo)?;
    Ok(id)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    Ok(total)
}
