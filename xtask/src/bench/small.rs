//! `cargo xtask bench --small`: the earlier pull benchmark on the small Debian fixtures
//! (`debian-gzip`, `debian-zstd`, `debian-small`: 310 MiB, 6k files), against `gzip -dc`,
//! `zstd -dc`, skopeo and umoci, with the warm re-pull, fsck, compute-id and mount costs. It
//! prints its table (docs/performance.md keeps its last one under "Earlier figures").

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::harness::{Scratch, Spec, date, layer_blobs, machine, measure_rounds};
use crate::command_output;

/// Measures and prints; `bin` is the cfsctl measured, `fixtures` the small fixtures' directory.
pub fn run(bin: &Path, fixtures: &Path, scratch: &Scratch, n: usize) -> Result<()> {
    let fixtures_dir = fixtures;
    let fixtures: Value = serde_json::from_slice(
        &fs::read(fixtures_dir.join("fixtures.json")).context("reading fixtures.json")?,
    )?;
    let layout = PathBuf::from(
        fixtures["layout"]
            .as_str()
            .context("fixtures.json: layout")?,
    );
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

    let warm_setup = format!("{init} && {}", pull("debian-gzip"));
    let mut specs = vec![
        Spec::new(
            "gzip -dc of debian-gzip's layers",
            "",
            cat("debian-gzip", "gzip")?,
        ),
        Spec::new(
            "cfs cold pull debian-gzip",
            init.clone(),
            pull("debian-gzip"),
        )
        .disk("repo"),
        Spec::new(
            "zstd -dc of debian-zstd's layers",
            "",
            cat("debian-zstd", "zstd")?,
        ),
        Spec::new(
            "cfs cold pull debian-zstd",
            init.clone(),
            pull("debian-zstd"),
        )
        .disk("repo"),
        Spec::new(
            "cfs warm re-pull debian-gzip",
            warm_setup.clone(),
            pull("debian-gzip"),
        ),
        Spec::new(
            "cfs pull debian-small (base layer stored)",
            warm_setup.clone(),
            pull("debian-small"),
        )
        .disk("repo"),
        Spec::new(
            "cfs fsck after debian-gzip",
            warm_setup.clone(),
            format!("{cfs} --repo repo fsck"),
        ),
    ];
    // Optional steps: only where this cfsctl has the commands.
    let help = command_output(Command::new(bin).args(["oci", "--help"])).unwrap_or_default();
    let help = String::from_utf8_lossy(&help);
    if help.contains("compute-id") {
        specs.push(Spec::new(
            "cfs oci compute-id debian-gzip",
            warm_setup.clone(),
            format!("{cfs} --repo repo oci compute-id debian-gzip"),
        ));
    }
    if help.contains("mount") {
        specs.push(Spec::new(
            "cfs oci mount + full walk",
            format!("{warm_setup} && mkdir -p m"),
            format!("{cfs} --repo repo oci mount debian-gzip m && find m -type f -exec cat {{}} + >/dev/null; umount m"),
        ));
    }
    specs.push(
        Spec::new(
            "skopeo copy debian-gzip to oci:",
            "",
            format!("skopeo copy -q {} oci:copy:x", oci("debian-gzip")),
        )
        .disk("copy"),
    );
    specs.push(
        Spec::new(
            "umoci unpack debian-gzip",
            "",
            format!(
                "umoci unpack --image {}:debian-gzip bundle",
                layout.display()
            ),
        )
        .disk("bundle"),
    );

    let rows = measure_rounds(scratch, n, &specs)?;

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
    let date = date();
    let _ = writeln!(
        table,
        "Measured {date} on {} by `cargo xtask bench --small --runs {n}`: medians of {n} runs, each on a fresh ext4 on a RAM-backed loop file.\n",
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
    Ok(())
}
