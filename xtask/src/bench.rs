//! `cargo xtask bench`: the end-to-end pull benchmark. Measures, in one run and as medians of
//! several repetitions, cfs against its bounds and its peers on the Debian fixture images, and
//! writes the table into docs/performance.md (between `bench:start`/`bench:end` markers) with
//! the date, the machine and the commands.
//!
//! Every measured pull gets a fresh ext4 filesystem on a RAM-backed loop file
//! (DESIGN.md §8): on this machine's root filesystem the same pull varies 3× from run to run.
//! Wall time, user+sys CPU and peak RSS come from GNU time; bytes on disk from `du`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{command_output, ensure_tools, project_root, run_command};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Don't write docs/performance.md, only print.
    #[arg(long)]
    no_write: bool,
    /// Size of the RAM-backed scratch filesystem.
    #[arg(long, default_value = "6G")]
    scratch_size: String,
    /// Instead: peak memory of pull/create-image/mount/fsck/gc on one layer of this many
    /// empty files (docs/performance.md, "Memory with many files").
    #[arg(long, value_name = "N")]
    many_files: Option<usize>,
    /// With --many-files: measure this cfsctl instead of building target/release/cfsctl.
    #[arg(long, requires = "many_files")]
    cfsctl: Option<PathBuf>,
    /// With --many-files: keep the temporary directory (printed).
    #[arg(long, requires = "many_files")]
    keep: bool,
}

/// One measured command run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// The medians of a measurement.
struct Row {
    name: String,
    command: String,
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    disk_mib: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Runs a shell command under GNU time; fails if it fails.
fn timed(script: &str, cwd: &Path) -> Result<Sample> {
    let out = cwd.join(".time");
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&out)
        .args(["sh", "-c", script])
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run `{script}`"))?;
    ensure!(status.success(), "`{script}` failed: {status}");
    let text = fs::read_to_string(&out).context("reading GNU time's output")?;
    let last = text.lines().last().unwrap_or_default();
    let f: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    ensure!(f.len() == 4, "unexpected GNU time output {text:?}");
    Ok(Sample {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_kib: f[3] as u64,
    })
}

/// A fresh ext4 on a RAM-backed loop file, mounted at `mnt`.
struct Scratch {
    img: PathBuf,
    mnt: PathBuf,
    size: String,
}

impl Scratch {
    fn fresh(&self) -> Result<()> {
        self.unmount();
        let _ = fs::remove_file(&self.img);
        run_command(
            Command::new("truncate")
                .args(["-s", &self.size])
                .arg(&self.img),
        )?;
        run_command(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-O", "verity"])
                .arg(&self.img),
        )?;
        fs::create_dir_all(&self.mnt)?;
        run_command(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&self.img)
                .arg(&self.mnt),
        )
    }

    fn unmount(&self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.unmount();
        let _ = fs::remove_file(&self.img);
    }
}

fn du_mib(path: &Path) -> Result<f64> {
    let out = command_output(Command::new("du").args(["-s", "--block-size=1"]).arg(path))?;
    let text = String::from_utf8_lossy(&out);
    let bytes: f64 = text
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .context("parsing du output")?;
    Ok(bytes / (1024.0 * 1024.0))
}

/// Measures `runs` repetitions: `setup` (untimed, on a fresh scratch fs) then `script` (timed).
fn measure(
    scratch: &Scratch,
    runs: usize,
    name: &str,
    setup: &str,
    script: &str,
    disk: Option<&str>,
) -> Result<Row> {
    let mut samples = Vec::new();
    let mut disk_mib = None;
    for _ in 0..runs {
        scratch.fresh()?;
        if !setup.is_empty() {
            run_command(
                Command::new("sh")
                    .arg("-c")
                    .arg(setup)
                    .current_dir(&scratch.mnt),
            )?;
        }
        samples.push(timed(script, &scratch.mnt)?);
        if let Some(d) = disk {
            disk_mib = Some(du_mib(&scratch.mnt.join(d))?);
        }
    }
    println!("  {name}: {samples:?}");
    Ok(Row {
        name: name.to_owned(),
        command: script.to_owned(),
        wall: median(samples.iter().map(|s| s.wall).collect()),
        cpu: median(samples.iter().map(|s| s.cpu).collect()),
        rss_mib: median(samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect()),
        disk_mib,
    })
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = command_output(Command::new("uname").arg("-r"))
        .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {kernel}")
}

/// Layer blob paths of a fixture image, from fixtures.json.
fn layer_blobs(fixtures: &Value, layout: &Path, tag: &str) -> Result<Vec<PathBuf>> {
    let images = fixtures["images"]
        .as_array()
        .context("fixtures.json: no images")?;
    let image = images
        .iter()
        .find(|i| i["tag"] == tag)
        .with_context(|| format!("fixtures.json: no image {tag}"))?;
    let layers = image["layers"]
        .as_array()
        .context("fixtures.json: no layers")?;
    layers
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().context("layer digest")?;
            let hex = d.strip_prefix("sha256:").context("sha256 digest")?;
            Ok(layout.join("blobs/sha256").join(hex))
        })
        .collect()
}

/// Runs the benchmark.
pub fn run(args: Args) -> Result<()> {
    if let Some(files) = args.many_files {
        return crate::many_files::run(files, args.cfsctl, args.keep);
    }
    ensure!(
        rustix::process::geteuid().is_root(),
        "the benchmark mounts scratch filesystems: run it as root"
    );
    ensure_tools(&[
        ("time", "time"),
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        ("mkfs.ext4", "e2fsprogs"),
    ])?;
    let root = project_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_command(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["xtask", "fixtures"]),
    )?;
    run_command(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "cfsctl",
    ]))?;
    // The binary `cargo build` just made: $CARGO_TARGET_DIR (relative to the workspace) if
    // set, else <workspace>/target.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    let bin = target_dir.join("release/cfsctl");
    let fixtures: Value = serde_json::from_slice(
        &fs::read(root.join("target/fixtures/fixtures.json")).context("reading fixtures.json")?,
    )?;
    let layout = PathBuf::from(
        fixtures["layout"]
            .as_str()
            .context("fixtures.json: layout")?,
    );
    let scratch = Scratch {
        img: PathBuf::from("/dev/shm/cfs-bench.img"),
        mnt: root.join("target/bench/mnt"),
        size: args.scratch_size.clone(),
    };
    let n = args.runs.max(1);
    let cfs = bin.display().to_string();
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let init = format!("{cfs} --repo repo init --insecure >/dev/null");
    let pull = |tag: &str| format!("{cfs} --repo repo oci pull -q {} {tag}", oci(tag));
    let cat = |tag: &str, tool: &str| -> Result<String> {
        let blobs = layer_blobs(&fixtures, &layout, tag)?;
        Ok(blobs
            .iter()
            .map(|b| format!("{tool} -dc {} >/dev/null", b.display()))
            .collect::<Vec<_>>()
            .join(" && "))
    };

    // (name, untimed setup, timed command, directory whose size is reported)
    let warm_setup = format!("{init} && {}", pull("debian-gzip"));
    let mut specs: Vec<(String, String, String, Option<&str>)> = vec![
        (
            "gzip -dc of debian-gzip's layers".into(),
            String::new(),
            cat("debian-gzip", "gzip")?,
            None,
        ),
        (
            "cfs cold pull debian-gzip".into(),
            init.clone(),
            pull("debian-gzip"),
            Some("repo"),
        ),
        (
            "zstd -dc of debian-zstd's layers".into(),
            String::new(),
            cat("debian-zstd", "zstd")?,
            None,
        ),
        (
            "cfs cold pull debian-zstd".into(),
            init.clone(),
            pull("debian-zstd"),
            Some("repo"),
        ),
        (
            "cfs warm re-pull debian-gzip".into(),
            warm_setup.clone(),
            pull("debian-gzip"),
            None,
        ),
        (
            "cfs pull debian-small (base layer stored)".into(),
            warm_setup.clone(),
            pull("debian-small"),
            Some("repo"),
        ),
        (
            "cfs fsck after debian-gzip".into(),
            warm_setup.clone(),
            format!("{cfs} --repo repo fsck"),
            None,
        ),
    ];
    // Optional steps: only where this cfsctl has the commands.
    let help = command_output(Command::new(&bin).args(["oci", "--help"])).unwrap_or_default();
    let help = String::from_utf8_lossy(&help);
    if help.contains("compute-id") {
        specs.push((
            "cfs oci compute-id debian-gzip".into(),
            warm_setup.clone(),
            format!("{cfs} --repo repo oci compute-id debian-gzip"),
            None,
        ));
    }
    if help.contains("mount") {
        specs.push((
            "cfs oci mount + full walk".into(),
            format!("{warm_setup} && mkdir -p m"),
            format!("{cfs} --repo repo oci mount debian-gzip m && find m -type f -exec cat {{}} + >/dev/null; umount m"),
            None,
        ));
    }
    specs.push((
        "skopeo copy debian-gzip to oci:".into(),
        String::new(),
        format!("skopeo copy -q {} oci:copy:x", oci("debian-gzip")),
        Some("copy"),
    ));
    specs.push((
        "umoci unpack debian-gzip".into(),
        String::new(),
        format!(
            "umoci unpack --image {}:debian-gzip bundle",
            layout.display()
        ),
        Some("bundle"),
    ));

    println!("==> measuring ({n} runs each, medians)");
    let rows = specs
        .iter()
        .map(|(name, setup, script, disk)| measure(&scratch, n, name, setup, script, *disk))
        .collect::<Result<Vec<_>>>()?;

    // Targets from the performance issue, as ratios measured in this run.
    let wall = |name: &str| {
        rows.iter()
            .find(|r| r.name.starts_with(name))
            .map(|r| r.wall)
    };
    let mut verdicts = String::new();
    if let (Some(pull), Some(gz)) = (wall("cfs cold pull debian-gzip"), wall("gzip -dc")) {
        let _ = writeln!(
            verdicts,
            "- cold gzip pull / `gzip -dc`: {:.2}× (target ≤ 1.00×)",
            pull / gz
        );
    }
    if let (Some(pull), Some(zs)) = (wall("cfs cold pull debian-zstd"), wall("zstd -dc")) {
        let _ = writeln!(
            verdicts,
            "- cold zstd pull / `zstd -dc`: {:.2}× (target ≤ 3.00×)",
            pull / zs
        );
    }
    if let Some(w) = wall("cfs warm re-pull") {
        let _ = writeln!(
            verdicts,
            "- warm re-pull: {:.0} ms (target ≤ 150 ms)",
            w * 1000.0
        );
    }
    if let (Some(pull), Some(sk)) = (wall("cfs cold pull debian-gzip"), wall("skopeo copy")) {
        let _ = writeln!(
            verdicts,
            "- skopeo copy / cfs cold gzip pull: {:.2}×",
            sk / pull
        );
    }
    if let (Some(pull), Some(um)) = (wall("cfs cold pull debian-gzip"), wall("umoci unpack")) {
        let _ = writeln!(
            verdicts,
            "- umoci unpack / cfs cold gzip pull: {:.2}×",
            um / pull
        );
    }
    let peak = rows
        .iter()
        .filter(|r| r.name.starts_with("cfs"))
        .map(|r| r.rss_mib)
        .fold(0.0, f64::max);
    let _ = writeln!(
        verdicts,
        "- peak RSS of any cfs command: {peak:.1} MiB (target ≤ 64 MB)"
    );

    let mut table = String::new();
    let date = command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        table,
        "Measured {date} on {} by `cargo xtask bench --runs {n}`: medians of {n} runs, each on a fresh ext4 on a RAM-backed loop file.\n",
        machine()
    );
    let _ = writeln!(
        table,
        "| measurement | wall s | CPU s (user+sys) | peak RSS MiB | on disk MiB |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|");
    for r in &rows {
        let disk = r
            .disk_mib
            .map(|d| format!("{d:.0}"))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            table,
            "| {} | {:.3} | {:.2} | {:.1} | {disk} |",
            r.name, r.wall, r.cpu, r.rss_mib
        );
    }
    let _ = writeln!(
        table,
        "\n{verdicts}\nCommands (run in the scratch directory; `$CFS` is target/release/cfsctl, `$OCI` the fixture layout):\n"
    );
    for r in &rows {
        let cmd = r
            .command
            .replace(&cfs, "$CFS")
            .replace(&layout.display().to_string(), "$OCI");
        let _ = writeln!(table, "- {}: `{cmd}`", r.name);
    }
    println!("\n{table}");
    if !args.no_write {
        write_section(&root.join("docs/performance.md"), &table)?;
        println!("written to docs/performance.md");
    }
    Ok(())
}

/// Replaces the text between the bench markers in docs/performance.md (appending a section if
/// the markers are absent).
fn write_section(path: &Path, table: &str) -> Result<()> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let doc = fs::read_to_string(path).unwrap_or_else(|_| "# Performance\n".into());
    let new = match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) if s < e => format!("{}{START}\n{table}{}", &doc[..s], &doc[e..]),
        (None, None) => {
            format!("{doc}\n## Pull benchmark (`cargo xtask bench`)\n\n{START}\n{table}{END}\n")
        }
        _ => bail!("{}: bench markers out of order", path.display()),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
