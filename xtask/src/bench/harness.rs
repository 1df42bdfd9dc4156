//! The measuring harness of `cargo xtask bench`: every measured command runs under GNU time
//! (wall time, user+sys CPU of it and all its waited-for children, peak RSS of the largest
//! process) in a fresh ext4 filesystem on a RAM-backed loop file (DESIGN.md §8: on this
//! machine's root filesystem the same pull varies 3× from run to run). Measurements are taken
//! in rounds, every spec once per round, so that two tools compared are measured alternately
//! under the same load; the medians are reported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{command_output, run_command};

/// One measured command run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub rss_kib: u64,
}

/// What to measure: `setup` (untimed, in a fresh scratch filesystem) then `script` (timed),
/// both `sh -c` scripts run in the scratch directory.
pub struct Spec {
    pub name: String,
    pub setup: String,
    pub script: String,
    /// A directory (relative to the scratch) whose size on disk is reported.
    pub disk: Option<&'static str>,
    /// A failure is reported in the table instead of ending the run (a peer that cannot do
    /// something).
    pub may_fail: bool,
}

impl Spec {
    pub fn new(
        name: impl Into<String>,
        setup: impl Into<String>,
        script: impl Into<String>,
    ) -> Self {
        Spec {
            name: name.into(),
            setup: setup.into(),
            script: script.into(),
            disk: None,
            may_fail: false,
        }
    }

    pub fn disk(mut self, dir: &'static str) -> Self {
        self.disk = Some(dir);
        self
    }

    pub fn may_fail(mut self) -> Self {
        self.may_fail = true;
        self
    }
}

/// The medians of a measurement (or why it failed).
pub struct Row {
    pub name: String,
    pub command: String,
    pub wall: f64,
    pub cpu: f64,
    pub rss_mib: f64,
    pub disk_mib: Option<f64>,
    pub error: Option<String>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Runs a shell command under GNU time in `cwd`; fails (with the end of its stderr) if it
/// fails.
pub fn timed(script: &str, cwd: &Path) -> Result<Sample> {
    let out = cwd.join(".time");
    let err_path = cwd.join(".stderr");
    let err = fs::File::create(&err_path).context("creating the stderr file")?;
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&out)
        .args(["sh", "-c", script])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .with_context(|| format!("cannot run `{script}`"))?;
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        // The message, not a backtrace: its lines that start at the margin and are not frames.
        let message: String = stderr
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .filter(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .take(6)
            .collect::<Vec<_>>()
            .join(" | ");
        bail!("{status}: {message}");
    }
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
        // GNU time prints an integer count of KiB.
        rss_kib: f[3] as u64,
    })
}

/// A fresh ext4 on a RAM-backed loop file, mounted at `mnt`.
pub struct Scratch {
    pub img: PathBuf,
    pub mnt: PathBuf,
    pub size: String,
}

impl Scratch {
    pub fn fresh(&self) -> Result<()> {
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
        let _ = Command::new("umount")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.unmount();
        let _ = fs::remove_file(&self.img);
        let _ = fs::remove_dir(&self.mnt);
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

/// Measures every spec `runs` times, in rounds (spec 1, spec 2, ..., then again), each run on a
/// fresh scratch filesystem; the rows in spec order. A spec that may fail and fails is not run
/// again; any other failure ends the measurement.
pub fn measure_rounds(scratch: &Scratch, runs: usize, specs: &[Spec]) -> Result<Vec<Row>> {
    let mut samples: Vec<Vec<Sample>> = specs.iter().map(|_| Vec::new()).collect();
    let mut disks: Vec<Option<f64>> = vec![None; specs.len()];
    let mut errors: Vec<Option<String>> = vec![None; specs.len()];
    for round in 0..runs {
        println!(
            "==> round {} of {runs} (load average {})",
            round + 1,
            load()
        );
        for (i, spec) in specs.iter().enumerate() {
            if errors[i].is_some() {
                continue;
            }
            match run_once(scratch, spec) {
                Ok((s, disk)) => {
                    println!(
                        "  {}: {:.2} s wall, {:.2} CPU-s, {} MiB",
                        spec.name,
                        s.wall,
                        s.cpu,
                        s.rss_kib / 1024
                    );
                    samples[i].push(s);
                    if disk.is_some() {
                        disks[i] = disk;
                    }
                }
                Err(e) if spec.may_fail => {
                    println!("  {}: FAILED: `{}`: {e:#}", spec.name, spec.script);
                    errors[i] = Some(format!("{e:#}"));
                }
                Err(e) => {
                    return Err(e.context(format!("measuring {}: `{}`", spec.name, spec.script)));
                }
            }
        }
    }
    Ok(specs
        .iter()
        .zip(samples)
        .zip(disks.into_iter().zip(errors))
        .map(|((spec, s), (disk_mib, error))| Row {
            name: spec.name.clone(),
            command: spec.script.clone(),
            wall: median(s.iter().map(|s| s.wall).collect()),
            cpu: median(s.iter().map(|s| s.cpu).collect()),
            rss_mib: median(s.iter().map(|s| s.rss_kib as f64 / 1024.0).collect()),
            disk_mib,
            error,
        })
        .collect())
}

fn run_once(scratch: &Scratch, spec: &Spec) -> Result<(Sample, Option<f64>)> {
    scratch.fresh()?;
    if !spec.setup.is_empty() {
        run_command(
            Command::new("sh")
                .arg("-c")
                .arg(&spec.setup)
                .current_dir(&scratch.mnt),
        )?;
    }
    let sample = timed(&spec.script, &scratch.mnt)?;
    let disk = match spec.disk {
        Some(d) => Some(du_mib(&scratch.mnt.join(d))?),
        None => None,
    };
    Ok((sample, disk))
}

/// Reads every file of the directories `dirs` once, so that the measured commands find them in
/// the page cache (the first read from this machine's disk costs more than the pull).
pub fn warm_cache(dirs: &[&Path]) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e.with_context(|| format!("cannot list {}", d.display()))?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let mut f = fs::File::open(e.path())
                    .with_context(|| format!("cannot open {}", e.path().display()))?;
                while std::io::Read::read(&mut f, &mut buf)? > 0 {}
            }
        }
    }
    Ok(())
}

/// "N cores, CPU model, Linux release".
pub fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = command_output(Command::new("uname").arg("-r"))
        .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
        .unwrap_or_default();
    format!("{} cores, {cpu}, Linux {kernel}", cores())
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The current UTC date and time.
pub fn date() -> String {
    command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
        .unwrap_or_default()
}

/// Layer blob paths of the image `tag`, from a fixtures listing (fixtures.json or big.json).
pub fn layer_blobs(listing: &Value, layout: &Path, tag: &str) -> Result<Vec<PathBuf>> {
    let images = listing["images"]
        .as_array()
        .context("fixture listing: no images")?;
    let image = images
        .iter()
        .find(|i| i["tag"] == tag)
        .with_context(|| format!("fixture listing: no image {tag}"))?;
    let layers = image["layers"]
        .as_array()
        .context("fixture listing: no layers")?;
    layers
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().context("layer digest")?;
            let hex = d.strip_prefix("sha256:").context("sha256 digest")?;
            Ok(layout.join("blobs/sha256").join(hex))
        })
        .collect()
}

/// `cargo build --release -p cfsctl` in `root`; the binary it made ($CARGO_TARGET_DIR,
/// relative to the workspace, if set, else `<workspace>/target`).
pub fn build_cfsctl(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_command(Command::new(&cargo).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "cfsctl",
    ]))?;
    Ok(target_dir(root).join("release/cfsctl"))
}

/// $CARGO_TARGET_DIR (relative to the workspace) if set, else `<workspace>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
}

/// Replaces the text between the bench markers in docs/performance.md (appending a section if
/// the markers are absent).
pub fn write_section(path: &Path, table: &str) -> Result<()> {
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
