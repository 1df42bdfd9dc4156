//! The benchmark of issue 11 §4 on the big fixture image: cfs and composefs-rs 0.9.4 in
//! alternating rounds, on fresh RAM-backed ext4 filesystems — cold pulls of the gzip and zstd
//! variants from `oci:` and of the gzip variant from a loopback registry; `gzip -dc`/`zstd -dc`
//! of the layers; each stage of a pull measured alone (its CPU-seconds summed over the cores
//! make the pull's wall-time bound); and the two scaling layers. Prints, and writes into
//! docs/performance.md, the tables and one verdict line per target.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::harness::{Row, Scratch, Spec, cores, date, layer_blobs, load, machine};
use super::registry::Registry;
use super::scale;
use crate::peers::{self, COMPOSEFS_RS_VERSION, Install};

/// What [`run`] needs.
pub struct Setup {
    pub root: PathBuf,
    /// The cfsctl measured.
    pub bin: PathBuf,
    /// The small fixtures' directory (inputs of the big image).
    pub fixtures: PathBuf,
    /// The benchmark's cache (big image, scaling layers, registry storage).
    pub cache: PathBuf,
    pub scratch: Scratch,
    pub runs: usize,
    pub peer: bool,
    pub scale: bool,
    pub write: bool,
    pub quick: bool,
}

/// The image tags of the big fixture.
const GZIP: &str = "big-gzip";
const ZSTD: &str = "big-zstd";
const PLAIN: &str = "big-plain";

/// Row names (looked up again for the ratios).
const CFS: &str = "cfs";
const PEER: &str = "composefs-rs";

fn pull_name(tool: &str, what: &str) -> String {
    format!("{tool} cold pull {what}")
}

/// Runs the benchmark.
pub fn run(s: &Setup) -> Result<()> {
    let big = crate::fixtures::big::ensure(&s.fixtures, &s.cache.join("big"))?;
    let layout = PathBuf::from(big["layout"].as_str().context("big.json: layout")?);
    let peer = if s.peer {
        Some(
            peers::composefs_rs(Install::IfMissing)
                .context("composefs-rs is needed for the comparison (--no-peer leaves it out)")?,
        )
    } else {
        None
    };
    let scale_dir = scale::cache_dir(&s.cache);
    let scaling = if s.scale {
        Some(scale::ensure(&scale_dir)?)
    } else {
        None
    };
    let registry = Registry::start(&s.cache.join("registry"))?;
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    registry.push(&oci(GZIP), "big:gzip")?;
    // A copy of this binary runs the stages: the original may be rebuilt meanwhile (a shared
    // target directory).
    let xtask = s.cache.join("xtask-stages");
    std::fs::copy(
        std::env::current_exe().context("no path of the xtask binary")?,
        &xtask,
    )
    .with_context(|| format!("cannot copy the xtask binary to {}", xtask.display()))?;
    let blobs = |tag: &str| -> Result<String> {
        Ok(layer_blobs(&big, &layout, tag)?
            .iter()
            .map(|b| b.display().to_string())
            .collect::<Vec<_>>()
            .join(" "))
    };
    let (gz_blobs, zst_blobs, tar_blobs) = (blobs(GZIP)?, blobs(ZSTD)?, blobs(PLAIN)?);

    // The commands of each tool: (name, init, pull of SOURCE, pull of a registry REF).
    let cfs = s.bin.display().to_string();
    let mut tools = vec![(
        CFS,
        format!("{cfs} --repo repo init --insecure >/dev/null"),
        format!("{cfs} --repo repo oci pull -q"),
        format!("{cfs} --repo repo oci pull -q --tls-verify=false"),
    )];
    if let Some(p) = &peer {
        let p = p.display();
        // sha256 object names, as cfs's; composefs-rs prints its result on stdout.
        tools.push((
            PEER,
            format!("{p} --repo repo init --insecure --algorithm fsverity-sha256-12 >/dev/null"),
            format!("{p} --repo repo oci pull"),
            format!("{} {p} --repo repo oci pull", registry.env()),
        ));
    }
    let mut specs = Vec::new();
    let pulls = |specs: &mut Vec<Spec>, what: &str, source: &str, registry_pull: bool| {
        for (tool, init, pull, reg_pull) in &tools {
            let cmd = if registry_pull { reg_pull } else { pull };
            let spec = Spec::new(
                pull_name(tool, what),
                init.clone(),
                format!("{cmd} {source} img >/dev/null"),
            )
            .disk("repo");
            // The peer's failures are results; cfs's end the run.
            specs.push(if *tool == PEER { spec.may_fail() } else { spec });
        }
    };
    let cat = |tool: &str, files: &str| {
        format!("for b in {files}; do {tool} -dc $b >/dev/null || exit 1; done")
    };
    specs.push(Spec::new(
        "gzip -dc of the gzip layers",
        "",
        cat("gzip", &gz_blobs),
    ));
    pulls(&mut specs, "gzip oci:", &oci(GZIP), false);
    specs.push(Spec::new(
        "zstd -dc of the zstd layers",
        "",
        cat("zstd", &zst_blobs),
    ));
    pulls(&mut specs, "zstd oci:", &oci(ZSTD), false);
    pulls(
        &mut specs,
        "gzip registry",
        &registry.reference("big:gzip"),
        true,
    );
    let stage =
        |what: &str, files: &str| format!("{} bench --stage {what} {files}", xtask.display());
    let stage_specs = [
        ("stage: inflate gzip", stage("inflate", &gz_blobs)),
        ("stage: inflate zstd", stage("inflate", &zst_blobs)),
        (
            "stage: sha256 of the gzip blobs",
            stage("sha256", &gz_blobs),
        ),
        (
            "stage: sha256 of the zstd blobs",
            stage("sha256", &zst_blobs),
        ),
        ("stage: sha256 of the tars", stage("sha256", &tar_blobs)),
        (
            "stage: fs-verity of every file",
            stage("verity", &tar_blobs),
        ),
        (
            "stage: tar -xf of the tars",
            format!("mkdir root && for t in {tar_blobs}; do tar -xf $t -C root || exit 1; done"),
        ),
    ];
    for (name, script) in stage_specs {
        specs.push(Spec::new(name, "", script));
    }
    if let Some((small, large)) = &scaling {
        pulls(&mut specs, "300k files", &small.reference, false);
        pulls(&mut specs, "3 GiB file", &large.reference, false);
    }

    let mut warm = vec![layout.as_path()];
    if scaling.is_some() {
        warm.push(&scale_dir);
    }
    super::harness::warm_cache(&warm)?;
    let load_before = load();
    println!(
        "==> measuring {} specs, {} rounds (load average {load_before})",
        specs.len(),
        s.runs
    );
    let started = std::time::Instant::now();
    let rows = super::harness::measure_rounds(&s.scratch, s.runs, &specs)?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let report = Report {
        rows: &rows,
        big: &big,
        peer: peer.is_some(),
        scaling: scaling.as_ref(),
    };
    let mut out = String::new();
    let opts = if s.quick {
        " --quick".to_string()
    } else {
        format!(" --runs {}", s.runs)
    };
    let _ = writeln!(
        out,
        "Measured {} on {} by `cargo xtask bench{opts}` in {minutes:.0} min: medians of {} \
         rounds, every command once per round in the order below (cfs and composefs-rs \
         {COMPOSEFS_RS_VERSION} alternate), each on a fresh ext4 on a RAM-backed loop file. Load \
         average before {load_before}, after {}.\n",
        date(),
        machine(),
        s.runs,
        load()
    );
    report.write_fixture(&mut out);
    report.write_rows(&mut out);
    report.write_bounds(&mut out);
    report.write_scaling(&mut out);
    report.write_verdicts(&mut out);
    let _ = writeln!(
        out,
        "\nCommands (in the scratch directory; `$CFS` is target/release/cfsctl, `$PEER` \
         composefs-rs's cfsctl, `$OCI` the big layout, `$XTASK` a copy of the xtask binary, `$CACHE` the \
         benchmark's cache; the registry commands name its port of that run):\n"
    );
    let mut replace: Vec<(String, &str)> = vec![
        (gz_blobs.clone(), "$GZ"),
        (zst_blobs.clone(), "$ZST"),
        (tar_blobs.clone(), "$TARS"),
        (cfs.clone(), "$CFS"),
        (layout.display().to_string(), "$OCI"),
        (xtask.display().to_string(), "$XTASK"),
        (s.cache.display().to_string(), "$CACHE"),
    ];
    if let Some(p) = &peer {
        replace.push((p.display().to_string(), "$PEER"));
    }
    let short = |files: &str| files.replace(&layout.display().to_string(), "$OCI");
    let _ = writeln!(
        out,
        "- `$GZ`: {}\n- `$ZST`: {}\n- `$TARS`: {}",
        short(&gz_blobs),
        short(&zst_blobs),
        short(&tar_blobs)
    );
    for r in &rows {
        let mut cmd = r.command.clone();
        for (from, to) in &replace {
            cmd = cmd.replace(from.as_str(), to);
        }
        let _ = writeln!(out, "- {}: `{cmd}`", r.name);
    }
    println!("\n{out}");
    if s.write {
        super::harness::write_section(&s.root.join("docs/performance.md"), &out)?;
        println!("written to docs/performance.md");
    }
    Ok(())
}

/// The measured rows and what they were measured on.
struct Report<'a> {
    rows: &'a [Row],
    big: &'a Value,
    peer: bool,
    scaling: Option<&'a (scale::ScaleImage, scale::ScaleImage)>,
}

/// MiB (GNU time's KiB / 1024) to MB.
fn mb(mib: f64) -> f64 {
    mib * 1.048_576
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Report<'_> {
    fn row(&self, name: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.name == name && r.error.is_none())
    }

    fn wall(&self, name: &str) -> Option<f64> {
        self.row(name).map(|r| r.wall)
    }

    fn cpu(&self, name: &str) -> Option<f64> {
        self.row(name).map(|r| r.cpu)
    }

    fn write_fixture(&self, out: &mut String) {
        let size = |tag: &str| -> f64 {
            self.big["images"]
                .as_array()
                .and_then(|i| i.iter().find(|i| i["tag"] == tag))
                .and_then(|i| i["layers"].as_array())
                .map(|ls| ls.iter().filter_map(|l| l["size"].as_u64()).sum::<u64>())
                .unwrap_or(0) as f64
                / 1e6
        };
        let _ = writeln!(
            out,
            "The image (`cargo xtask fixtures --big DIR`): 4 layers, {} regular files, {:.0} MB of \
             tar, {:.0} MB gzip, {:.0} MB zstd.\n",
            self.big["files"].as_u64().unwrap_or(0),
            size(PLAIN),
            size(GZIP),
            size(ZSTD),
        );
    }

    fn write_rows(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "| measurement | wall s | CPU s (user+sys) | peak RSS MiB | on disk MiB |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for r in self.rows {
            if let Some(e) = &r.error {
                let e: String = e.chars().take(160).collect();
                let _ = writeln!(
                    out,
                    "| {} | failed: {} | | | |",
                    r.name,
                    e.replace('|', "/")
                );
                continue;
            }
            let disk = r
                .disk_mib
                .map(|d| format!("{d:.0}"))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.1} | {disk} |",
                r.name, r.wall, r.cpu, r.rss_mib
            );
        }
    }

    /// The stage sum and bound of a pull of `compression`.
    fn bound(&self, compression: &str) -> Option<(f64, f64)> {
        let stages = [
            format!("stage: inflate {compression}"),
            format!("stage: sha256 of the {compression} blobs"),
            "stage: sha256 of the tars".into(),
            "stage: fs-verity of every file".into(),
            "stage: tar -xf of the tars".into(),
        ];
        let sum = stages.iter().map(|n| self.cpu(n)).sum::<Option<f64>>()?;
        Some((sum, sum / cores() as f64))
    }

    fn write_bounds(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nThe bound of a pull: the CPU-seconds of its stages measured alone (inflate, sha256 \
             of the compressed and of the uncompressed bytes, fs-verity of every file, `tar -xf`), \
             summed, over {} cores.\n",
            cores()
        );
        let _ = writeln!(
            out,
            "| pull | stage sum CPU-s | bound s | pull wall s | pull / bound |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for (compression, what) in [
            ("gzip", "gzip oci:"),
            ("zstd", "zstd oci:"),
            ("gzip", "gzip registry"),
        ] {
            let Some((sum, bound)) = self.bound(compression) else {
                continue;
            };
            for tool in [CFS, PEER] {
                let name = pull_name(tool, what);
                if let Some(w) = self.wall(&name) {
                    let _ = writeln!(
                        out,
                        "| {name} | {sum:.2} | {bound:.2} | {w:.2} | {:.2}× |",
                        w / bound
                    );
                }
            }
        }
    }

    fn write_scaling(&self, out: &mut String) {
        let Some((small, large)) = self.scaling else {
            return;
        };
        let _ = writeln!(
            out,
            "\nScaling (uncompressed single-layer images): {} files of 1–2048 bytes ({:.0} MB \
             of tar); one file of {} bytes.\n",
            scale::SMALL_FILES,
            small.bytes as f64 / 1e6,
            scale::LARGE_BYTES
        );
        let _ = writeln!(out, "| pull | wall s | rate | peak RSS MiB |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for tool in [CFS, PEER] {
            if let Some(r) = self.row(&pull_name(tool, "300k files")) {
                let rate = scale::SMALL_FILES as f64 / r.wall;
                let _ = writeln!(
                    out,
                    "| {} | {:.2} | {rate:.0} files/s | {:.1} |",
                    r.name, r.wall, r.rss_mib
                );
            }
            if let Some(r) = self.row(&pull_name(tool, "3 GiB file")) {
                let rate = large.bytes as f64 / 1e6 / r.wall;
                let _ = writeln!(
                    out,
                    "| {} | {:.2} | {rate:.0} MB/s | {:.1} |",
                    r.name, r.wall, r.rss_mib
                );
            }
        }
    }

    fn write_verdicts(&self, out: &mut String) {
        let mut lines: Vec<(String, Option<f64>, f64)> = Vec::new();
        let cfs_gz = self.wall(&pull_name(CFS, "gzip oci:"));
        let cfs_zst = self.wall(&pull_name(CFS, "zstd oci:"));
        let peer_gz = self.wall(&pull_name(PEER, "gzip oci:"));
        let peer_zst = self.wall(&pull_name(PEER, "zstd oci:"));
        if self.peer {
            lines.push((
                "cold pull gzip oci: / composefs-rs (wall)".into(),
                ratio(cfs_gz, peer_gz),
                0.5,
            ));
        }
        lines.push((
            "cold pull gzip oci: / `gzip -dc` of the layers".into(),
            ratio(cfs_gz, self.wall("gzip -dc of the gzip layers")),
            0.75,
        ));
        if self.peer {
            lines.push((
                "cold pull zstd oci: / composefs-rs (wall)".into(),
                ratio(cfs_zst, peer_zst),
                0.5,
            ));
        }
        lines.push((
            "cold pull zstd oci: / `zstd -dc` of the layers".into(),
            ratio(cfs_zst, self.wall("zstd -dc of the zstd layers")),
            3.0,
        ));
        if self.peer {
            for what in ["gzip oci:", "zstd oci:"] {
                lines.push((
                    format!("CPU-s of a cold pull {what} / composefs-rs"),
                    ratio(
                        self.cpu(&pull_name(CFS, what)),
                        self.cpu(&pull_name(PEER, what)),
                    ),
                    0.7,
                ));
            }
        }
        lines.push((
            "cold pull gzip from the loopback registry / from oci:".into(),
            ratio(self.wall(&pull_name(CFS, "gzip registry")), cfs_gz),
            1.3,
        ));
        for (c, what) in [("gzip", "gzip oci:"), ("zstd", "zstd oci:")] {
            lines.push((
                format!("goal: cold pull {what} / its bound"),
                ratio(self.wall(&pull_name(CFS, what)), self.bound(c).map(|b| b.1)),
                1.2,
            ));
        }
        let _ = writeln!(out, "\n| target | measured | verdict |");
        let _ = writeln!(out, "|---|---:|---|");
        for (what, measured, limit) in lines {
            let (m, v) = match measured {
                Some(m) if m <= limit => (format!("{m:.2}×"), "met"),
                Some(m) => (format!("{m:.2}×"), "missed"),
                None => ("–".into(), "not measured"),
            };
            let _ = writeln!(out, "| {what} ≤ {limit}× | {m} | {v} |");
            println!("verdict: {what} ≤ {limit}×: {m}: {v}");
        }
        // Peak RSS over every cfs pull (big image, 300k files, 3 GiB file).
        let cfs_rss: Vec<(&str, f64)> = self
            .rows
            .iter()
            .filter(|r| r.name.starts_with("cfs ") && r.error.is_none())
            .map(|r| (r.name.as_str(), mb(r.rss_mib)))
            .collect();
        if let (Some(max), Some(min)) = (
            cfs_rss.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
            cfs_rss.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
        ) {
            let v = if max.1 <= 64.0 { "met" } else { "missed" };
            let _ = writeln!(
                out,
                "| peak RSS of a cfs pull ≤ 64 MB, flat | {:.1} MB ({}); least {:.1} MB ({}) | {v} |",
                max.1, max.0, min.1, min.0
            );
            println!(
                "verdict: peak RSS ≤ 64 MB: {:.1} MB ({}): {v}",
                max.1, max.0
            );
        }
    }
}
