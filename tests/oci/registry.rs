//! A `docker-registry serve` process (Debian's distribution registry 2.8,
//! installed by `scripts/ensure-registry.sh`) on a loopback port with its
//! own storage, for the tests that push and pull plugins (`tests/oci.rs`,
//! `tests/cluster.rs`). Killed by its PID on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::support::try_call;

/// Readiness polls of the registry and their spacing (bounded: 20 s).
const REGISTRY_POLLS: u32 = 400;
const REGISTRY_POLL_PAUSE: Duration = Duration::from_millis(50);

/// A `docker-registry serve` process on a loopback port, storing under a
/// temporary directory; killed by its PID on drop.
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "docker-registry is not installed: run `bash scripts/ensure-registry.sh` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let host = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {host}\n",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn docker-registry");
        Registry {
            child: Some(child),
            host,
            dir,
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..REGISTRY_POLLS {
            if let Some((StatusCode::OK, _, _)) =
                try_call(Method::GET, &format!("http://{}/v2/", self.host), &[], "").await
            {
                return;
            }
            tokio::time::sleep(REGISTRY_POLL_PAUSE).await;
        }
        panic!("docker-registry never answered; stderr:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Where the registry keeps blob `hex`'s bytes.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// SIGKILL by PID, and reap.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on (the OS's pick, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `levee plugin push FILE TARGET --json` (the registry is on loopback,
/// so plain HTTP): the pushed manifest's digest reference.
pub fn push(file: &Path, target: &str) -> String {
    let output = Command::new(crate::support::LEVEE)
        .args(["plugin", "push"])
        .arg(file)
        .arg(target)
        .arg("--json")
        .env("LEVEE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run levee plugin push");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("push answer is JSON");
    answer["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("no reference in {answer}"))
        .to_string()
}
