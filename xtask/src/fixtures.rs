//! `cargo xtask fixtures`: build and cache real Debian OCI images for end-to-end tests and
//! benchmarks of `cfsctl oci pull` (DESIGN.md §7).
//!
//! Everything lands in one OCI image layout with several tags, `<out>/oci`, where `<out>` is
//! `--out`, else `$CFS_FIXTURES`, else `<workspace>/target/fixtures`. `docs/fixtures.md` describes
//! the images and their layers; `<out>/fixtures.json` lists every image, layer, digest and size
//! for tests to read.
//!
//! Layers are tars made by GNU tar from directories, with options that make them deterministic
//! (sorted names, numeric owners, mtimes clamped to [`SOURCE_DATE_EPOCH`], PAX extended headers
//! without atime/ctime or process IDs) and keep xattrs. The expensive inputs are cached under
//! `<out>/cache`: the debootstrap root filesystem as a tar (which is layer 1 itself) and the
//! downloaded `.deb`s. With those present, layers 2–5 are rebuilt byte for byte identically, so
//! `--force` reproduces the same digests.

pub(crate) mod big;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{command_output, display_command, find_program, project_root, run_command};

/// Bump whenever the recipe changes what any layer or image holds: cached fixtures built by a
/// different recipe are rebuilt (the debootstrap and .deb caches are kept).
const RECIPE_VERSION: u64 = 2;

/// Bump whenever the recipe changes how the debootstrap root filesystem is made or cleaned:
/// it names the cached base tar, so a new recipe debootstraps again.
const BASE_RECIPE_VERSION: u64 = 2;

/// Debian release the images are built from.
const SUITE: &str = "bookworm";

/// Fixed timestamp (2025-05-20T00:00:00Z): file mtimes newer than this are clamped to it, and it
/// is the `created` time of every image and history entry.
const SOURCE_DATE_EPOCH: u64 = 1_747_699_200;
/// [`SOURCE_DATE_EPOCH`] in RFC 3339.
pub(crate) const CREATED: &str = "2025-05-20T00:00:00Z";

/// Size of the single file in the `large` layer.
const LARGE_FILE_SIZE: u64 = 160 << 20;
/// Seed of the PRNG that fills the large file.
const LARGE_FILE_SEED: u64 = 0x00c0_ffee_cf5f_1723;

/// Packages (with the dependencies minbase lacks) unpacked into the `packages` layer: curl with
/// its TLS/HTTP libraries, and a minimal Python (thousands of small files).
const PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "libbrotli1",
    "libcurl4",
    "libexpat1",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "libldap-2.5-0",
    "libnghttp2-14",
    "libpsl5",
    "libpython3.11-minimal",
    "librtmp1",
    "libsasl2-2",
    "libsasl2-modules-db",
    "libssh2-1",
    "libssl3",
    "openssl",
    "publicsuffix",
    "python3.11-minimal",
];

/// Programs the build runs, and the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
];

pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Arguments of `cargo xtask fixtures`.
#[derive(clap::Args)]
pub struct Args {
    /// Rebuild layers and images even when the cached ones are complete (the debootstrap root
    /// filesystem and downloaded packages are reused; see --refetch).
    #[arg(long)]
    force: bool,
    /// Also redo debootstrap and re-download the packages (implies --force).
    #[arg(long)]
    refetch: bool,
    /// Output directory [default: <workspace>/target/fixtures].
    #[arg(long, env = "CFS_FIXTURES")]
    out: Option<PathBuf>,
    /// Debian mirror for debootstrap.
    #[arg(
        long,
        env = "CFS_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    mirror: String,
    /// Also build the big image of the pull benchmark (4 layers, 28.5k files, ~740 MB of tar;
    /// see xtask/src/fixtures/big.rs) into this directory, from the cached fixtures.
    #[arg(long, value_name = "DIR")]
    big: Option<PathBuf>,
}

/// How an image's layers are stored.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The layers the recipe builds, in no particular image order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum LayerId {
    /// debootstrap minbase root filesystem.
    Base,
    /// Unpacked .debs and the matching dpkg database changes.
    Packages,
    /// Whiteouts, opaque directories, hardlinks, symlinks, xattrs, odd names and modes.
    Changes,
    /// One 160 MiB incompressible file.
    Large,
    /// A few small files: the second layer of `debian-small`.
    Extra,
}

impl LayerId {
    const ALL: [LayerId; 5] = [
        LayerId::Base,
        LayerId::Packages,
        LayerId::Changes,
        LayerId::Large,
        LayerId::Extra,
    ];

    fn name(self) -> &'static str {
        match self {
            LayerId::Base => "base",
            LayerId::Packages => "packages",
            LayerId::Changes => "changes",
            LayerId::Large => "large",
            LayerId::Extra => "extra",
        }
    }

    /// The `created_by` of the layer's history entry.
    fn created_by(self) -> String {
        match self {
            LayerId::Base => format!("debootstrap --variant=minbase {SUITE} / <mirror>"),
            LayerId::Packages => {
                format!("dpkg-deb -x (apt-get download {})", PACKAGES.join(" "))
            }
            LayerId::Changes => {
                "cargo xtask fixtures: whiteouts, opaque dirs, links, xattrs, special files"
                    .to_string()
            }
            LayerId::Large => {
                format!("cargo xtask fixtures: {LARGE_FILE_SIZE}-byte pseudo-random file")
            }
            LayerId::Extra => "cargo xtask fixtures: /etc/fixture-release".to_string(),
        }
    }
}

/// An image of the fixture layout.
struct ImageSpec {
    tag: &'static str,
    compression: Compression,
    layers: &'static [LayerId],
}

const FULL: &[LayerId] = &[
    LayerId::Base,
    LayerId::Packages,
    LayerId::Changes,
    LayerId::Large,
];

/// The images written, each a tag of the one layout.
const IMAGES: &[ImageSpec] = &[
    ImageSpec {
        tag: "debian-gzip",
        compression: Compression::Gzip,
        layers: FULL,
    },
    ImageSpec {
        tag: "debian-zstd",
        compression: Compression::Zstd,
        layers: FULL,
    },
    ImageSpec {
        tag: "debian-plain",
        compression: Compression::None,
        layers: FULL,
    },
    ImageSpec {
        tag: "debian-small",
        compression: Compression::Gzip,
        layers: &[LayerId::Base, LayerId::Extra],
    },
];

/// Paths of the fixture directory.
struct Paths {
    out: PathBuf,
    cache: PathBuf,
    base_tar: PathBuf,
    debs: PathBuf,
    build: PathBuf,
    layout: PathBuf,
    summary: PathBuf,
}

impl Paths {
    fn new(out: PathBuf) -> Self {
        let cache = out.join("cache");
        Paths {
            base_tar: cache.join(format!(
                "debootstrap-{SUITE}-minbase-r{BASE_RECIPE_VERSION}.tar"
            )),
            debs: cache.join("debs"),
            build: out.join("build"),
            layout: out.join("oci"),
            summary: out.join("fixtures.json"),
            cache,
            out,
        }
    }
}

/// `cargo xtask fixtures` with its defaults, in this process: builds the fixtures in
/// `$CFS_FIXTURES` (else `<workspace>/target/fixtures`) unless they are cached; returns that
/// directory.
pub(crate) fn ensure_default() -> Result<PathBuf> {
    let out = std::env::var_os("CFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target/fixtures"));
    run(Args {
        force: false,
        refetch: false,
        out: Some(out.clone()),
        mirror: std::env::var("CFS_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into()),
        big: None,
    })?;
    Ok(out)
}

/// Entry point of `cargo xtask fixtures`.
pub fn run(mut args: Args) -> Result<()> {
    let start = Instant::now();
    let out = match args.out {
        Some(out) => out,
        None => project_root().join("target/fixtures"),
    };
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let out =
        fs::canonicalize(&out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let paths = Paths::new(out);
    if let Some(big) = args.big.take() {
        // The small fixtures first (their lock released), then the big image from their cache.
        run(Args {
            out: Some(paths.out.clone()),
            ..args
        })?;
        crate::fixtures::big::ensure(&paths.out, &big)?;
        return Ok(());
    }
    let _lock = lock(&paths.out)?;

    if !(args.force || args.refetch) {
        match cached_summary(&paths) {
            Ok(summary) => {
                print_summary(&paths, &summary);
                println!(
                    "fixtures up to date ({:.2} s; --force rebuilds)",
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(why) => println!("building fixtures in {}: {why:#}", paths.out.display()),
        }
    }

    ensure_tools()?;
    fs::create_dir_all(&paths.cache)
        .with_context(|| format!("cannot create {}", paths.cache.display()))?;
    if args.refetch || !paths.base_tar.exists() {
        debootstrap(&paths, &args.mirror)?;
    } else {
        println!("reusing {}", paths.base_tar.display());
    }
    if args.refetch || !paths.debs.join(".complete").exists() {
        download_debs(&paths)?;
    } else {
        println!("reusing {}", paths.debs.display());
    }

    remove_tree(&paths.build)?;
    fs::create_dir_all(&paths.build)
        .with_context(|| format!("cannot create {}", paths.build.display()))?;
    let layers = build_layers(&paths)?;
    let summary = write_layout(&paths, &layers)?;
    remove_tree(&paths.build)?;

    print_summary(&paths, &summary);
    println!("built fixtures in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Takes an exclusive lock on `<out>/.lock`, so that concurrent runs (say, parallel tests that
/// each ensure the fixtures) build once.
pub(crate) fn lock(out: &Path) -> Result<File> {
    use rustix::fs::{FlockOperation, flock};
    let path = out.join(".lock");
    let file = File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        println!(
            "waiting for another `cargo xtask fixtures` ({})",
            path.display()
        );
        flock(&file, FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
    }
    Ok(file)
}

/// Reads `fixtures.json` and checks that it was made by this recipe and that every blob it lists
/// is in the layout with the right size (sizes only: re-hashing would take seconds).
fn cached_summary(paths: &Paths) -> Result<Value> {
    let text = fs::read(&paths.summary)
        .with_context(|| format!("no usable {}", paths.summary.display()))?;
    let summary: Value = serde_json::from_slice(&text)
        .with_context(|| format!("cannot parse {}", paths.summary.display()))?;
    let recipe = summary["recipe"].as_u64();
    ensure!(
        recipe == Some(RECIPE_VERSION),
        "{} is from recipe {recipe:?}, this is recipe {RECIPE_VERSION}",
        paths.summary.display()
    );
    let index = paths.layout.join("index.json");
    ensure!(index.is_file(), "{} is missing", index.display());
    let blobs = summary["blobs"]
        .as_array()
        .context("fixtures.json has no blob list")?;
    for blob in blobs {
        let digest = blob["digest"].as_str().context("blob without digest")?;
        let size = blob["size"].as_u64().context("blob without size")?;
        let path = blob_path(&paths.layout, digest)?;
        let meta = fs::metadata(&path).with_context(|| format!("{} is missing", path.display()))?;
        ensure!(
            meta.len() == size,
            "{} has {} bytes, expected {size}",
            path.display(),
            meta.len()
        );
    }
    Ok(summary)
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("bad digest {digest:?}"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// Checks that we can build (root, Debian tools), installing missing tools with apt-get.
fn ensure_tools() -> Result<()> {
    let root = rustix::process::geteuid().is_root();
    ensure!(
        root,
        "building the fixtures needs root: debootstrap chroots, and the layers hold files owned \
         by other users and security.capability xattrs"
    );
    crate::ensure_tools(TOOLS)
}

/// Runs debootstrap and stores its root filesystem as the base layer tar.
fn debootstrap(paths: &Paths, mirror: &str) -> Result<()> {
    let rootfs = paths.cache.join("rootfs.tmp");
    remove_tree(&rootfs)?;
    println!("debootstrap --variant=minbase {SUITE} (takes a few minutes)");
    let t = Instant::now();
    let result = run_command(
        Command::new(find_program("debootstrap").context("debootstrap not found")?)
            .arg("--variant=minbase")
            .arg(SUITE)
            .arg(&rootfs)
            .arg(mirror),
    );
    if let Err(err) = result {
        remove_tree(&rootfs)?;
        return Err(err.context("debootstrap failed (network? mirror?)"));
    }
    println!("debootstrap took {:.0} s", t.elapsed().as_secs_f64());
    clean_rootfs(&rootfs)?;
    let tmp = paths.base_tar.with_extension("tar.tmp");
    tar_directory(&rootfs, &tmp)?;
    fs::rename(&tmp, &paths.base_tar)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    remove_tree(&rootfs)?;
    Ok(())
}

/// Cleans a fresh debootstrap as Debian's official container images are cleaned: without the
/// downloaded .debs and package lists debootstrap leaves (about 100 MB).
fn clean_rootfs(rootfs: &Path) -> Result<()> {
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "var/cache/apt",
    ] {
        let dir = rootfs.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && name != "lock" {
                fs::remove_file(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Downloads [`PACKAGES`] (the host's candidate versions) into the .deb cache.
fn download_debs(paths: &Paths) -> Result<()> {
    let tmp = paths.cache.join("debs.tmp");
    remove_tree(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    // apt runs the download as user _apt, which must be able to write there.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o777))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    let download = || {
        run_command(
            Command::new("apt-get")
                .args(["download", "-q"])
                .args(PACKAGES)
                .current_dir(&tmp),
        )
    };
    if download().is_err() {
        println!("apt-get download failed; updating package lists and retrying");
        run_command(Command::new("apt-get").arg("update").arg("-q"))?;
        download()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    File::create(tmp.join(".complete")).context("cannot mark the .deb cache complete")?;
    remove_tree(&paths.debs)?;
    fs::rename(&tmp, &paths.debs)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(())
}

/// One built layer: its uncompressed tar and that tar's digest.
struct Layer {
    id: LayerId,
    tar: PathBuf,
    diff_id: String,
    size: u64,
}

/// Builds every layer's uncompressed tar.
fn build_layers(paths: &Paths) -> Result<BTreeMap<LayerId, Layer>> {
    let mut layers = BTreeMap::new();
    for id in LayerId::ALL {
        let t = Instant::now();
        let fill: fn(&Paths, &Path) -> Result<()> = match id {
            LayerId::Base => |_, _| Ok(()),
            LayerId::Packages => fill_packages,
            LayerId::Changes => |_, dir| fill_changes(dir),
            LayerId::Large => |_, dir| fill_large(dir),
            LayerId::Extra => |_, dir| fill_extra(dir),
        };
        let tar = if id == LayerId::Base {
            paths.base_tar.clone()
        } else {
            let dir = paths.build.join(id.name());
            fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            fill(paths, &dir)?;
            let tar = paths.build.join(format!("{}.tar", id.name()));
            tar_directory(&dir, &tar)?;
            remove_tree(&dir)?;
            tar
        };
        let (diff_id, size) = sha256_file(&tar)?;
        println!(
            "layer {:<8} {:>10} bytes  diff_id {diff_id}  ({:.1} s)",
            id.name(),
            size,
            t.elapsed().as_secs_f64()
        );
        layers.insert(
            id,
            Layer {
                id,
                tar,
                diff_id,
                size,
            },
        );
    }
    Ok(layers)
}

/// Makes a deterministic tar of the contents of `dir` (names relative to `dir`, no `./` prefix
/// and no entry for `dir` itself, as container layers usually are).
pub(crate) fn tar_directory(dir: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        names.push(entry.file_name());
    }
    names.sort();
    ensure!(!names.is_empty(), "{} is empty", dir.display());
    run_command(
        Command::new("tar")
            .arg("--create")
            .arg("--file")
            .arg(out)
            .arg("--directory")
            .arg(dir)
            .args([
                "--format=pax",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "--sort=name",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--one-file-system",
                "--clamp-mtime",
            ])
            .arg(format!("--mtime=@{SOURCE_DATE_EPOCH}"))
            .arg("--")
            .args(&names),
    )
}

/// Layer 2: the packages unpacked with `dpkg-deb -x`, their files merged into /usr as dpkg
/// does on a merged-/usr system, and the dpkg database updated (status, .list, md5sums, scripts).
fn fill_packages(paths: &Paths, dir: &Path) -> Result<()> {
    let mut debs = Vec::new();
    for entry in fs::read_dir(&paths.debs)
        .with_context(|| format!("cannot list {}", paths.debs.display()))?
    {
        let path = entry.context("cannot list the .deb cache")?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            debs.push(path);
        }
    }
    debs.sort();
    ensure!(
        debs.len() == PACKAGES.len(),
        "{} holds {} .debs, expected {} (try --refetch)",
        paths.debs.display(),
        debs.len(),
        PACKAGES.len()
    );

    let base_status = command_output(
        Command::new("tar")
            .arg("--extract")
            .arg("--to-stdout")
            .arg("--file")
            .arg(&paths.base_tar)
            .arg("var/lib/dpkg/status"),
    )?;
    let base_status =
        String::from_utf8(base_status).context("the base's dpkg status is not UTF-8")?;
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    for para in base_status.split("\n\n").filter(|p| !p.trim().is_empty()) {
        status.insert(package_name(para)?, para.trim_end().to_string());
    }

    let info = dir.join("var/lib/dpkg/info");
    fs::create_dir_all(&info).with_context(|| format!("cannot create {}", info.display()))?;
    let control_dir = paths.build.join("control");
    for deb in &debs {
        run_command(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))?;

        let control =
            String::from_utf8(command_output(Command::new("dpkg-deb").arg("-f").arg(deb))?)
                .with_context(|| format!("control of {} is not UTF-8", deb.display()))?;
        let name = package_name(&control)?;
        let multi_arch_same = control.lines().any(|l| l.trim() == "Multi-Arch: same");
        let arch = control
            .lines()
            .find_map(|l| l.strip_prefix("Architecture: "))
            .context("no Architecture field")?
            .trim()
            .to_string();
        let db_name = if multi_arch_same {
            format!("{name}:{arch}")
        } else {
            name.clone()
        };
        // Status: the control fields with `Status` second, as dpkg writes it.
        let mut para = String::new();
        for (i, line) in control.trim_end().lines().enumerate() {
            para.push_str(line);
            para.push('\n');
            if i == 0 {
                para.push_str("Status: install ok installed\n");
            }
        }
        status.insert(name.clone(), para.trim_end().to_string());

        // .list: the paths the package ships, as dpkg records them.
        let list = package_file_list(deb)?;
        write_file(
            &info.join(format!("{db_name}.list")),
            list.as_bytes(),
            0o644,
        )?;

        // md5sums, conffiles, maintainer scripts.
        remove_tree(&control_dir)?;
        run_command(
            Command::new("dpkg-deb")
                .arg("-e")
                .arg(deb)
                .arg(&control_dir),
        )?;
        let mut members: Vec<PathBuf> = fs::read_dir(&control_dir)
            .with_context(|| format!("cannot list {}", control_dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .context("cannot list control members")?;
        members.sort();
        for member in members {
            let Some(file_name) = member.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file_name == "control" {
                continue;
            }
            let target = info.join(format!("{db_name}.{file_name}"));
            fs::copy(&member, &target)
                .with_context(|| format!("cannot copy {}", member.display()))?;
        }
    }
    remove_tree(&control_dir)?;

    let mut text = String::new();
    for para in status.values() {
        text.push_str(para);
        text.push_str("\n\n");
    }
    write_file(&dir.join("var/lib/dpkg/status"), text.as_bytes(), 0o644)?;

    // On merged /usr, /bin, /lib, ... are symlinks in the base: a layer directory there would
    // replace the symlink. Move such files below /usr, as dpkg's path resolution effectively does.
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let src = dir.join(top);
        if src.is_dir() && !src.is_symlink() {
            merge_move(&src, &dir.join("usr").join(top))?;
        }
    }
    Ok(())
}

/// The `Package` field of a control paragraph.
fn package_name(para: &str) -> Result<String> {
    para.lines()
        .find_map(|l| l.strip_prefix("Package: "))
        .map(|n| n.trim().to_string())
        .with_context(|| format!("control paragraph without Package: {para:.80}"))
}

/// The paths a .deb ships, one a line, in the format of dpkg's `info/*.list`.
fn package_file_list(deb: &Path) -> Result<String> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let shown = display_command(&dpkg);
    let mut child = dpkg
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let listing = command_output(Command::new("tar").arg("--list").stdin(stdout));
    wait_ok(child, &shown)?;
    let listing = String::from_utf8(listing?).context("file list is not UTF-8")?;
    let mut out = String::new();
    for name in listing.lines() {
        let name = name.trim_start_matches('.').trim_end_matches('/');
        out.push_str(if name.is_empty() { "/." } else { name });
        out.push('\n');
    }
    Ok(out)
}

fn wait_ok(mut child: Child, shown: &str) -> Result<()> {
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{shown}`"))?;
    ensure!(status.success(), "`{shown}` failed: {status}");
    Ok(())
}

/// Moves the contents of directory `src` into `dst` (created if missing), merging directories,
/// then removes `src`.
fn merge_move(src: &Path, dst: &Path) -> Result<()> {
    if !dst.exists() {
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        return fs::rename(src, dst)
            .with_context(|| format!("cannot move {} to {}", src.display(), dst.display()));
    }
    for entry in fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && to.is_dir() && !to.is_symlink() {
            merge_move(&from, &to)?;
        } else {
            fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
    }
    fs::remove_dir(src).with_context(|| format!("cannot remove {}", src.display()))
}

/// `security.capability` value as `setcap cap_net_bind_service,cap_net_raw+ep` writes it:
/// `vfs_cap_data` revision 2 with the effective flag, little endian.
fn capability_xattr() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    const CAP_NET_BIND_SERVICE: u32 = 10;
    const CAP_NET_RAW: u32 = 13;
    let words = [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_NET_RAW), // permitted, caps 0..31
        0,                                                // inheritable, caps 0..31
        0,                                                // permitted, caps 32..63
        0,                                                // inheritable, caps 32..63
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Layer 3: deletions of files and directories of layers 1 and 2 (whiteouts), opaque
/// directories, a replaced file, and new files exercising hardlinks, symlinks, xattrs,
/// ownership, modes, special files, names and the sizes around the splitstream inline limit.
fn fill_changes(dir: &Path) -> Result<()> {
    // Parents of whiteouts get the same metadata as in the base (root, 0755).
    // Whiteouts: a file and a directory of the base, a directory of the packages layer.
    write_file(&dir.join("etc/.wh.motd"), b"", 0o644)?;
    write_file(&dir.join("var/log/.wh.apt"), b"", 0o644)?;
    write_file(&dir.join("usr/share/doc/.wh.curl"), b"", 0o644)?;
    write_file(&dir.join("usr/bin/.wh.openssl"), b"", 0o644)?;
    // Opaque directories: one hiding the base's apt.conf.d and adding a file, one left empty.
    write_file(&dir.join("etc/apt/apt.conf.d/.wh..wh..opq"), b"", 0o644)?;
    write_file(
        &dir.join("etc/apt/apt.conf.d/99fixture"),
        b"APT::Install-Recommends \"false\";\n",
        0o644,
    )?;
    write_file(&dir.join("usr/share/locale/.wh..wh..opq"), b"", 0o644)?;
    // A file of the base replaced.
    write_file(&dir.join("etc/issue"), b"cfs fixture \\n \\l\n\n", 0o644)?;

    let fx = dir.join("opt/fixture");
    // Hardlinks: three names for one file, across directories.
    let tool = fx.join("bin/tool");
    write_file(&tool, b"#!/bin/sh\necho \"cfs fixture tool: $0\"\n", 0o755)?;
    hard_link(&tool, &fx.join("bin/tool-hardlink"))?;
    fs::create_dir_all(fx.join("lib")).context("cannot create opt/fixture/lib")?;
    hard_link(&tool, &fx.join("lib/tool.hardlink"))?;
    // File capabilities (and a user xattr) on a hardlinked file.
    let netcap = fx.join("bin/netcap");
    write_file(&netcap, b"#!/bin/sh\nexec /usr/bin/true\n", 0o755)?;
    set_xattr(&netcap, "security.capability", &capability_xattr())?;
    set_xattr(&netcap, "user.fixture.role", b"capable")?;
    hard_link(&netcap, &fx.join("bin/netcap-link"))?;
    // Symlinks: relative to a directory, absolute, dangling, and a chain.
    symlink_at("bin", &fx.join("current"))?;
    symlink_at(
        "/opt/fixture/bin/tool",
        &dir.join("usr/local/bin/fixture-tool"),
    )?;
    symlink_at("does/not/exist", &fx.join("dangling"))?;
    symlink_at("current", &fx.join("current-again"))?;

    let data = fx.join("data");
    fs::create_dir_all(&data).context("cannot create opt/fixture/data")?;
    set_xattr(&data, "user.fixture.dir", b"yes")?;
    // Sizes around the 64-byte inline limit and the 4 KiB verity block.
    write_file(&data.join("empty"), b"", 0o644)?;
    for size in [1usize, 63, 64, 65, 4095, 4096, 4097, 65536 + 1] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        write_file(&data.join(format!("size-{size}")), &bytes, 0o644)?;
    }
    // Binary xattr value and several xattrs on one file.
    let tagged = data.join("tagged");
    write_file(&tagged, b"xattrs\n", 0o644)?;
    set_xattr(&tagged, "user.fixture.binary", &[0, 1, 2, 0xfe, 0xff])?;
    set_xattr(&tagged, "user.fixture.empty", b"")?;
    set_xattr(&tagged, "user.fixture.text", b"hello")?;
    // Ownership and modes.
    let private = data.join("private");
    write_file(&private, b"secret\n", 0o600)?;
    std::os::unix::fs::chown(&private, Some(1000), Some(1000))
        .context("cannot chown opt/fixture/data/private")?;
    let user_dir = data.join("home-1000");
    fs::create_dir(&user_dir).context("cannot create opt/fixture/data/home-1000")?;
    std::os::unix::fs::chown(&user_dir, Some(1000), Some(100))
        .context("cannot chown opt/fixture/data/home-1000")?;
    symlink_at("../private", &user_dir.join("link-owned-by-user"))?;
    std::os::unix::fs::lchown(user_dir.join("link-owned-by-user"), Some(1000), Some(1000))
        .context("cannot lchown a symlink")?;
    write_file(&data.join("setuid"), b"#!/bin/sh\n", 0o4755)?;
    write_file(&data.join("setgid"), b"#!/bin/sh\n", 0o2755)?;
    let sticky = data.join("sticky");
    fs::create_dir(&sticky).context("cannot create opt/fixture/data/sticky")?;
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777))
        .context("cannot chmod opt/fixture/data/sticky")?;
    // Special files.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        data.join("fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .context("cannot make opt/fixture/data/fifo")?;
    // Names: non-ASCII, spaces, and a path longer than ustar's 100 + 155 bytes.
    write_file(&data.join("ünïcødé 名前.txt"), b"utf-8 name\n", 0o644)?;
    write_file(&data.join("with space & 'quotes'"), b"odd name\n", 0o644)?;
    let long_dir = data.join("d".repeat(120)).join("e".repeat(120));
    write_file(
        &long_dir.join(format!("{}.txt", "f".repeat(100))),
        b"long path\n",
        0o644,
    )?;
    Ok(())
}

/// Layer 4: one large file of deterministic pseudo-random (incompressible) bytes.
fn fill_large(dir: &Path) -> Result<()> {
    let path = dir.join("opt/large/random.bin");
    let parent = path.parent().context("no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Xoshiro256::new(LARGE_FILE_SEED);
    let mut block = vec![0u8; 1 << 20];
    let mut left = LARGE_FILE_SIZE;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = usize::try_from(left.min(block.len() as u64)).context("block size")?;
        out.write_all(&block[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// xoshiro256** seeded through splitmix64: fast, deterministic, and its output does not compress.
pub(crate) struct Xoshiro256([u64; 4]);

impl Xoshiro256 {
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Xoshiro256([splitmix(), splitmix(), splitmix(), splitmix()])
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

/// Layer 5 (only in `debian-small`): a couple of small files.
fn fill_extra(dir: &Path) -> Result<()> {
    write_file(
        &dir.join("etc/fixture-release"),
        format!("NAME=\"cfs fixture\"\nBASE=debian-{SUITE}-minbase\n").as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join("usr/local/share/fixture/README"),
        b"Second layer of the debian-small fixture image; its base layer is shared with \
          debian-gzip.\n",
        0o644,
    )
}

/// Writes `contents` to `path` (creating parent directories, mode 0755) with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    // set_permissions, not the umask-filtered create mode, so setuid and 0644 are exact.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn hard_link(original: &Path, link: &Path) -> Result<()> {
    fs::hard_link(original, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), original.display()))
}

fn symlink_at(target: &str, link: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    symlink(target, link).with_context(|| format!("cannot create symlink {}", link.display()))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .with_context(|| format!("cannot set xattr {name} on {}", path.display()))
}

/// SHA-256 (hex) and size of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// A blob written to the layout.
#[derive(Clone)]
pub(crate) struct Blob {
    pub(crate) digest: String,
    pub(crate) size: u64,
}

impl Blob {
    pub(crate) fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.size })
    }
}

/// Writes the OCI layout (into `oci.tmp`, then swapped in) and `fixtures.json`; returns the
/// summary.
fn write_layout(paths: &Paths, layers: &BTreeMap<LayerId, Layer>) -> Result<Value> {
    let tmp = paths.out.join("oci.tmp");
    remove_tree(&tmp)?;
    let blobs_dir = tmp.join("blobs/sha256");
    fs::create_dir_all(&blobs_dir)
        .with_context(|| format!("cannot create {}", blobs_dir.display()))?;
    write_file(
        &tmp.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;

    // Every (layer, compression) some image uses, compressed in parallel.
    let mut wanted: Vec<(LayerId, Compression)> = Vec::new();
    for image in IMAGES {
        for &id in image.layers {
            if !wanted.contains(&(id, image.compression)) {
                wanted.push((id, image.compression));
            }
        }
    }
    let t = Instant::now();
    let layer_blobs = compress_all(layers, &wanted, &blobs_dir)?;
    println!(
        "compressed {} layer blobs in {:.1} s",
        wanted.len(),
        t.elapsed().as_secs_f64()
    );

    let mut blob_list: BTreeMap<String, u64> = BTreeMap::new();
    for blob in layer_blobs.values() {
        blob_list.insert(blob.digest.clone(), blob.size);
    }
    let mut index_entries = Vec::new();
    let mut images = Vec::new();
    for image in IMAGES {
        let layer_of = |id: &LayerId| {
            layers
                .get(id)
                .with_context(|| format!("layer {} not built", id.name()))
        };
        let blob_of = |id: &LayerId| {
            layer_blobs
                .get(&(*id, image.compression))
                .with_context(|| format!("no {} blob of {}", image.compression.name(), id.name()))
        };
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        let mut descriptors = Vec::new();
        let mut layer_summaries = Vec::new();
        for id in image.layers {
            let layer = layer_of(id)?;
            let blob = blob_of(id)?;
            diff_ids.push(format!("sha256:{}", layer.diff_id));
            history.push(json!({
                "created": CREATED,
                "created_by": layer.id.created_by(),
                "comment": format!("cfs fixture layer {}", layer.id.name()),
            }));
            descriptors.push(blob.descriptor(image.compression.media_type()));
            layer_summaries.push(json!({
                "name": layer.id.name(),
                "mediaType": image.compression.media_type(),
                "digest": blob.digest,
                "size": blob.size,
                "diff_id": format!("sha256:{}", layer.diff_id),
                "uncompressed_size": layer.size,
            }));
        }
        // A configuration-only step, as Dockerfiles have: history longer than diff_ids.
        history.push(json!({
            "created": CREATED,
            "created_by": "CMD [\"/bin/bash\"]",
            "empty_layer": true,
        }));
        let config = json!({
            "created": CREATED,
            "author": "cfs cargo xtask fixtures",
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/bash"],
                "Labels": { "org.cfs.fixture": image.tag },
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        let config_blob = write_json_blob(&blobs_dir, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_blob.descriptor(MEDIA_CONFIG),
            "layers": descriptors,
            "annotations": { "org.opencontainers.image.created": CREATED },
        });
        let manifest_blob = write_json_blob(&blobs_dir, &manifest)?;
        blob_list.insert(config_blob.digest.clone(), config_blob.size);
        blob_list.insert(manifest_blob.digest.clone(), manifest_blob.size);
        let mut entry = manifest_blob.descriptor(MEDIA_MANIFEST);
        entry["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        entry["annotations"] = json!({ REF_NAME: image.tag });
        index_entries.push(entry);
        images.push(json!({
            "tag": image.tag,
            "reference": format!("oci:{}:{}", paths.layout.display(), image.tag),
            "compression": image.compression.name(),
            "manifest": manifest_blob.descriptor(MEDIA_MANIFEST),
            "config": config_blob.descriptor(MEDIA_CONFIG),
            "layers": layer_summaries,
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": index_entries,
    });
    let index_bytes = serde_json::to_vec(&index).context("cannot serialise index.json")?;
    write_file(&tmp.join("index.json"), &index_bytes, 0o644)?;

    remove_tree(&paths.layout)?;
    fs::rename(&tmp, &paths.layout)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;

    let summary = json!({
        "recipe": RECIPE_VERSION,
        "layout": paths.layout,
        "images": images,
        "blobs": blob_list
            .iter()
            .map(|(digest, size)| json!({ "digest": digest, "size": size }))
            .collect::<Vec<_>>(),
    });
    let text = serde_json::to_vec_pretty(&summary).context("cannot serialise fixtures.json")?;
    let tmp_summary = paths.summary.with_extension("json.tmp");
    write_file(&tmp_summary, &text, 0o644)?;
    fs::rename(&tmp_summary, &paths.summary)
        .with_context(|| format!("cannot rename {} into place", tmp_summary.display()))?;
    Ok(summary)
}

/// Produces the blob of each wanted (layer, compression): uncompressed tars are hardlinked into
/// the layout; gzip (`gzip -n`, no name or time in the header) and zstd (level 3, one thread)
/// run as concurrent processes.
fn compress_all(
    layers: &BTreeMap<LayerId, Layer>,
    wanted: &[(LayerId, Compression)],
    blobs_dir: &Path,
) -> Result<BTreeMap<(LayerId, Compression), Blob>> {
    let mut running = Vec::new();
    let mut blobs = BTreeMap::new();
    for &(id, compression) in wanted {
        let layer = layers
            .get(&id)
            .with_context(|| format!("layer {} not built", id.name()))?;
        let (program, args) = match compression {
            Compression::Gzip => ("gzip", &["-n", "-6", "-c"][..]),
            Compression::Zstd => ("zstd", &["-3", "-T1", "-q", "-c"][..]),
            Compression::None => {
                let path = blobs_dir.join(&layer.diff_id);
                if fs::hard_link(&layer.tar, &path).is_err() {
                    fs::copy(&layer.tar, &path).with_context(|| {
                        format!("cannot copy {} to the layout", layer.tar.display())
                    })?;
                }
                let blob = Blob {
                    digest: format!("sha256:{}", layer.diff_id),
                    size: layer.size,
                };
                blobs.insert((id, compression), blob);
                continue;
            }
        };
        let out = blobs_dir.join(format!(".tmp-{}.{}", id.name(), compression.name()));
        let file =
            File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let input = File::open(&layer.tar)
            .with_context(|| format!("cannot open {}", layer.tar.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd.stdin(input).stdout(file);
        let shown = format!("{} < {}", display_command(&cmd), layer.tar.display());
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{shown}`"))?;
        running.push((id, compression, out, child, shown));
    }
    for (id, compression, out, child, shown) in running {
        wait_ok(child, &shown)?;
        let (hex, size) = sha256_file(&out)?;
        let path = blobs_dir.join(&hex);
        fs::rename(&out, &path)
            .with_context(|| format!("cannot rename {} into place", out.display()))?;
        blobs.insert(
            (id, compression),
            Blob {
                digest: format!("sha256:{hex}"),
                size,
            },
        );
    }
    Ok(blobs)
}

pub(crate) fn write_json_blob(blobs_dir: &Path, value: &Value) -> Result<Blob> {
    let bytes = serde_json::to_vec(value).context("cannot serialise JSON")?;
    let hex = hex::encode(Sha256::digest(&bytes));
    write_file(&blobs_dir.join(&hex), &bytes, 0o644)?;
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len() as u64,
    })
}

/// Prints where the fixtures are, and each image's layers with sizes and digests.
fn print_summary(paths: &Paths, summary: &Value) {
    println!("OCI layout: {}", paths.layout.display());
    let images = summary["images"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for image in images {
        let layers = image["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let total: u64 = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
        println!(
            "  {}  ({} layers, {} bytes)  manifest {}",
            image["reference"].as_str().unwrap_or("?"),
            layers.len(),
            total,
            image["manifest"]["digest"].as_str().unwrap_or("?"),
        );
        for layer in layers {
            println!(
                "    {:<8} {:>10} bytes  {}  (diff_id {}, {} bytes)",
                layer["name"].as_str().unwrap_or("?"),
                layer["size"].as_u64().unwrap_or(0),
                layer["digest"].as_str().unwrap_or("?"),
                layer["diff_id"].as_str().unwrap_or("?"),
                layer["uncompressed_size"].as_u64().unwrap_or(0),
            );
        }
    }
    println!("  listing: {}", paths.summary.display());
}

/// Removes a directory tree (or file) if present, after unmounting anything mounted below it
/// (debootstrap mounts /proc and /sys in its target and may leave them behind when it fails).
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let mounts = mounts_below(path)?;
    for mount in mounts.iter().rev() {
        run_command(Command::new("umount").arg("--lazy").arg(mount))?;
    }
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

/// Mount points at or below `path`, outermost first.
fn mounts_below(path: &Path) -> Result<Vec<PathBuf>> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("no current directory")?
            .join(path)
    };
    let file = File::open("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mut found = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.context("cannot read /proc/self/mountinfo")?;
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(field));
        if mount_point.starts_with(&abs) {
            found.push(mount_point);
        }
    }
    found.sort();
    Ok(found)
}

/// Decodes the `\NNN` octal escapes of /proc/self/mountinfo.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_matches_setcap() {
        // `setcap cap_net_bind_service,cap_net_raw+ep f; getfattr -n security.capability -e hex f`
        assert_eq!(
            hex::encode(capability_xattr()),
            "0100000200240000000000000000000000000000"
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo(r"/x\"), r"/x\");
    }

    #[test]
    fn prng_is_stable() {
        let mut rng = Xoshiro256::new(LARGE_FILE_SEED);
        let first = rng.next_u64();
        let mut again = Xoshiro256::new(LARGE_FILE_SEED);
        assert_eq!(first, again.next_u64());
        assert_ne!(first, rng.next_u64());
    }
}
