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
mod layers;
mod layout;

pub(crate) use layers::Xoshiro256;
use layers::{fill_changes, fill_extra, fill_large, fill_packages, wait_ok, write_file};
pub(crate) use layout::write_json_blob;
use layout::{print_summary, write_layout};

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

/// The debootstrap root filesystem tar (the base layer) of the fixtures in `out`.
pub(crate) fn base_tar(out: &Path) -> PathBuf {
    Paths::new(out.to_path_buf()).base_tar
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
    use super::layers::capability_xattr;
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
