//! `cargo xtask chaos`: SIGKILL `cfsctl oci pull` at random points, 100 times by default; after
//! every kill fsck must pass and the next pull must give the right image ID. Runs the ignored
//! test `chaos_many_random_kills` of `tests/faults_chaos.rs`.

use std::process::Command;

use anyhow::Result;

/// Arguments of `cargo xtask chaos`.
#[derive(clap::Args)]
pub struct Args {
    /// Kills to do.
    #[arg(long, default_value_t = 100)]
    rounds: u64,
    /// Seed of the kill times (default: the clock; printed, so a failure can be replayed).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs the chaos test.
pub fn run(args: Args) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::project_root())
        .args(["test", "-p", "cfsctl", "--test", "faults_chaos", "--"])
        .args([
            "--ignored",
            "--exact",
            "chaos_many_random_kills",
            "--nocapture",
        ])
        .env("CFS_CHAOS_ROUNDS", args.rounds.to_string());
    if let Some(seed) = args.seed {
        cmd.env("CFS_CHAOS_SEED", seed.to_string());
    }
    crate::run_command(&mut cmd)
}
