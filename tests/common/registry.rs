//! A throwaway Docker registry for tests: Debian's `docker-registry` serving plain http on
//! 127.0.0.1 at a free port, storing into a directory the test owns; killed on drop. Or
//! ([`Registry::start_secure`]) serving TLS with a self-signed certificate (made with
//! `openssl`) and basic auth (an htpasswd line with a bcrypt hash from python's crypt(3)).
//!
//! Include it with `#[path = "common/registry.rs"] mod registry;` next to `mod common;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts a registry storing under `dir`; `None` (test skipped) when `docker-registry`
    /// is missing outside CI.
    pub fn start(dir: &Path) -> Option<Self> {
        Self::start_with(dir, None)
    }

    /// Starts a registry with TLS (certificate for 127.0.0.1, its CA as `DIR/certs/ca.crt`
    /// for `--cert-dir`) and basic auth for `user`:`password`.
    pub fn start_secure(dir: &Path, user: &str, password: &str) -> Option<Self> {
        for tool in ["openssl", "python3"] {
            if !crate::common::require_tool(tool) {
                return None;
            }
        }
        std::fs::create_dir_all(dir.join("certs")).expect("mkdir");
        let (key, cert) = (dir.join("key.pem"), dir.join("certs/ca.crt"));
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(st.success(), "openssl req failed");
        let hash = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                password,
            ])
            .output()
            .expect("run python3");
        assert!(hash.status.success(), "bcrypt via python3 failed");
        let htpasswd = dir.join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("{user}:{}\n", String::from_utf8_lossy(&hash.stdout).trim()),
        )
        .expect("htpasswd");
        let extra = format!(
            "auth:\n  htpasswd:\n    realm: cfs-test\n    path: {}\n",
            htpasswd.display()
        );
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Self::start_with(dir, Some((extra, tls)))
    }

    /// The CA directory of a secure registry (for `--cert-dir`).
    pub fn cert_dir(dir: &Path) -> std::path::PathBuf {
        dir.join("certs")
    }

    fn start_with(dir: &Path, secure: Option<(String, String)>) -> Option<Self> {
        if !crate::common::require_tool("docker-registry") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir).expect("mkdir");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 {}http:\n  addr: {addr}\n{}",
                dir.join("data").display(),
                secure.as_ref().map_or("", |s| s.0.as_str()),
                secure.as_ref().map_or("", |s| s.1.as_str()),
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let up = if secure.is_some() {
                // TLS: a listening socket is enough.
                TcpStream::connect(&reg.addr).is_ok()
            } else {
                reg.get("/v2/")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            };
            if up {
                return Some(reg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not answer on {}: {}",
            reg.addr,
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// A plain HTTP GET; the whole response.
    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// `docker://127.0.0.1:PORT/REPO`.
    pub fn reference(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
