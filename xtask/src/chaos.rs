//! `cargo xtask chaos`: SIGKILL `cfsctl oci pull` at random points, 100 times by default; after
//! every kill fsck must pass and the next pull must give the right image ID. Then `oci tag`,
//! `oci untag`, `oci rm`, `rmi`, gc, `create-image`, `oci create-image` and `oci pull` on
//! images of 200 files are killed at each of their steps in turn; after every kill fsck must
//! pass and removing every name, then gc, must leave nothing. Runs the ignored tests
//! (`chaos_many_random_kills`, `each_step_killed_with_bigger_images`) of
//! `tests/faults_chaos.rs`.

use std::process::Command;

use anyhow::Result;

/// Arguments of `cargo xtask chaos`.
#[derive(clap::Args)]
pub struct Args {
    /// Random kills of `oci pull` to do (the kill-point run always kills every step).
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
        .args(["--ignored", "--nocapture", "--test-threads", "1"])
        .env("CFS_CHAOS_ROUNDS", args.rounds.to_string());
    if let Some(seed) = args.seed {
        cmd.env("CFS_CHAOS_SEED", seed.to_string());
    }
    crate::run_command(&mut cmd)
}
