//! `cfsctl oci ...`: OCI images and layers: pull, list, inspect, name and remove images, build
//! and mount the composefs image of their merged layers, and write layers back out.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cfs_oci::manifest::Platform;
use cfs_oci::pull::{PullEvent, PullOptions, pull};
use cfs_oci::store::{self, Kind, StoredImage};
use cfs_repository::Repository;
use clap::{ArgAction, Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

mod export;
mod list;

use crate::image::oci_tree as tree;

/// OCI subcommands.
#[derive(Subcommand, Debug)]
pub enum OciCommand {
    /// Pull an image (oci:, oci-archive:, dir: read directly; docker://, containers-storage:
    /// and the rest through skopeo), verify every digest, and store it; prints the image ID
    /// (`sha256:<config digest>`) as the last line.
    Pull(PullArgs),
    /// List images: name, image ID, created, layers, size.
    Images {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an image as JSON, or its raw config or manifest.
    Inspect {
        /// Name, image ID (or unique prefix), or manifest / manifest list digest.
        name: String,
        /// Print the raw config JSON.
        #[arg(long, conflicts_with = "manifest")]
        config: bool,
        /// Print the raw manifest JSON.
        #[arg(long)]
        manifest: bool,
    },
    /// Give an image another name.
    Tag {
        /// An existing name, image ID or digest.
        source: String,
        /// The new name.
        name: String,
    },
    /// Remove one name (the image stays while other names point at it), with the composefs
    /// image ref `oci/NAME` that `oci create-image`/`oci mount` made.
    Untag {
        /// The name.
        name: String,
    },
    /// Remove an image: every name that points at it and every composefs image ref (`oci/...`)
    /// made for it. `cfsctl gc` then frees the space (unless the image is mounted).
    Rm {
        /// Names, image IDs (or unique prefixes) or digests.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Write an image's layer (the uncompressed tar, or an artifact's blob) to stdout; without
    /// --layer the config (images) or the only blob (artifacts).
    Cat {
        /// Name, image ID or digest.
        name: String,
        /// Layer index, from 0.
        #[arg(long, value_name = "N")]
        layer: Option<usize>,
    },
    /// Import an uncompressed tar layer from stdin; prints its content id.
    ImportLayer,
    /// Write a stored layer, re-created byte for byte, to stdout (not to a terminal).
    Layer {
        /// The layer's diff_id (`sha256:<hex>` or hex) or its content id.
        diff_id: String,
    },
    /// Print the composefs image ID of an image's merged layers, storing nothing.
    ComputeId {
        /// Name or image ID (`sha256:<config digest>`).
        name: String,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: crate::image::Canonical,
    },
    /// Store the composefs image of an image's merged layers and name it with the image ref
    /// `oci/NAME` (so gc keeps it); prints the image ID.
    CreateImage {
        /// Name or image ID (`sha256:<config digest>`).
        name: String,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: crate::image::Canonical,
    },
    /// Mount an image's merged layers read-only (needs root), creating its composefs image
    /// first if needed.
    Mount {
        /// Name or image ID (`sha256:<config digest>`).
        name: String,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: crate::image::Canonical,
        /// An existing directory.
        mountpoint: PathBuf,
    },
    /// Print the composefs kernel argument of an image's bootable composefs image
    /// (`composefs.digest=v1-<hash>-12:<hex>`; `?` after `=` in an insecure repository), as
    /// composefs-rs 0.9.4 writes it. Stores nothing.
    ComputeKarg {
        /// Name or image ID (`sha256:<config digest>`).
        name: String,
    },
    /// Store an image's bootable composefs image (a gc root `deploy/<hex>`), create its
    /// state directory `<repo's parent>/state/deploy/<hex>/`, and write its boot entry into
    /// the boot directory: BLS type 1 (`loader/entries/ID.conf`, `ID/vmlinuz`,
    /// `ID/initramfs.img`) or the image's UKI in `EFI/Linux/` (docs/boot.md).
    PrepareBoot(crate::boot::PrepareBootArgs),
    /// Print the dumpfile (composefs-dump(5)) of an image's merged layers.
    Dump {
        /// Name or image ID (`sha256:<config digest>`).
        name: String,
        /// The canonical-tree rules.
        #[command(flatten)]
        rules: crate::image::Canonical,
    },
    /// Write an image to an OCI layout (oci:DIR[:TAG], added to) or archive
    /// (oci-archive:FILE[:TAG]): the config byte for byte (same image ID), the layers as the
    /// stored tars or recompressed; prints the manifest digest.
    Export(export::ExportArgs),
    /// Push an image to a registry (docker://…) through skopeo; prints the pushed manifest
    /// digest.
    Push(export::PushArgs),
    /// Copy an image from another cfs repository (objects hardlinked, reflinked or copied,
    /// every one verified); prints the image ID.
    Copy(export::CopyArgs),
}

/// How to reach a registry: the same options for `oci pull` and `oci push`, as skopeo's.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Verify TLS certificates; --tls-verify=false allows plain-http registries.
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = true, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// Registry credentials file [default as skopeo: $REGISTRY_AUTH_FILE, then
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
    /// ~/.docker/config.json].
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Registry credentials; without :PASS the password is read from the terminal or stdin.
    #[arg(long, value_name = "USER[:PASS]")]
    creds: Option<String>,
    /// Certificates for the registry (`*.crt` CAs, `*.cert`/`*.key` client pairs), as
    /// skopeo's --cert-dir [default: the system's and /etc/containers/certs.d/HOST].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

impl RegistryArgs {
    /// `--creds` as (user, password); the password read from the terminal or stdin when
    /// `:PASS` is left out.
    pub fn creds(&self) -> Result<Option<(String, String)>> {
        let Some(c) = &self.creds else {
            return Ok(None);
        };
        Ok(Some(match c.split_once(':') {
            Some((u, p)) => (u.to_owned(), p.to_owned()),
            None => (c.clone(), read_password(c)?),
        }))
    }
}

/// The arguments of `oci pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image in skopeo syntax: docker://HOST/REPO:TAG, docker://…@sha256:…,
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], dir:DIR, docker-archive:FILE,
    /// containers-storage:NAME.
    image: String,
    /// The local name [default: the reference's name and tag, e.g.
    /// docker.io/library/debian:12; for oci:DIR:TAG the tag; else the file name].
    name: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The platform to pick from a manifest list [default: the host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Layers to process at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Refuse a layer that decompresses to more than SIZE bytes (suffixes K, M, G, T)
    /// [default: 64G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_layer_size: Option<u64>,
    /// No progress output; print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Also write progress as JSON lines to this open file descriptor (docs/cli.md).
    #[arg(long, value_name = "FD")]
    progress_fd: Option<i32>,
    /// Print the result as JSON (name, image_id, manifest_digest, …) instead of the image ID.
    #[arg(long)]
    json: bool,
    /// Refuse the pull (before anything is named) unless the image ID (config digest) is
    /// this sha256:<hex>.
    #[arg(long, value_name = "sha256:HEX")]
    image_id: Option<String>,
    /// always: pull; missing: use the image stored under the name without contacting the
    /// source; newer: pull only if the source's manifest digest differs from the stored one.
    #[arg(long, value_name = "always|missing|newer", default_value = "always")]
    policy: cfs_oci::pull::PullPolicy,
}

/// Stores the composefs image of `name`'s layers and sets the image ref `oci/NAME`.
fn create_image(
    repo: &Repository,
    name: &str,
    rules: &crate::image::Canonical,
) -> Result<cfs_repository::ObjectId> {
    let fs = tree(repo, name, rules)?;
    let id = cfs_image::repo::store_image(repo, &fs, cfs_image::transform::OCI_FORMAT)?;
    repo.set_image_ref(&store::image_ref_name(name), &id)?;
    Ok(id)
}

/// Accepts `sha256:<hex>`, `<hex>` or `oci-layer-sha256:<hex>`.
fn layer_cid(arg: &str) -> Result<String> {
    let hex = arg
        .strip_prefix("oci-layer-sha256:")
        .or_else(|| arg.strip_prefix("sha256:"))
        .unwrap_or(arg);
    if !cfs_oci::reference::is_sha256_hex(hex) {
        bail!("{arg:?} is not a layer diff_id (expected sha256:<64 lowercase hex digits>)");
    }
    Ok(cfs_oci::layer_content_id(hex))
}

/// Progress bars on stderr, one per blob being fetched.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    status: ProgressBar,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let status = multi.add(ProgressBar::new_spinner());
        status.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            bars: Mutex::new(HashMap::new()),
            status,
        }
    }

    fn finish(&self) {
        self.status.finish_and_clear();
        if let Ok(bars) = self.bars.lock() {
            for b in bars.values() {
                if !b.is_finished() {
                    b.abandon();
                }
            }
        }
    }
}

fn label(index: usize) -> String {
    if index == usize::MAX {
        "config".to_owned()
    } else {
        format!("layer {index}")
    }
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl Bars {
    fn event(&self, event: PullEvent) {
        match event {
            PullEvent::Message(m) => self.message(&m),
            PullEvent::BlobStarted {
                index,
                digest,
                size,
            } => self.blob_started(index, &digest, size),
            PullEvent::BlobProgress { index, bytes } => self.blob_progress(index, bytes),
            PullEvent::BlobDone { index } => self.blob_done(index),
            PullEvent::BlobSkipped { index, digest } => self.blob_skipped(index, &digest),
            _ => {}
        }
    }

    fn message(&self, msg: &str) {
        self.status.set_message(msg.to_owned());
    }

    fn blob_started(&self, index: usize, digest: &str, size: u64) {
        // Size 0: not known in advance (containers-storage layers): bytes so far, no bar.
        let template = if size == 0 {
            "{prefix:>9} {msg:12} {spinner:^32} {bytes:>10}            {bytes_per_sec:>11}"
        } else {
            "{prefix:>9} {msg:12} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>11}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let pb = self.multi.add(ProgressBar::new(size));
        pb.set_style(style);
        pb.set_prefix(label(index));
        pb.set_message(short_digest(digest).to_owned());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(index, pb);
        }
        self.status.set_message("fetching");
    }

    fn blob_progress(&self, index: usize, n: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(&index)
        {
            b.inc(n);
        }
    }

    fn blob_done(&self, index: usize) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(&index)
        {
            if b.length() == Some(0) {
                // Unknown size: keep the count (finishing would set it to the length, 0).
                b.abandon();
            } else {
                b.finish();
            }
        }
    }

    fn blob_skipped(&self, index: usize, digest: &str) {
        let _ = self.multi.println(format!(
            "{:>9} {} already stored",
            label(index),
            short_digest(digest)
        ));
    }
}

/// Reads a password: from the terminal without echo, else one line of stdin.
pub(crate) fn read_password(user: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("Password for {user}: ");
        let fd = std::io::stdin();
        let old = rustix::termios::tcgetattr(&fd).context("reading terminal settings")?;
        let mut quiet = old.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning off echo")?;
        let r = stdin.read_line(&mut line);
        let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &old);
        eprintln!();
        r.context("reading the password")?;
    } else {
        stdin
            .read_line(&mut line)
            .context("reading the password from stdin")?;
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
            .replace(".000 ", " ")
            .trim()
            .to_owned()
    }
}

fn open_named(repo: &Repository, name: &str) -> Result<StoredImage> {
    let cid = store::resolve(repo, name)?;
    Ok(store::open(repo, &cid)?)
}

/// Parses a byte count with an optional binary suffix: `1048576`, `512K`, `64G`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 512K, 64G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn run_pull(repo: &Arc<Repository>, args: PullArgs) -> Result<()> {
    let PullArgs {
        image,
        name,
        registry,
        platform,
        jobs,
        max_layer_size,
        quiet,
        progress_fd,
        json,
        image_id,
        policy,
    } = args;
    let name = name.as_deref();
    let mut progress = progress_fd
        .map(crate::progress_fd::ProgressFd::open)
        .transpose()?;
    if let Some(p) = &mut progress {
        p.start(&image, name);
    }
    let platform = match platform {
        Some(p) => Some(p.parse::<Platform>()?),
        None => None,
    };
    let opts = PullOptions {
        insecure_skip_tls_verification: !registry.tls_verify,
        creds: registry.creds()?,
        authfile: registry.authfile,
        cert_dir: registry.cert_dir,
        platform,
        jobs,
        max_layer_size,
        image_id,
        policy,
    };
    let start = std::time::Instant::now();
    let bars = (!quiet && std::io::stderr().is_terminal()).then(Bars::new);
    // The pull runs in this runtime; its CPU-bound stages run on threads of its own. The
    // bars are drawn from its events.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let events = (bars.is_some() || progress.is_some()).then_some(tx);
        let draw = async {
            while let Some(event) = rx.recv().await {
                if let Some(p) = &mut progress {
                    p.event(&event);
                }
                if let Some(b) = &bars {
                    b.event(event);
                }
            }
        };
        let pulled = pull(Arc::clone(repo), &image, name, &opts, events);
        let (result, ()) = tokio::join!(pulled, draw);
        result
    });
    // A source that hung after an error (skopeo) must not keep us waiting.
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Some(b) = &bars {
        b.finish();
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::Error::from(e);
            if let Some(p) = &mut progress {
                p.error(&crate::error_chain(&e));
            }
            return Err(e);
        }
    };
    let rebuilt = restore_image_ref(repo, &result.name)?;
    if let Some(p) = &mut progress {
        p.done(&result);
    }
    if let Some(old) = &result.moved_from {
        // Said even with --quiet: the old image is no longer reachable by this name.
        eprintln!(
            "moved {} from {old} (the old image stays, unnamed, until `cfsctl oci rm {}` or gc)",
            result.name,
            short_digest(old)
        );
    }
    if result.up_to_date && !quiet {
        eprintln!(
            "{} is stored and up to date (--policy {}); nothing pulled",
            result.name,
            format!("{policy:?}").to_lowercase()
        );
    } else if !quiet {
        let what = if result.artifact { "artifact" } else { "image" };
        let list = match (&result.list_digest, &result.platform) {
            (Some(l), Some(p)) => format!(" ({p} from list {})", short_digest(l)),
            _ => String::new(),
        };
        eprintln!(
            "{what} {}{list}: fetched {} blobs ({}), {} already stored, in {:.2?}; named {}",
            short_digest(&result.image_id),
            result.fetched,
            human_size(result.fetched_bytes),
            result.reused,
            start.elapsed(),
            result.name
        );
    }
    if let Some(id) = rebuilt
        && !quiet
    {
        eprintln!(
            "rebuilt the composefs image {} of {}",
            short_digest(&id.to_hex()),
            store::image_ref_name(&result.name)
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::progress_fd::result_json(&result))?
        );
    } else {
        println!("{}", result.image_id);
    }
    Ok(())
}

/// `fsck --repair` removes a composefs image that needs a lost object but keeps the image ref
/// `oci/NAME` made for it (by `oci create-image`/`oci mount`), and advises a re-pull of NAME.
/// That re-pull restores the layers and then, here, rebuilds the image the dangling ref names,
/// so the repair + re-pull leave a clean repository with no other command. A ref whose image is
/// present is left alone. Returns the rebuilt image's ID.
fn restore_image_ref(repo: &Repository, name: &str) -> Result<Option<cfs_repository::ObjectId>> {
    let image_ref = store::image_ref_name(name);
    let has_ref = repo.list_image_refs()?.iter().any(|r| r.name == image_ref);
    if !has_ref || repo.resolve_image(&image_ref).is_ok() {
        return Ok(None);
    }
    // The default canonical-tree rules: the ref does not record the rules it was made with.
    let id = create_image(repo, name, &crate::image::Canonical::default())
        .with_context(|| format!("pulled {name}, but rebuilding its image ref {image_ref}"))?;
    Ok(Some(id))
}

/// Runs an OCI subcommand.
pub fn run(repo: &Arc<Repository>, cmd: OciCommand) -> Result<()> {
    let repo_arc = repo;
    let repo: &Repository = repo;
    match cmd {
        OciCommand::Pull(args) => run_pull(repo_arc, args)?,
        OciCommand::Images { json } => list::images(repo, json)?,
        OciCommand::Inspect {
            name,
            config,
            manifest,
        } => {
            let img = open_named(repo, &name)?;
            let mut out = std::io::stdout().lock();
            if config {
                let c = img
                    .config
                    .as_deref()
                    .with_context(|| format!("{name} has no stored config"))?;
                out.write_all(c)?;
            } else if manifest {
                let m = img
                    .manifest
                    .as_deref()
                    .with_context(|| format!("{name}: the manifest is not stored"))?;
                out.write_all(m)?;
            } else {
                let names: Vec<String> = store::names(repo)?
                    .into_iter()
                    .filter(|(_, c)| *c == img.content_id)
                    .map(|(n, _)| n)
                    .collect();
                let mut v = serde_json::to_value(&img)?;
                v["names"] = names.into();
                if let Some(c) = &img.config {
                    v["config"] = serde_json::from_slice(c).unwrap_or(serde_json::Value::Null);
                }
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            }
            out.flush()?;
        }
        OciCommand::Tag { source, name } => {
            let cid = store::resolve(repo, &source)?;
            let refs = repo.list_stream_refs()?;
            cfs_oci::names::check_new_name(&name, refs.iter().map(|r| r.name.as_str()))?;
            if let Some(old) = store::set_name(repo, &name, &cid)? {
                let old = store::image_id_of(&old);
                eprintln!(
                    "moved {name} from {old} (the old image stays, unnamed, until `cfsctl oci rm {}` or gc)",
                    short_digest(&old)
                );
            }
        }
        OciCommand::Untag { name } => {
            match repo.stream_ref(&name)? {
                Some(cid) if cid.starts_with("oci-config-") || cid.starts_with("oci-manifest-") => {
                }
                _ => return Err(store::StoreError::NotFound(name).into()),
            }
            // The composefs image ref `oci create-image`/`oci mount` made under this name goes
            // first: killed in between, the name stays (the next `oci create-image` re-makes
            // the ref) rather than an `oci/NAME` ref that no `oci` command sees any more.
            repo.remove_image_ref(&store::image_ref_name(&name))?;
            repo.remove_stream_ref(&name)?;
        }
        OciCommand::Rm { names } => {
            for name in names {
                list::remove(repo, &name)?;
            }
        }
        OciCommand::Cat { name, layer } => {
            let img = open_named(repo, &name)?;
            let mut out = std::io::stdout().lock();
            match (layer, img.kind) {
                (Some(n), _) => {
                    if out.is_terminal() {
                        bail!("refusing to write a layer to a terminal; redirect stdout");
                    }
                    store::write_layer(repo, &img, &name, n, &mut out)?;
                }
                (None, Kind::Image) => {
                    let c = img.config.as_deref().context("no stored config")?;
                    out.write_all(c)?;
                }
                (None, Kind::Artifact) => {
                    if img.layers.len() != 1 {
                        bail!(
                            "{name} has {} blobs; choose one with --layer N (0 to {})",
                            img.layers.len(),
                            img.layers.len().saturating_sub(1)
                        );
                    }
                    if out.is_terminal() {
                        bail!("refusing to write a blob to a terminal; redirect stdout");
                    }
                    store::write_layer(repo, &img, &name, 0, &mut out)?;
                }
            }
            out.flush()?;
        }
        OciCommand::ImportLayer => {
            let stdin = std::io::stdin().lock();
            let imported =
                cfs_oci::import_layer(repo, stdin).context("importing the layer from stdin")?;
            println!("{}", imported.content_id);
        }
        OciCommand::Layer { diff_id } => {
            let cid = layer_cid(&diff_id)?;
            let mut out = std::io::stdout().lock();
            if out.is_terminal() {
                bail!(
                    "refusing to write a tar layer to a terminal; redirect stdout to a file or pipe"
                );
            }
            let reader = repo.open_stream(&cid)?;
            reader.write_to(repo, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
        OciCommand::ComputeId { name, rules } => {
            let fs = tree(repo, &name, &rules)?;
            let id =
                cfs_image::repo::image_id(&fs, repo.algorithm(), cfs_image::transform::OCI_FORMAT)?;
            println!("{id}");
        }
        OciCommand::CreateImage { name, rules } => {
            println!("{}", create_image(repo, &name, &rules)?)
        }
        OciCommand::Mount {
            name,
            mountpoint,
            rules,
        } => {
            if !rustix::process::geteuid().is_root() {
                bail!("mounting needs root (CAP_SYS_ADMIN)");
            }
            let id = create_image(repo, &name, &rules)?;
            crate::mount::run(repo, &id.to_hex(), &mountpoint)?;
        }
        OciCommand::ComputeKarg { name } => crate::boot::oci_compute_karg(repo, &name)?,
        OciCommand::PrepareBoot(args) => crate::boot::prepare_boot(repo, &args)?,
        OciCommand::Export(args) => export::run_export(repo, args)?,
        OciCommand::Push(args) => export::run_push(repo, args)?,
        OciCommand::Copy(args) => export::run_copy(repo, args)?,
        OciCommand::Dump { name, rules } => {
            let fs = tree(repo, &name, &rules)?;
            let mut out = std::io::stdout().lock();
            cfs_image::dumpfile::write(&fs, &mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}
