//! `cargo xtask vm-test`: runs the fs-verity tests that the host kernel cannot run (it has no
//! fs-verity) in a QEMU guest with Debian's 6.12 cloud kernel (DESIGN.md §7, docs/vm-test.md).
//!
//! 1. The kernel: `apt-get download linux-image-6.12.*-cloud-amd64` (the newest apt offers, or
//!    `--kernel-package`), `dpkg-deb -x`; the uncompressed ELF `vmlinux` is cut out of the
//!    bzImage (the zstd payload the setup header points to, magic `28 b5 2f fd`), so QEMU boots
//!    it through its PVH entry point and the slow in-guest decompressor is skipped. Modules
//!    (virtio_blk, erofs + libcrc32c, overlay, loop) are resolved through their `depends=`
//!    modinfo and decompressed on the host. Cached under `target/vm/`.
//! 2. An initramfs (newc cpio written here): busybox-static, the `cfsctl` binary built for the
//!    host with its shared libraries (from `ldd`), `fsverity` (if installed) and, for the OCI
//!    part, `skopeo` with its libraries, the modules, `/init` and `/test.sh` (`vm_guest.rs`).
//! 3. Disks: an ext4 made with `mkfs.ext4 -O verity` (the repository), and an ext4 holding a
//!    small OCI image layout made here (the `oci:` pull).
//! 4. `qemu-system-x86_64 -accel tcg -smp 1 -cpu max -m 1G -nographic` with
//!    `console=ttyS0 mitigations=off`; the serial console is parsed for `CFSVM PASS/FAIL`
//!    lines; any failure, a missing `CFSVM DONE` or a timeout fails the command.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{command_output, find_program, project_root, run_command, vm_guest};

mod boot_fixture;
mod boot_guest;
mod boot_test;
mod cpio;

pub(crate) use cpio::Cpio;

/// Command line of `cargo xtask vm-test`.
#[derive(clap::Args)]
pub struct Args {
    /// Debian kernel package [default: the newest linux-image-6.12.*-cloud-amd64 apt offers].
    #[arg(long)]
    kernel_package: Option<String>,
    /// Build cfsctl with the release profile (default: the dev profile).
    #[arg(long)]
    release: bool,
    /// Give up on the guest after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the guest's serial console as it runs (it is always saved to
    /// target/vm/console.log).
    #[arg(long, short)]
    verbose: bool,
    /// Skip the OCI pull part (no second disk, no skopeo in the guest).
    #[arg(long)]
    no_oci: bool,
    /// Instead of the verity checks, boot from cfs: install a bootable Debian image with
    /// `prepare-boot` in one guest, boot its entry, and check the verified root
    /// (docs/vm-test.md, "Booting from cfs").
    #[arg(long)]
    boot: bool,
}

/// Modules the guest loads (dependencies are added first).
const MODULES: &[&str] = &["virtio_blk", "loop", "erofs", "overlay"];

/// Host programs the recipe needs, and the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("xz", "xz-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("ldd", "libc-bin"),
    ("tar", "tar"),
];

/// Runs the VM test.
pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    for (tool, package) in TOOLS {
        ensure!(
            find_program(tool).is_some(),
            "{tool} not found: install it with `apt-get install {package}`"
        );
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("busybox not found: `apt-get install busybox-static`")?;
    let ldd = Command::new("ldd")
        .arg(&busybox)
        .output()
        .context("running ldd")?;
    ensure!(
        !ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic"),
        "{} is dynamically linked: `apt-get install busybox-static`",
        busybox.display()
    );

    let cache = project_root().join("target/vm");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let kernel = prepare_kernel(&cache, args.kernel_package.as_deref())?;
    let cfsctl = build_cfsctl(args.release)?;
    eprintln!("vm-test: cfsctl {}", cfsctl.display());
    if args.boot {
        return boot_test::run(&args, &kernel, &cfsctl, &busybox, &cache, started);
    }

    let work = cache.join("run");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;

    // The initramfs.
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "usr", "usr/bin", "proc", "sys", "dev", "tmp", "root", "modules", "etc",
    ] {
        cpio.dir(dir);
    }
    cpio.file("init", vm_guest::INIT.as_bytes(), 0o755);
    cpio.file("test.sh", vm_guest::TEST.as_bytes(), 0o644);
    cpio.file("bin/busybox", &read(&busybox)?, 0o755);
    add_program(&mut cpio, &cfsctl, "usr/bin/cfsctl")?;
    if let Some(fsverity) = find_program("fsverity") {
        add_program(&mut cpio, &fsverity, "usr/bin/fsverity")?;
    } else {
        eprintln!("vm-test: fsverity not installed: the guest will not cross-check digests");
    }
    let oci = !args.no_oci && find_program("skopeo").is_some();
    if oci {
        let skopeo = find_program("skopeo").context("skopeo")?;
        add_program(&mut cpio, &skopeo, "usr/bin/skopeo")?;
        cpio.dir("etc/containers");
        cpio.file(
            "etc/containers/policy.json",
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
            0o644,
        );
    } else if !args.no_oci {
        eprintln!("vm-test: skopeo not installed: skipping the OCI pull in the guest");
    }
    let mut order = String::new();
    for (name, bytes) in &kernel.modules {
        cpio.file(&format!("modules/{name}.ko"), bytes, 0o644);
        order.push_str(&format!("{name}.ko\n"));
    }
    cpio.file("modules/order", order.as_bytes(), 0o644);
    let initramfs = work.join("initramfs.cpio");
    fs::write(&initramfs, cpio.finish())?;

    // Disks.
    let disk = work.join("repo.ext4");
    make_ext4(&disk, 512, None)?;
    let oci_disk = work.join("oci.ext4");
    if oci {
        let layout = work.join("oci-root");
        make_oci_layout(&layout)?;
        make_ext4(&oci_disk, 64, Some(&layout))?;
    }

    // Boot.
    let mut drives = vec![(disk.as_path(), false)];
    if oci {
        drives.push((oci_disk.as_path(), true));
    }
    let mut qemu = qemu_command(
        &kernel.vmlinux,
        &initramfs,
        "console=ttyS0 mitigations=off panic=-1",
        &drives,
    );
    let prepared = started.elapsed();
    eprintln!(
        "vm-test: prepared in {:.1}s; booting {}",
        prepared.as_secs_f64(),
        kernel.vmlinux.display()
    );
    let outcome = boot(&mut qemu, Duration::from_secs(args.timeout), args.verbose)?;
    let log = cache.join("console.log");
    fs::write(&log, &outcome.console)?;

    let mut failed = Vec::new();
    let mut passed = 0;
    for line in outcome.console.lines() {
        if let Some(rest) = line.trim().strip_prefix("CFSVM PASS ") {
            passed += 1;
            eprintln!("  ok    {rest}");
        } else if let Some(rest) = line.trim().strip_prefix("CFSVM FAIL ") {
            eprintln!("  FAIL  {rest}");
            failed.push(rest.to_owned());
        }
    }
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
    eprintln!(
        "vm-test: init started {} after launch (guest uptime {}s), tests done after {}, qemu exited after {}; total {:.1}s",
        secs(outcome.booted),
        outcome.guest_boot_uptime.as_deref().unwrap_or("?"),
        secs(outcome.done),
        secs(Some(outcome.exited)),
        started.elapsed().as_secs_f64()
    );
    eprintln!("vm-test: console log in {}", log.display());
    if outcome.timed_out {
        bail!("the guest did not finish within {}s", args.timeout);
    }
    ensure!(
        outcome.done.is_some(),
        "the guest stopped before finishing its tests (see {})",
        log.display()
    );
    ensure!(passed > 0, "the guest reported no results");
    ensure!(
        failed.is_empty(),
        "{} of {} checks failed in the guest",
        failed.len(),
        failed.len() + passed
    );
    eprintln!("vm-test: {passed} passed, 0 failed");
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The guest kernel: the ELF vmlinux and the modules to load, in order.
pub(crate) struct Kernel {
    /// The uncompressed ELF kernel (booted through PVH).
    pub(crate) vmlinux: PathBuf,
    /// The wanted modules and their dependencies, decompressed, in load order.
    pub(crate) modules: Vec<(String, Vec<u8>)>,
    /// The unpacked package (`boot/vmlinuz-<kver>`, `lib/modules/<kver>/`).
    pub(crate) root: PathBuf,
}

/// The newest `linux-image-6.12.N+debX-cloud-amd64` apt knows (signed or unsigned).
fn newest_kernel_package() -> Result<String> {
    let out = command_output(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-image-6\.12\.[0-9]+.*-cloud-amd64(-unsigned)?$",
    ]))?;
    let text = String::from_utf8_lossy(&out);
    let mut best: Option<(u32, String)> = None;
    for line in text.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("linux-image-6.12.") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(n) = digits.parse::<u32>() else {
            continue;
        };
        // Prefer the signed package of a version (either works: the signature is only appended).
        let better = match &best {
            None => true,
            Some((m, b)) => n > *m || (n == *m && b.ends_with("-unsigned")),
        };
        if better {
            best = Some((n, name.to_owned()));
        }
    }
    best.map(|(_, name)| name).context(
        "apt offers no linux-image-6.12.*-cloud-amd64 package: run `apt-get update` \
         (bookworm-backports or trixie must be in the sources)",
    )
}

pub(crate) fn prepare_kernel(cache: &Path, package: Option<&str>) -> Result<Kernel> {
    let package = match package {
        Some(p) => p.to_owned(),
        None => {
            // Reuse whatever kernel is cached, to work offline and stay reproducible.
            let cached = fs::read_to_string(cache.join("kernel-package")).ok();
            match cached {
                Some(p) if cache.join(p.trim()).join("vmlinux").is_file() => p.trim().to_owned(),
                _ => newest_kernel_package()?,
            }
        }
    };
    let dir = cache.join(&package);
    let vmlinux = dir.join("vmlinux");
    let root = dir.join("root");
    if !vmlinux.is_file() {
        eprintln!("vm-test: downloading {package}");
        let dl = dir.join("download");
        if dl.exists() {
            fs::remove_dir_all(&dl)?;
        }
        fs::create_dir_all(&dl)?;
        // apt drops privileges to _apt for downloads: let it write here.
        let _ = Command::new("chmod").arg("777").arg(&dl).status();
        run_command(
            Command::new("apt-get")
                .args(["download", "-q"])
                .arg(&package)
                .current_dir(&dl),
        )?;
        let deb = fs::read_dir(&dl)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download produced no .deb")?;
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        run_command(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        fs::remove_dir_all(&dl)?;
        let vmlinuz = fs::read_dir(root.join("boot"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .context("no boot/vmlinuz-* in the kernel package")?;
        let elf = extract_vmlinux(&read(&vmlinuz)?)
            .with_context(|| format!("extracting vmlinux from {}", vmlinuz.display()))?;
        let tmp = dir.join("vmlinux.tmp");
        fs::write(&tmp, elf)?;
        fs::rename(&tmp, &vmlinux)?;
    }
    fs::write(cache.join("kernel-package"), &package)?;
    let modules = resolve_modules(&root)?;
    Ok(Kernel {
        vmlinux,
        modules,
        root,
    })
}

/// The uncompressed ELF kernel inside an x86 bzImage whose payload is zstd-compressed.
pub(crate) fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let le32 = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bz.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    // The setup header says where the payload is: setup_sects (0x1f1), payload_offset (0x248)
    // relative to the protected-mode code, which starts after (setup_sects + 1) sectors.
    let from_header = (|| {
        let setup_sects = match *bz.get(0x1f1)? {
            0 => 4,
            n => usize::from(n),
        };
        let start = (setup_sects + 1) * 512 + le32(0x248)?;
        (bz.get(start..start + 4)? == ZSTD_MAGIC).then_some(start)
    })();
    let start = match from_header {
        Some(s) => s,
        None => bz
            .windows(4)
            .position(|w| w == ZSTD_MAGIC)
            .context("no zstd payload in the kernel image")?,
    };
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(&bz[start..])?
        .single_frame()
        .read_to_end(&mut out)
        .context("decompressing the kernel")?;
    ensure!(
        out.starts_with(b"\x7fELF"),
        "the payload is not an ELF kernel"
    );
    Ok(out)
}

/// Finds each wanted module (and what it `depends=` on, first) under `lib/modules/*/kernel`,
/// decompressed. Built-in modules (in `modules.builtin`) are skipped.
fn resolve_modules(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let base = fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .context("no lib/modules in the kernel package")?;
    let mut files = std::collections::HashMap::new();
    let mut stack = vec![base.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str())
                && let Some(stem) = n.strip_suffix(".ko.xz").or_else(|| n.strip_suffix(".ko"))
            {
                files.insert(stem.replace('-', "_"), p.clone());
            }
        }
    }
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    fn add(
        name: &str,
        files: &std::collections::HashMap<String, PathBuf>,
        out: &mut Vec<(String, Vec<u8>)>,
        optional: bool,
    ) -> Result<()> {
        let name = name.replace('-', "_");
        if out.iter().any(|(n, _)| *n == name) {
            return Ok(());
        }
        let Some(path) = files.get(&name) else {
            // Built in (or a soft dependency that is not a module): nothing to load.
            ensure!(optional, "module {name} not found in the kernel package");
            return Ok(());
        };
        let bytes = if path.extension().is_some_and(|e| e == "xz") {
            command_output(Command::new("xz").arg("-dc").arg(path))?
        } else {
            fs::read(path)?
        };
        let info = modinfo(&bytes);
        for (key, value) in &info {
            if key == "depends" {
                for dep in value.split(',').filter(|d| !d.is_empty()) {
                    add(dep, files, out, false)?;
                }
            } else if key == "softdep" {
                for dep in value
                    .split_whitespace()
                    .skip_while(|w| *w != "pre:")
                    .skip(1)
                    .take_while(|w| !w.ends_with(':'))
                {
                    add(dep, files, out, true)?;
                }
            }
        }
        out.push((name, bytes));
        Ok(())
    }
    let builtin = fs::read_to_string(base.join("modules.builtin")).unwrap_or_default();
    for m in MODULES {
        let is_builtin = builtin
            .lines()
            .any(|l| l.rsplit('/').next() == Some(&format!("{m}.ko")));
        if !is_builtin {
            add(m, &files, &mut out, false)?;
        }
    }
    Ok(out)
}

/// The `key=value` strings of a module's `.modinfo` (found by scanning for the keys we use).
fn modinfo(ko: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in ko.split(|&b| b == 0) {
        let s = String::from_utf8_lossy(s);
        for key in ["depends", "softdep"] {
            if let Some(v) = s.strip_prefix(&format!("{key}=")) {
                out.push((key.to_owned(), v.to_owned()));
            }
        }
    }
    out
}

/// Builds cfsctl and returns the path of the binary.
pub(crate) fn build_cfsctl(release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "cfsctl",
        "--bin",
        "cfsctl",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(project_root());
    if release {
        cmd.arg("--release");
    }
    let out = command_output(&mut cmd)?;
    for line in String::from_utf8_lossy(&out).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && v["reason"] == "compiler-artifact"
            && v["target"]["name"] == "cfsctl"
            && let Some(exe) = v["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build did not report the cfsctl executable")
}

/// Adds a dynamically linked program and the shared libraries `ldd` lists, at their paths.
pub(crate) fn add_program(cpio: &mut Cpio, program: &Path, at: &str) -> Result<()> {
    cpio.file(at, &read(program)?, 0o755);
    let out = command_output(Command::new("ldd").arg(program)).unwrap_or_default();
    for line in String::from_utf8_lossy(&out).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if cpio.has(rel) {
            continue;
        }
        let mut parent = String::new();
        for comp in Path::new(rel)
            .parent()
            .map(|p| p.iter().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&comp.to_string_lossy());
            cpio.dir(&parent);
        }
        // ldd names the path the loader uses; copy what it resolves to.
        cpio.file(rel, &read(Path::new(path))?, 0o755);
    }
    Ok(())
}

/// Creates a raw ext4 image of `mib` MiB with the verity feature, optionally filled from `dir`.
pub(crate) fn make_ext4(path: &Path, mib: u64, content: Option<&Path>) -> Result<()> {
    let f = File::create(path)?;
    f.set_len(mib << 20)?;
    drop(f);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-O", "verity", "-E", "root_owner=0:0"]);
    if let Some(dir) = content {
        cmd.arg("-d").arg(dir);
    }
    run_command(cmd.arg(path))
}

/// Writes a small OCI image layout (`layout/`, tag `test`, two tar layers made by GNU tar)
/// into `root`, with the layers' diff_ids in `root/diff_ids` and the files' sha256 sums in
/// `root/expect.sha256` (`sha256sum -c` format) for the guest to check.
fn make_oci_layout(root: &Path) -> Result<()> {
    let layout = root.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> Result<String> {
        let hex = hex::encode(Sha256::digest(data));
        fs::write(blobs.join(&hex), data)?;
        Ok(hex)
    };
    let src = root.join("layer-src");
    let mut layers = Vec::new();
    // `sha256sum -c` lines for every file, relative to the image's root.
    let mut expect = String::new();
    for (i, files) in [
        vec![
            ("etc/hostname", b"guest\n".to_vec()),
            (
                "usr/share/big",
                (0..400_000u32).map(|i| (i % 251) as u8).collect(),
            ),
        ],
        vec![
            ("usr/share/other", vec![b'o'; 70_000]),
            ("small", b"s".to_vec()),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let dir = src.join(i.to_string());
        for (name, data) in files {
            expect.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(&data))));
            let p = dir.join(name);
            fs::create_dir_all(p.parent().context("parent")?)?;
            fs::write(p, data)?;
        }
        let tar = reproducible_tar(&dir)?;
        layers.push(put(&tar)?);
        fs::remove_dir_all(&dir)?;
    }
    fs::remove_dir_all(&src)?;
    fs::write(root.join("expect.sha256"), expect)?;
    let sized: Vec<(String, u64)> = layers
        .iter()
        .map(|h| Ok((h.clone(), fs::metadata(blobs.join(h))?.len())))
        .collect::<Result<_>>()?;
    write_layout(&layout, &sized, "test", json!({}), None)?;
    let diff_ids: String = layers.iter().map(|h| format!("sha256:{h}\n")).collect();
    fs::write(root.join("diff_ids"), diff_ids)?;
    Ok(())
}

/// Writes a JSON blob into `blobs`; its sha256 hex and size.
fn put_json(blobs: &Path, value: &serde_json::Value) -> Result<(String, usize)> {
    let bytes = serde_json::to_vec(value)?;
    let hex = hex::encode(Sha256::digest(&bytes));
    fs::write(blobs.join(&hex), &bytes)?;
    Ok((hex, bytes.len()))
}

/// The rest of an OCI image layout whose uncompressed tar `layers` (sha256 hex, size) are in
/// `layout/blobs/sha256`: an amd64 config (`config` as its `config` object, `created` if
/// given), the manifest, `index.json` naming it `tag`, and `oci-layout`.
pub(crate) fn write_layout(
    layout: &Path,
    layers: &[(String, u64)],
    tag: &str,
    config: serde_json::Value,
    created: Option<&str>,
) -> Result<()> {
    let blobs = layout.join("blobs/sha256");
    let diff_ids: Vec<String> = layers.iter().map(|(h, _)| format!("sha256:{h}")).collect();
    let mut image_config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(c) = created {
        image_config["created"] = c.into();
    }
    let (config, config_size) = put_json(&blobs, &image_config)?;
    let (manifest, manifest_size) = put_json(
        &blobs,
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config}"),
                "size": config_size,
            },
            "layers": layers.iter().map(|(h, size)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{h}"),
                "size": size,
            })).collect::<Vec<_>>(),
        }),
    )?;
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest}"),
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }))?,
    )?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(())
}

/// QEMU as every guest of the VM tests runs: TCG, one vCPU, 1 GiB, the serial console on
/// stdout, `kernel` (an ELF vmlinux, booted through PVH) with `initrd` and `append`; `drives`
/// are virtio disks in order (`vda`, `vdb`), read-only where marked.
pub(crate) fn qemu_command(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    drives: &[(&Path, bool)],
) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-smp", "1", "-cpu", "max", "-m", "1G"])
        .args([
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append);
    for (disk, readonly) in drives {
        let mut spec = format!("file={},format=raw,if=virtio,cache=unsafe", disk.display());
        if *readonly {
            spec.push_str(",readonly=on");
        }
        qemu.arg("-drive").arg(spec);
    }
    qemu
}

/// A GNU tar of `dir`'s contents that depends only on them: sorted, owned by 0:0, one mtime.
pub(crate) fn reproducible_tar(dir: &Path) -> Result<Vec<u8>> {
    command_output(Command::new("tar").arg("-C").arg(dir).args([
        "--sort=name",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--mtime=@1700000000",
        "-cf",
        "-",
        ".",
    ]))
}

/// What happened during a boot.
pub(crate) struct Outcome {
    pub(crate) console: String,
    pub(crate) booted: Option<Duration>,
    pub(crate) guest_boot_uptime: Option<String>,
    pub(crate) done: Option<Duration>,
    pub(crate) exited: Duration,
    pub(crate) timed_out: bool,
}

pub(crate) fn boot(qemu: &mut Command, timeout: Duration, verbose: bool) -> Result<Outcome> {
    let start = Instant::now();
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx
                        .send(String::from_utf8_lossy(&line).replace('\r', ""))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut out = Outcome {
        console: String::new(),
        booted: None,
        guest_boot_uptime: None,
        done: None,
        exited: Duration::ZERO,
        timed_out: false,
    };
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            out.timed_out = true;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                if verbose {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
                let t = line.trim();
                if let Some(up) = t.strip_prefix("CFSVM BOOTED ") {
                    out.booted = Some(start.elapsed());
                    out.guest_boot_uptime = Some(up.to_owned());
                } else if t.starts_with("CFSVM DONE") {
                    out.done = Some(start.elapsed());
                }
                out.console.push_str(&line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    out.exited = start.elapsed();
    Ok(out)
}
