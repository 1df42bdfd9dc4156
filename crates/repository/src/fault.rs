//! Fault injection for the kill-safety tests. Built only with the `fault-injection` feature
//! (which cfsctl's tests turn on; normal builds compile [`point`] to nothing): with
//! `CFS_FAULT_KILL_AT=N` in the environment, the process SIGKILLs itself just before its Nth
//! step that changes the repository's names or removes an object (a symlink created or renamed
//! into place, a link or object unlinked, an object linked). A test runs a command with N = 1,
//! 2, … until it completes, and checks after each kill what the command left behind.

/// Marks the point just before one step that changes the repository.
#[cfg(feature = "fault-injection")]
pub(crate) fn point() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let Some(limit) = *LIMIT.get_or_init(|| {
        std::env::var("CFS_FAULT_KILL_AT")
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == limit {
        let me = rustix::process::getpid();
        // Only returns if the signal could not be sent; then the test sees the command finish.
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    }
}

/// Marks the point just before one step that changes the repository (no-op in this build).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point() {}
