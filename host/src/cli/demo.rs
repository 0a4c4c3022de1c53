//! `levee demo`: levee's main job on an embedded default, narrated.
//!
//! Why real processes: the point of the demo is to show what happens when a
//! replica *dies*, so the replicas are real `levee kv-replica` child
//! processes (each on a free loopback port with its own data directory),
//! one of them is killed with SIGKILL, and levee itself runs as a real
//! `levee serve` child with a configuration file written here. Nothing is
//! simulated; the demo is only the narrator and the HTTP client.
//!
//! The scenario, printed step by step: writes and reads through levee; one
//! replica is killed; writes are still acknowledged with W=2
//! (`x-levee-acks: 2/3`) and reads fail over (`x-levee-attempts`); the
//! replica comes back on the same port and hinted handoff brings it up to
//! date, shown by all three replicas' `/_dump` being identical; a summary of
//! requests, retries, plugin fallbacks and latencies.
//!
//! Policies: the example Wasm plugins (`retry-backoff`, `route-affinity`,
//! `checkpoint-interval`) are used when found (`--plugin-dir`, else
//! `LEVEE_PLUGIN_DIR`, else `plugins/dist` next to the binary's repository
//! or the current directory); otherwise the demo says how to build them and
//! runs on the native policies.
//!
//! Bounds: every wait is a bounded poll and the whole run is capped at
//! [`DEMO_MS_MAX`]. Children are killed by PID when the demo ends, fails or
//! is interrupted (Ctrl-C); with `--keep` they are left running and the demo
//! prints the commands to try and how to stop them.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

use levee::upstream::UpstreamClient;

/// The whole demo must finish within this.
pub const DEMO_MS_MAX: u64 = 30_000;
/// How long a child gets to print its address.
const START_MS_MAX: u64 = 10_000;
/// How long hinted handoff gets to converge.
const CONVERGE_MS_MAX: u64 = 12_000;
/// A demo request's timeout.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Keys written before and during the failure.
const KEYS_PER_PHASE: usize = 24;
/// The plugins the demo binds, by policy kind.
const PLUGINS: [(&str, &str); 3] = [
    ("retry", "retry-backoff"),
    ("routing", "route-affinity"),
    ("checkpoint", "checkpoint-interval"),
];
/// Node ids of the three replicas.
const NODE_IDS: [&str; 3] = ["a", "b", "c"];
/// The replica the demo kills.
const VICTIM: usize = 1;

/// `levee demo` options.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Leave everything running at the end.
    pub keep: bool,
    /// Where the example plugins are.
    pub plugin_dir: Option<PathBuf>,
}

/// Runs the demo. Children are cleaned up on every path out of here unless
/// the scenario completed with `--keep`.
pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let dir = demo_dir()?;
    let mut cluster = Cluster::new(dir.clone());
    let scenario = tokio::time::timeout(
        Duration::from_millis(DEMO_MS_MAX),
        scenario(&mut cluster, &options),
    );
    let outcome = tokio::select! {
        outcome = scenario => match outcome {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("the demo took longer than {} s", DEMO_MS_MAX / 1000)),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) if options.keep => {
            cluster.print_keep_instructions();
            cluster.detach();
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => {
            cluster.shutdown();
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("\ndemo stopped: {error:#}");
            println!("logs were in {}", dir.display());
            cluster.shutdown();
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The narrated scenario.
async fn scenario(cluster: &mut Cluster, options: &DemoOptions) -> anyhow::Result<()> {
    println!("levee demo: three key-value replicas behind levee; one of them dies and comes back.");

    step(
        1,
        "starting three replicas (`levee kv-replica`, real processes on loopback)",
    );
    for id in NODE_IDS {
        let replica = cluster.start_replica(id, None).await?;
        println!(
            "      {id}  http://{}  pid {}",
            replica.address,
            replica.child.id()
        );
    }

    let plugins = find_plugins(options.plugin_dir.as_deref());
    step(
        2,
        "starting levee: every key lives on N=3 replicas, a write needs W=2 acks",
    );
    match &plugins {
        Ok(dir) => println!(
            "      policies: Wasm plugins retry-backoff, route-affinity, checkpoint-interval from {}",
            dir.display()
        ),
        Err(note) => println!("      note: {note}\n      policies: native built-ins"),
    }
    cluster
        .start_levee(plugins.as_ref().ok().map(PathBuf::as_path))
        .await?;
    println!(
        "      data  http://{}   admin http://{}",
        cluster.data(),
        cluster.admin()
    );

    step(
        3,
        "writes: logged durably first, then sent to the key's 3 replicas; answered at 2 acks",
    );
    for i in 0..KEYS_PER_PHASE {
        let response = cluster
            .put(
                &format!("user-{i}"),
                &format!("{{\"name\":\"user {i}\",\"v\":1}}"),
            )
            .await?;
        ensure_success(&response)?;
        if i < 3 {
            print_write(&format!("user-{i}"), &response);
        }
    }
    let (keys, _) = cluster.wait_converged().await?;
    println!(
        "      ... {KEYS_PER_PHASE} writes; the third copies landed in the background: every replica holds {keys} keys"
    );
    for i in 0..2 {
        print_read(
            &format!("user-{i}"),
            &cluster.get(&format!("user-{i}")).await?,
        );
    }

    let victim = NODE_IDS[VICTIM];
    let victim_pid = cluster.kill_replica(VICTIM)?;
    step(
        4,
        &format!(
            "SIGKILL replica {victim} (pid {victim_pid}); reads of keys it served first fail over"
        ),
    );
    for key in keys_led_by(VICTIM, 5) {
        print_read(&key, &cluster.get(&key).await?);
    }
    println!("      (after a few failures {victim} is ejected: reads stop trying it first)");

    step(
        5,
        &format!("writes with {victim} down: still acknowledged by W=2"),
    );
    for i in 0..KEYS_PER_PHASE {
        let key = if i % 3 == 0 {
            format!("user-{i}")
        } else {
            format!("order-{i}")
        };
        let response = cluster
            .put(&key, &format!("{{\"key\":\"{key}\",\"v\":2}}"))
            .await?;
        ensure_success(&response)?;
        if i < 3 {
            print_write(&key, &response);
        }
    }
    println!(
        "      ... {KEYS_PER_PHASE} writes acknowledged; {victim} missed them: each is a hint, read back from the log later"
    );
    if let Some(hints) = cluster.node_hints(victim).await {
        println!(
            "      hint backlog for {victim}: {} writes ({} bytes) waiting in the log",
            hints["backlog_records"], hints["backlog_bytes"]
        );
    }

    step(
        6,
        &format!(
            "restarting replica {victim} on its old port and data; hinted handoff replays what it missed"
        ),
    );
    cluster.restart_replica(VICTIM).await?;
    let started = Instant::now();
    let (keys, digest) = cluster.wait_converged().await?;
    println!(
        "      all three replicas identical after {:.1} s: {keys} keys, /_dump sha256 {}",
        started.elapsed().as_secs_f64(),
        &digest[..16]
    );
    if let Some(hints) = cluster.node_hints(victim).await {
        println!(
            "      hints delivered to {victim}: {}, dropped: {}",
            hints["delivered_records"], hints["dropped_records"]
        );
    }

    step(7, "summary");
    cluster.print_summary().await;
    Ok(())
}

/// `count` demo keys whose first replica (ring order) is node `index`.
fn keys_led_by(index: usize, count: usize) -> Vec<String> {
    let ring = levee::cluster::ring::Ring::new(
        NODE_IDS.iter().map(|id| (*id, 1)),
        levee::cluster::ring::VNODES_PER_WEIGHT_DEFAULT,
    )
    .expect("three distinct nodes make a ring");
    (0..KEYS_PER_PHASE)
        .map(|i| format!("user-{i}"))
        .filter(|key| ring.preference(key.as_bytes(), 1).get(0) == Some(index))
        .take(count)
        .collect()
}

fn ensure_success(reply: &Reply) -> anyhow::Result<()> {
    if !reply.status.is_success() {
        bail!("a write failed: {} {}", reply.status, reply.body_text());
    }
    Ok(())
}

fn print_write(key: &str, reply: &Reply) {
    println!(
        "      PUT /kv/kv/{key:<9} -> {}  x-levee-acks: {}",
        reply.status.as_u16(),
        reply.header("x-levee-acks")
    );
}

fn print_read(key: &str, reply: &Reply) {
    println!(
        "      GET /kv/kv/{key:<9} -> {}  {}  x-levee-attempts: {}",
        reply.status.as_u16(),
        reply.body_text(),
        reply.header("x-levee-attempts")
    );
}

fn step(number: usize, text: &str) {
    println!("\n[{number}/7] {text}");
}

/// Where the example plugins are, or why they are not used.
fn find_plugins(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    candidates.extend(std::env::var_os("LEVEE_PLUGIN_DIR").map(PathBuf::from));
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/levee → the repository root is three levels up.
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|dir| dir.join("plugins/dist")),
        );
    }
    candidates.push(PathBuf::from("plugins/dist"));
    let complete = |dir: &Path| {
        PLUGINS
            .iter()
            .all(|(_, name)| dir.join(format!("{name}.wasm")).is_file())
    };
    if let Some(dir) = candidates.iter().find(|dir| complete(dir)) {
        return Ok(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    Err(format!(
        "the example plugins were not found (looked in {}); build them with `bash scripts/build-plugins.sh` \
         (or pass --plugin-dir); falling back to the native policies",
        looked.join(", ")
    ))
}

/// A fresh directory for the demo's files.
fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "levee-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A child process, killed by PID when dropped unless detached.
struct Process {
    name: String,
    child: Child,
    address: String,
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

/// One demo request's result.
struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    }

    fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(60).collect()
    }
}

/// The demo's processes and its client-side statistics.
struct Cluster {
    dir: PathBuf,
    binary: PathBuf,
    client: UpstreamClient,
    replicas: Vec<Option<Process>>,
    /// Each replica's fixed address (a restart reuses it: the config names it).
    replica_addresses: Vec<String>,
    levee: Option<Process>,
    data: String,
    admin: String,
    admin_token: String,
    latencies_us: Vec<u64>,
    requests: u64,
    retries: u64,
}

impl Cluster {
    fn new(dir: PathBuf) -> Cluster {
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
        }
    }

    fn data(&self) -> &str {
        &self.data
    }

    fn admin(&self) -> &str {
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

    async fn start_replica(&mut self, id: &str, address: Option<&str>) -> anyhow::Result<&Process> {
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

    fn kill_replica(&mut self, index: usize) -> anyhow::Result<i32> {
        let process = self.replicas[index]
            .as_mut()
            .context("replica not running")?;
        let pid = process.pid();
        process.kill();
        self.replicas[index] = None;
        Ok(pid)
    }

    async fn restart_replica(&mut self, index: usize) -> anyhow::Result<()> {
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

    async fn start_levee(&mut self, plugin_dir: Option<&Path>) -> anyhow::Result<()> {
        let config = self.config(plugin_dir);
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

    /// Polls levee's data-plane health until it is ready (bounded).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{}/_levee/healthz", self.data);
        for _ in 0..(START_MS_MAX / 50) {
            if let Ok(reply) = self.request(Method::GET, &url, Bytes::new(), &[]).await
                && reply.status.is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "levee did not become ready within {} s",
            START_MS_MAX / 1000
        )
    }

    /// The configuration levee runs with.
    fn config(&self, plugin_dir: Option<&Path>) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = NODE_IDS
            .iter()
            .zip(&self.replica_addresses)
            .map(|(id, address)| serde_json::json!({"id": id, "url": format!("http://{address}")}))
            .collect();
        let mut policies = serde_json::Map::new();
        if plugin_dir.is_some() {
            for (kind, plugin) in PLUGINS {
                policies.insert(kind.into(), serde_json::json!({"plugin": plugin}));
            }
        }
        let mut config = serde_json::json!({
            "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "data_dir": self.dir.join("levee-data"),
            "admin_token": self.admin_token,
            "services": [{
                "name": "kv",
                "nodes": nodes,
                "replicas": 3,
                "write_quorum": 2,
                "key": {"path_segment": 1},
                "timeouts": {"per_try_ms": 500, "total_ms": 2000},
                "outlier": {"consecutive_failures": 3, "base_ejection_ms": 1000, "max_ejection_ms": 5000},
                "policies": policies,
            }],
        });
        if let Some(dir) = plugin_dir {
            config["plugin_dir"] = serde_json::json!(dir);
        }
        config
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
        let response = self
            .client
            .send(request, timeout)
            .await
            .map_err(|error| anyhow::anyhow!("{url}: {:?}", error.kind))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, body.collect())
            .await
            .context("reading the body timed out")??
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A data-plane request, counted in the summary.
    async fn data_request(
        &mut self,
        method: Method,
        key: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let url = format!("http://{}/kv/kv/{key}", self.data);
        let started = Instant::now();
        let headers: &[(&str, &str)] = if method == Method::PUT {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let reply = self.request(method, &url, body, headers).await?;
        self.latencies_us
            .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.requests += 1;
        let attempts: u64 = reply.header("x-levee-attempts").parse().unwrap_or(1);
        self.retries += attempts.saturating_sub(1);
        Ok(reply)
    }

    async fn put(&mut self, key: &str, value: &str) -> anyhow::Result<Reply> {
        self.data_request(Method::PUT, key, Bytes::from(value.to_owned()))
            .await
    }

    async fn get(&mut self, key: &str) -> anyhow::Result<Reply> {
        self.data_request(Method::GET, key, Bytes::new()).await
    }

    /// The admin API's view of a node's hints (`/admin/log`), if shown.
    async fn node_hints(&self, node: &str) -> Option<serde_json::Value> {
        let url = format!("http://{}/admin/log", self.admin);
        let auth = format!("Bearer {}", self.admin_token);
        let reply = self
            .request(Method::GET, &url, Bytes::new(), &[("authorization", &auth)])
            .await
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
        let nodes = find_array(&value, "nodes")?;
        nodes.iter().find(|entry| entry["node"] == node).cloned()
    }

    /// Polls every replica's `/_dump` until all are identical and reflect
    /// every write (bounded by CONVERGE_MS_MAX). Returns the key count and
    /// the dump's digest.
    async fn wait_converged(&self) -> anyhow::Result<(usize, String)> {
        let started = Instant::now();
        let mut last = Vec::new();
        while started.elapsed() < Duration::from_millis(CONVERGE_MS_MAX) {
            let mut dumps = Vec::new();
            for address in &self.replica_addresses {
                let url = format!("http://{address}/_dump");
                match self.request(Method::GET, &url, Bytes::new(), &[]).await {
                    Ok(reply) if reply.status.is_success() => dumps.push(reply.body),
                    _ => break,
                }
            }
            if dumps.len() == self.replica_addresses.len()
                && dumps.windows(2).all(|pair| pair[0] == pair[1])
            {
                let value: serde_json::Value = serde_json::from_slice(&dumps[0])?;
                let keys = value["keys"].as_object().map_or(0, |keys| keys.len());
                return Ok((keys, sha256_hex(&dumps[0])));
            }
            last = dumps;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sizes: Vec<usize> = last.iter().map(Bytes::len).collect();
        bail!(
            "replicas did not converge within {} s (dump sizes {sizes:?})",
            CONVERGE_MS_MAX / 1000
        )
    }

    async fn print_summary(&mut self) {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let percentile = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted[index] as f64 / 1000.0
        };
        let fallbacks = self.metric_sum("levee_plugin_fallbacks_total").await;
        let mut line = format!(
            "      requests {}   retries {}   plugin fallbacks {}   latency p50 {:.2} ms  p99 {:.2} ms",
            self.requests,
            self.retries,
            fallbacks.map_or_else(|| "n/a".into(), |n| format!("{n}")),
            percentile(0.50),
            percentile(0.99),
        );
        if let Some(delivered) = self.metric_sum("levee_hints_delivered_total").await {
            let _ = write!(line, "   hints delivered {delivered}");
        }
        if let Some(dropped) = self.metric_sum("levee_hints_dropped_total").await {
            let _ = write!(line, "   hints dropped {dropped}");
        }
        println!("{line}");
    }

    /// Sums a Prometheus counter family from the admin `/metrics`.
    async fn metric_sum(&self, family: &str) -> Option<u64> {
        let url = format!("http://{}/metrics", self.admin);
        let auth = format!("Bearer {}", self.admin_token);
        let reply = self
            .request(Method::GET, &url, Bytes::new(), &[("authorization", &auth)])
            .await
            .ok()?;
        if !reply.status.is_success() {
            return None;
        }
        let text = String::from_utf8_lossy(&reply.body);
        let mut found = false;
        let mut sum = 0.0;
        for line in text.lines().filter(|line| line.starts_with(family)) {
            let rest = &line[family.len()..];
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                found = true;
                sum += value;
            }
        }
        // An absent family after traffic means "never happened".
        Some(if found { sum as u64 } else { 0 })
    }

    fn print_keep_instructions(&self) {
        let token = &self.admin_token;
        println!("\n--keep: everything is still running.");
        println!(
            "  curl -i -X PUT --data 'hello' http://{}/kv/kv/greeting",
            self.data
        );
        println!("  curl -i http://{}/kv/kv/greeting", self.data);
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
    fn detach(&mut self) {
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
    fn shutdown(&mut self) {
        if let Some(levee) = self.levee.as_mut() {
            levee.terminate(Duration::from_secs(5));
        }
        for replica in self.replicas.iter_mut().flatten() {
            replica.kill();
        }
    }
}

/// Finds the first array under `key` anywhere in `value` (the admin API's
/// exact nesting is its own business).
fn find_array<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(array)) = map.get(key) {
                return Some(array);
            }
            map.values().find_map(|child| find_array(child, key))
        }
        _ => None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
