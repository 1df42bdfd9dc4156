//! The repository lock: `flock` on `REPO/lock`, a regular file of mode 0600 owned by the
//! repository's owner, so a user who cannot write the repository cannot open it to hold the
//! lock (the directory itself, which anyone who can read the repository may open, is not
//! locked). Writers hold it shared, gc and repair exclusively. Taking it never waits forever:
//! a non-blocking `flock` is retried with backoff up to a timeout (`CFS_LOCK_TIMEOUT` seconds,
//! default 60), then fails naming the lock file and its holders from `/proc/locks`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

/// The lock file's name in the repository.
pub const LOCK_FILE: &str = "lock";

/// The environment variable that sets how long to wait for the lock, in seconds.
pub const LOCK_TIMEOUT_ENV: &str = "CFS_LOCK_TIMEOUT";

/// The default wait for the lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

// Defined beside `Error`, whose lock timeout names it, so that `error` needs nothing from here.
pub use crate::error::LockMode;

/// The open lock file.
pub(crate) struct RepoLock {
    fd: OwnedFd,
    path: PathBuf,
    timeout: Duration,
}

/// The wait from `CFS_LOCK_TIMEOUT` (seconds, fractions allowed), else the default.
fn timeout_from_env() -> Result<Duration> {
    match std::env::var(LOCK_TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_LOCK_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| Error::Lock {
                path: PathBuf::from(LOCK_TIMEOUT_ENV),
                message: format!("{v:?} is not a number of seconds"),
            }),
    }
}

impl RepoLock {
    /// Opens (creating, mode 0600, if missing) `lock` in the repository `root` and checks that
    /// it is a regular file owned by the repository's owner and not accessible to others.
    pub(crate) fn open(root: BorrowedFd<'_>, repo: &Path) -> Result<Self> {
        let path = repo.join(LOCK_FILE);
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(root, LOCK_FILE, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // A repository from before the lock file, or one being created.
                match rustix::fs::openat(
                    root,
                    LOCK_FILE,
                    flags | OFlags::CREATE | OFlags::EXCL,
                    Mode::from_raw_mode(0o600),
                ) {
                    Ok(fd) => {
                        // Root creating it in someone else's repository: give it to them.
                        let owner = rustix::fs::fstat(root).ctx("checking", repo)?;
                        if rustix::process::geteuid().is_root() {
                            rustix::fs::fchown(
                                &fd,
                                Some(rustix::fs::Uid::from_raw(owner.st_uid)),
                                Some(rustix::fs::Gid::from_raw(owner.st_gid)),
                            )
                            .ctx("giving the lock file to the repository's owner", &path)?;
                        }
                        fd
                    }
                    Err(Errno::EXIST) => rustix::fs::openat(root, LOCK_FILE, flags, Mode::empty())
                        .ctx("opening the lock file", &path)?,
                    Err(e) => return Err(e).ctx("creating the lock file", &path),
                }
            }
            Err(Errno::LOOP) => {
                return Err(Error::Lock {
                    path,
                    message: "is a symlink, not the repository's lock file".into(),
                });
            }
            Err(e) => return Err(e).ctx("opening the lock file", &path),
        };
        let st = rustix::fs::fstat(&fd).ctx("checking", &path)?;
        let root_st = rustix::fs::fstat(root).ctx("checking", repo)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Error::Lock {
                path,
                message: format!("is {}, not a regular file", crate::layout::describe(kind)),
            });
        }
        if st.st_uid != root_st.st_uid {
            return Err(Error::Lock {
                path,
                message: format!(
                    "is owned by uid {}, not by the repository's owner (uid {}): anyone who can \
                     open it can hold the lock",
                    st.st_uid, root_st.st_uid
                ),
            });
        }
        if st.st_mode & 0o077 != 0 {
            // Others could open it to hold the lock: only the owner may fix that.
            if rustix::process::geteuid().as_raw() == st.st_uid {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).ctx("restricting", &path)?;
            } else {
                return Err(Error::Lock {
                    path,
                    message: format!(
                        "has mode {:o}: others can open it to hold the lock",
                        st.st_mode & 0o7777
                    ),
                });
            }
        }
        Ok(Self {
            fd,
            path,
            timeout: timeout_from_env()?,
        })
    }

    /// Tries once, without waiting; whether the lock was taken.
    pub(crate) fn try_lock(&self, mode: LockMode) -> Result<bool> {
        let op = match mode {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        match rustix::fs::flock(&self.fd, op) {
            Ok(()) => Ok(true),
            Err(Errno::WOULDBLOCK) => Ok(false),
            Err(Errno::INTR) => Ok(false),
            Err(e) => Err(e).ctx("locking", &self.path),
        }
    }

    /// Takes the lock in `mode`, retrying with backoff (1 ms doubling to 100 ms) for up to the
    /// timeout; then fails naming the lock file and who holds it.
    pub(crate) fn lock(&self, mode: LockMode) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if self.try_lock(mode)? {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= self.timeout {
                return Err(Error::LockTimeout {
                    path: self.path.clone(),
                    mode,
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    holders: self.holders(),
                });
            }
            std::thread::sleep(pause.min(self.timeout.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Who holds a lock on the lock file, from `/proc/locks` and `/proc/PID/comm` (as far as
    /// this process may see): `pid 123 (cfsctl) holds WRITE`, or why it is unknown.
    pub(crate) fn holders(&self) -> String {
        let Ok(st) = rustix::fs::fstat(&self.fd) else {
            return "holder unknown".into();
        };
        let dev = format!(
            "{:02x}:{:02x}:{}",
            rustix::fs::major(st.st_dev),
            rustix::fs::minor(st.st_dev),
            st.st_ino
        );
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return "holder unknown (/proc/locks unreadable)".into();
        };
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for line in locks.lines() {
            // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; blocked waiters have `->`.
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) == Some(&"->") || f.len() < 6 {
                continue;
            }
            if f[5] != dev || f[4] == me {
                continue;
            }
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", f[4]))
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            found.push(format!("pid {} ({comm}) holds {} {}", f[4], f[1], f[3]));
        }
        if found.is_empty() {
            "holder not visible in /proc/locks".into()
        } else {
            found.join(", ")
        }
    }
}

impl AsFd for RepoLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
