//! A real etcd cluster on loopback for the cluster-mode tests: N `etcd`
//! processes (Debian's `etcd-server`, installed by `scripts/test.sh`), each
//! with its own data directory, killed by PID and restartable on the same
//! directory and ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Health polls after a start (bounded: 400 × 50 ms).
const HEALTH_POLLS: u32 = 400;

/// One member: its command line and, while running, its process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// An etcd cluster whose members are processes of this test.
pub struct Etcd {
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

/// Attempts at starting a cluster (a port taken between choosing it and
/// etcd binding it fails a start; the next attempt chooses others).
const START_ATTEMPTS: u32 = 3;

/// A loopback port nobody listens on now, below Linux's ephemeral range
/// (32768..), so the `127.0.0.1:0` binds of other processes in the suite
/// are not handed it while etcd starts.
fn free_port() -> u16 {
    // Bounded: almost every port in the range is free.
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

impl Etcd {
    /// Starts `size` members as one new cluster and waits until each is
    /// healthy.
    pub fn start(size: usize) -> Etcd {
        for _ in 1..START_ATTEMPTS {
            if let Some(etcd) = Etcd::try_start(size) {
                return etcd;
            }
        }
        Etcd::try_start(size).expect("etcd started")
    }

    fn try_start(size: usize) -> Option<Etcd> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("e{i}");
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let data = dir.path().join(&name);
                Member {
                    args: vec![
                        format!("--name={name}"),
                        format!("--data-dir={}", data.display()),
                        format!("--listen-client-urls={client_url}"),
                        format!("--advertise-client-urls={client_url}"),
                        format!("--listen-peer-urls={peer_url}"),
                        format!("--initial-advertise-peer-urls={peer_url}"),
                        format!("--initial-cluster={initial_cluster}"),
                        "--initial-cluster-token=levee-test".to_string(),
                        "--initial-cluster-state=new".to_string(),
                        "--logger=zap".to_string(),
                        "--log-level=error".to_string(),
                    ],
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: *client,
                    child: None,
                }
            })
            .collect();
        for member in &mut members {
            member.spawn();
        }
        for member in &members {
            if let Err(log) = member.healthy() {
                eprintln!("etcd {} never became healthy:\n{log}", member.name);
                return None;
            }
        }
        Some(Etcd { members, _dir: dir })
    }

    /// Every member's client URL, as levee's `cluster.etcd` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }
}

impl Member {
    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd runs (scripts/test.sh installs etcd-server)");
        self.child = Some(child);
    }

    /// SIGKILL, by PID.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on its data directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until `/health` answers (one member's view; a member of a
    /// cluster without quorum is not healthy, so callers wait on all).
    pub fn wait_healthy(&self) {
        if let Err(log) = self.healthy() {
            panic!("etcd {} never became healthy:\n{log}", self.name);
        }
    }

    /// Polls `/health`; the member's log if it never answers healthy.
    fn healthy(&self) -> Result<(), String> {
        for _ in 0..HEALTH_POLLS {
            let answer = Command::new("curl")
                .args(["-s", "--max-time", "2"])
                .arg(format!("http://127.0.0.1:{}/health", self.client_port))
                .output();
            if let Ok(answer) = answer
                && String::from_utf8_lossy(&answer.stdout).contains(r#""health":"true""#)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
