//! The demo's child processes: `levee kv-replica` replicas and the
//! `levee serve` in front of them, each a real process with its output in
//! the demo directory, killed by PID when dropped unless detached; and the
//! wait for levee to be ready, narrated while it compiles plugins.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;

use levee::upstream::UpstreamClient;

use super::setup::{Plugins, config};
use super::{NODE_IDS, READY_MS_MAX, START_MS_MAX};

/// A child process, killed by PID when dropped unless detached.
pub(super) struct Process {
    name: String,
    pub(super) child: Child,
    pub(super) address: String,
    detached: bool,
}

impl Process {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if self.detached {
            return;
        }
        // SAFETY: kill(2) with a PID we spawned and have not reaped yet, so
        // it cannot have been reused for another process.
        unsafe {
            libc::kill(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
        self.detached = true;
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    fn terminate(&mut self, grace: Duration) {
        if self.detached {
            return;
        }
        // SAFETY: as in `kill`.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.detached = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(process = %self.name, "did not stop within its grace period; killing");
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The demo's processes and its client-side statistics.
pub(super) struct Cluster {
    pub(super) dir: PathBuf,
    pub(super) binary: PathBuf,
    pub(super) client: UpstreamClient,
    pub(super) replicas: Vec<Option<Process>>,
    /// Each replica's fixed address (a restart reuses it: the config names it).
    pub(super) replica_addresses: Vec<String>,
    pub(super) levee: Option<Process>,
    pub(super) data: String,
    pub(super) admin: String,
    pub(super) admin_token: String,
    pub(super) latencies_us: Vec<u64>,
    pub(super) requests: u64,
    pub(super) retries: u64,
    /// Plugin names by version (SHA-256 hex), to name who decided.
    pub(super) plugin_names: HashMap<String, String>,
    /// The services besides `kv` (one per retry plugin language).
    pub(super) language_services: Vec<&'static str>,
}

impl Cluster {
    pub(super) fn new(dir: PathBuf) -> Cluster {
        Cluster {
            dir,
            binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("levee")),
            client: UpstreamClient::new(),
            replicas: Vec::new(),
            replica_addresses: Vec::new(),
            levee: None,
            data: String::new(),
            admin: String::new(),
            admin_token: format!("{:032x}", rand::random::<u128>()),
            latencies_us: Vec::new(),
            requests: 0,
            retries: 0,
            plugin_names: HashMap::new(),
            language_services: Vec::new(),
        }
    }

    pub(super) fn data(&self) -> &str {
        &self.data
    }

    pub(super) fn admin(&self) -> &str {
        &self.admin
    }

    /// Spawns `levee <args>` with stdout and stderr in files, and waits for
    /// the first stdout line.
    async fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<(Process, String)> {
        let stdout_path = self.dir.join(format!("{name}.out"));
        let stderr_path = self.dir.join(format!("{name}.log"));
        let stdout = File::create(&stdout_path)?;
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)?;
        let child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} {}", self.binary.display(), args.join(" ")))?;
        let mut process = Process {
            name: name.to_owned(),
            child,
            address: String::new(),
            detached: false,
        };
        let started = Instant::now();
        // Bounded: START_MS_MAX of 20 ms polls.
        loop {
            let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
                return Ok((process, line.to_owned()));
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                process.detached = true;
                bail!(
                    "{name} exited with {status} before it was ready; see {}",
                    stderr_path.display()
                );
            }
            if started.elapsed() > Duration::from_millis(START_MS_MAX) {
                bail!(
                    "{name} did not start within {} s; see {}",
                    START_MS_MAX / 1000,
                    stderr_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) async fn start_replica(
        &mut self,
        id: &str,
        address: Option<&str>,
    ) -> anyhow::Result<&Process> {
        let data_dir = self.dir.join(format!("replica-{id}"));
        let listen = address.unwrap_or("127.0.0.1:0").to_owned();
        let data_dir = data_dir.to_string_lossy().into_owned();
        let (mut process, line) = self
            .spawn(
                &format!("replica-{id}"),
                &["kv-replica", "--listen", &listen, "--data-dir", &data_dir],
            )
            .await?;
        let Some(address) = line.strip_prefix("listening ") else {
            bail!("replica {id} printed {line:?}, expected `listening <addr>`");
        };
        process.address = address.trim().to_owned();
        let index = NODE_IDS.iter().position(|n| *n == id).expect("a demo node");
        if self.replicas.len() <= index {
            self.replicas.resize_with(index + 1, || None);
            self.replica_addresses.resize(index + 1, String::new());
        }
        self.replica_addresses[index] = process.address.clone();
        self.replicas[index] = Some(process);
        Ok(self.replicas[index].as_ref().expect("just set"))
    }

    pub(super) fn kill_replica(&mut self, index: usize) -> anyhow::Result<i32> {
        let process = self.replicas[index]
            .as_mut()
            .context("replica not running")?;
        let pid = process.pid();
        process.kill();
        self.replicas[index] = None;
        Ok(pid)
    }

    pub(super) async fn restart_replica(&mut self, index: usize) -> anyhow::Result<()> {
        let address = self.replica_addresses[index].clone();
        // Bounded: the port was just freed by the kill; retry briefly in case
        // the kernel has not released it yet.
        let mut last_error = None;
        for _ in 0..10 {
            match self.start_replica(NODE_IDS[index], Some(&address)).await {
                Ok(process) => {
                    println!(
                        "      {} back at http://{}  pid {}",
                        NODE_IDS[index],
                        process.address,
                        process.child.id()
                    );
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// levee's data directory (its compiled-plugin cache is inside).
    pub(super) fn data_dir(&self) -> PathBuf {
        self.dir.join("levee-data")
    }

    pub(super) async fn start_levee(&mut self, plugins: Option<&Plugins>) -> anyhow::Result<()> {
        let config = config(
            &self.data_dir(),
            &self.admin_token,
            &self.replica_addresses,
            plugins,
        )?;
        let config_path = self.dir.join("levee.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let config_arg = config_path.to_string_lossy().into_owned();
        let (process, line) = self
            .spawn("levee", &["serve", "--config", &config_arg])
            .await?;
        let mut data = None;
        let mut admin = None;
        for part in line.split_whitespace() {
            data = data.or_else(|| part.strip_prefix("data=").map(str::to_owned));
            admin = admin.or_else(|| part.strip_prefix("admin=").map(str::to_owned));
        }
        let (Some(data), Some(admin)) = (data, admin) else {
            bail!("levee printed {line:?}, expected `listening data=<addr> admin=<addr>`");
        };
        self.data = data;
        self.admin = admin;
        self.levee = Some(process);
        self.wait_ready().await
    }

    /// Polls levee's `/readyz` on the admin listener (which answers 503
    /// while levee recovers its log and compiles its plugins) until it is
    /// ready, saying every 10 s that it is still waiting. Bounded by
    /// READY_MS_MAX; fails at once if levee exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.admin);
        let auth = format!("Bearer {}", self.admin_token);
        let started = Instant::now();
        let mut said = 0;
        while started.elapsed() < Duration::from_millis(READY_MS_MAX) {
            if let Ok(reply) = self
                .request(Method::GET, &url, Bytes::new(), &[("authorization", &auth)])
                .await
                && reply.status.is_success()
            {
                if said > 0 {
                    println!("      ready after {:.1} s", started.elapsed().as_secs_f64());
                }
                return Ok(());
            }
            if let Some(levee) = self.levee.as_mut()
                && let Ok(Some(status)) = levee.child.try_wait()
            {
                levee.detached = true;
                bail!(
                    "levee exited with {status} before it was ready; see {}",
                    self.dir.join("levee.log").display()
                );
            }
            let seconds = started.elapsed().as_secs();
            if seconds >= (said + 1) * 10 {
                said = seconds / 10;
                println!("      ... still starting ({seconds} s)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "levee did not become ready within {} s; see {}",
            READY_MS_MAX / 1000,
            self.dir.join("levee.log").display()
        )
    }

    pub(super) fn print_keep_instructions(&self) {
        let token = &self.admin_token;
        println!("\n--keep: everything is still running.");
        println!(
            "  curl -i -X PUT --data 'hello' http://{}/kv/kv/greeting",
            self.data
        );
        println!("  curl -i http://{}/kv/kv/greeting", self.data);
        for service in &self.language_services {
            println!("  curl -i http://{}/{service}/kv/greeting", self.data);
        }
        println!(
            "  curl -H 'authorization: Bearer {token}' http://{}/admin/log",
            self.admin
        );
        println!(
            "  curl -H 'authorization: Bearer {token}' http://{}/metrics",
            self.admin
        );
        println!(
            "  status page: http://{}/admin/  (token {token})",
            self.admin
        );
        for (id, address) in NODE_IDS.iter().zip(&self.replica_addresses) {
            println!("  replica {id}: curl http://{address}/_dump");
        }
        let pids: Vec<String> = self
            .replicas
            .iter()
            .flatten()
            .chain(self.levee.iter())
            .map(|process| process.child.id().to_string())
            .collect();
        println!("  stop it all: kill {}", pids.join(" "));
        println!("  files: {}", self.dir.display());
    }

    /// Leaves every child running (for `--keep`).
    pub(super) fn detach(&mut self) {
        for process in self
            .replicas
            .iter_mut()
            .flatten()
            .chain(self.levee.iter_mut())
        {
            process.detached = true;
        }
    }

    /// Stops levee gracefully (it checkpoints), then the replicas.
    pub(super) fn shutdown(&mut self) {
        if let Some(levee) = self.levee.as_mut() {
            levee.terminate(Duration::from_secs(5));
        }
        for replica in self.replicas.iter_mut().flatten() {
            replica.kill();
        }
    }
}
