//! A loopback registry for the benchmark: Debian's `docker-registry` serving plain http on
//! 127.0.0.1 at a free port (as tests/common/registry.rs starts it for the tests), storing in a
//! directory of the benchmark's cache, with images pushed into it by skopeo. Killed on drop.
//!
//! cfs pulls from it with `--tls-verify=false`; composefs-rs's cfsctl has no such flag, so the
//! registry is also declared insecure in a registries.conf of its own, which the `skopeo` that
//! composefs-rs runs (found on `PATH` by containers-image-proxy) is handed by a wrapper script
//! (`skopeo --registries-conf FILE "$@"`): Debian's skopeo 1.9 ignores
//! `CONTAINERS_REGISTRIES_CONF`. [`Registry::env`] puts the wrapper first on `PATH`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::run_command;

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    bin: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `dir` (emptied first) and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port on 127.0.0.1")?
            .port();
        let addr = format!("127.0.0.1:{port}");
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .context("cannot write the registry config")?;
        let conf = dir.join("registries.conf");
        fs::write(
            &conf,
            format!("[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n"),
        )
        .context("cannot write registries.conf")?;
        let skopeo = crate::find_program("skopeo").context("skopeo not found")?;
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
        let wrapper = bin.join("skopeo");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} --registries-conf {} \"$@\"\n",
                skopeo.display(),
                conf.display()
            ),
        )
        .context("cannot write the skopeo wrapper")?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
            .context("cannot chmod the skopeo wrapper")?;
        let log = fs::File::create(dir.join("registry.log")).context("registry log")?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("registry log")?)
            .stderr(log)
            .spawn()
            .context("cannot start docker-registry")?;
        let reg = Registry { child, addr, bin };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reg.answers() {
                return Ok(reg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "docker-registry did not answer on {}: {}",
            reg.addr,
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        )
    }

    /// Whether `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut out = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut out).is_ok()
            && out.starts_with("HTTP/1.1 200")
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.addr)
    }

    /// Pushes `source` (a skopeo reference) as `repo_tag`, blobs as they are.
    pub fn push(&self, source: &str, repo_tag: &str) -> Result<()> {
        run_command(
            Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(source)
                .arg(self.reference(repo_tag)),
        )
    }

    /// The environment assignment that makes the skopeo found on `PATH` treat this registry as
    /// insecure, as a shell prefix.
    pub fn env(&self) -> String {
        format!("PATH={}:$PATH", self.bin.display())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
