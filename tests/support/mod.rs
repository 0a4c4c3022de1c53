//! Shared helpers for levee's end-to-end tests: real `levee` processes in
//! front of real `levee kv-replica` processes, all on loopback ports the OS
//! picks (every server binds port 0 and prints its address first thing).
//!
//! Everything is bounded: start-up waits poll a fixed number of times, HTTP
//! calls have a timeout, and every child process is killed by its PID when
//! its handle drops, so a failing test leaves nothing running.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The `levee` binary under test.
pub const LEVEE: &str = env!("CARGO_BIN_EXE_levee");
/// Longest wait for a process to print its address (slow CI machines).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Readiness polls and their spacing (bounded: 600 × 50 ms).
const READY_POLLS: u32 = 600;
const READY_POLL_PAUSE: Duration = Duration::from_millis(50);
/// Longest a single test HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed (by PID) and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    /// The first stdout line, e.g. `listening 127.0.0.1:4242`.
    pub banner: String,
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `levee args...`, waiting for its first stdout line.
    pub fn spawn(args: &[&str], stderr_path: &Path) -> Proc {
        let stderr = std::fs::File::create(stderr_path).expect("stderr file");
        let mut child = Command::new(LEVEE)
            .args(args)
            .env("LEVEE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn levee");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        // Drain stdout for the child's whole life so it never blocks on a pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = sender.send(first);
            }
            for _ in lines {}
        });
        let mut proc = Proc {
            child: Some(child),
            banner: String::new(),
            stderr_path: stderr_path.to_owned(),
        };
        match receiver.recv_timeout(START_TIMEOUT) {
            Ok(banner) => proc.banner = banner,
            Err(_) => panic!(
                "levee {args:?} printed no address; stderr:\n{}",
                proc.stderr()
            ),
        }
        proc
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL, by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's PID, which we have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `levee kv-replica` process with its own data directory.
pub struct Replica {
    pub id: String,
    pub proc: Proc,
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Replica {
    pub fn spawn(id: &str) -> Replica {
        let dir = tempfile::tempdir().expect("replica dir");
        let data = dir.path().join("data");
        let proc = Proc::spawn(
            &[
                "kv-replica",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &dir.path().join("stderr.log"),
        );
        let address = proc
            .banner
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected replica banner {:?}", proc.banner));
        Replica {
            id: id.to_owned(),
            proc,
            address,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sets the replica's fault knobs (see `levee_kv_replica`).
    pub async fn fault(&self, faults: Value) {
        let (status, _, body) = call(
            Method::POST,
            &format!("{}/_fault", self.url()),
            &[],
            faults.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "setting faults: {body}");
    }

    pub async fn clear_fault(&self) {
        call(Method::DELETE, &format!("{}/_fault", self.url()), &[], "").await;
    }

    /// `kv_requests` served (including injected failures).
    pub async fn kv_requests(&self) -> u64 {
        self.json("/_stats").await["kv_requests"]
            .as_u64()
            .expect("kv_requests")
    }

    /// The replica's request log, oldest first.
    pub async fn request_log(&self) -> Vec<Value> {
        self.json("/_log")
            .await
            .as_array()
            .cloned()
            .expect("log array")
    }

    pub async fn dump(&self) -> Value {
        self.json("/_dump").await
    }

    /// Writes a value straight into this replica, bypassing levee.
    pub async fn put(&self, key: &str, value: &str) {
        let (status, _, _) = call(
            Method::PUT,
            &format!("{}/kv/{key}", self.url()),
            &[],
            value.to_owned(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    async fn json(&self, path: &str) -> Value {
        let (status, _, body) = call(Method::GET, &format!("{}{path}", self.url()), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }
}

/// A `levee serve` process.
pub struct Levee {
    pub proc: Proc,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Levee {
    /// Starts levee with `config` (listeners and data_dir are filled in
    /// when absent) and waits until its admin `/readyz` answers 200.
    pub async fn start(mut config: Value) -> Levee {
        let dir = tempfile::tempdir().expect("levee dir");
        let object = config.as_object_mut().expect("config object");
        object
            .entry("listeners")
            .or_insert(json!({"data": "127.0.0.1:0", "admin": "127.0.0.1:0"}));
        object
            .entry("data_dir")
            .or_insert(json!(dir.path().join("data")));
        object.entry("fsync").or_insert(json!("always"));
        let config_path = dir.path().join("levee.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let proc = Proc::spawn(
            &["serve", "--config", config_path.to_str().unwrap()],
            &dir.path().join("stderr.log"),
        );
        let (data, admin) = parse_levee_banner(&proc.banner);
        let levee = Levee {
            proc,
            data,
            admin,
            dir,
            config_path,
        };
        levee.wait_ready().await;
        levee
    }

    async fn wait_ready(&self) {
        for _ in 0..READY_POLLS {
            if let Some((StatusCode::OK, _, _)) =
                try_call(Method::GET, &self.admin_url("/readyz"), &[], "").await
            {
                return;
            }
            tokio::time::sleep(READY_POLL_PAUSE).await;
        }
        panic!("levee never became ready; stderr:\n{}", self.proc.stderr());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

fn parse_levee_banner(banner: &str) -> (SocketAddr, SocketAddr) {
    let mut data = None;
    let mut admin = None;
    for part in banner.split_whitespace() {
        if let Some(address) = part.strip_prefix("data=") {
            data = address.parse().ok();
        } else if let Some(address) = part.strip_prefix("admin=") {
            admin = address.parse().ok();
        }
    }
    match (data, admin) {
        (Some(data), Some(admin)) => (data, admin),
        _ => panic!("unexpected levee banner {banner:?}"),
    }
}

/// N replicas and a levee fronting them as service `kv`.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub levee: Levee,
}

impl Cluster {
    /// Starts `nodes` replicas (ids `r0`, `r1`, ...) and levee with one
    /// service `kv` keyed by the path segment after `/kv/`. `service`
    /// fields override the defaults.
    pub async fn start(nodes: usize, service: Value) -> Cluster {
        Cluster::start_with(nodes, service, json!({})).await
    }

    /// [`Cluster::start`], with `config` fields (e.g. `server`) added to
    /// levee's configuration.
    pub async fn start_with(nodes: usize, service: Value, config: Value) -> Cluster {
        let replicas: Vec<Replica> = (0..nodes)
            .map(|i| Replica::spawn(&format!("r{i}")))
            .collect();
        let mut spec = json!({
            "name": "kv",
            "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        });
        for (field, value) in service.as_object().cloned().unwrap_or_default() {
            spec[field] = value;
        }
        let mut config = config;
        config["services"] = json!([spec]);
        let levee = Levee::start(config).await;
        Cluster { replicas, levee }
    }

    /// The replicas of `key` in preference order, computed the documented
    /// way (so the tests also check placement is reproducible) from the
    /// service as levee was started with it: its `placement` (the ring
    /// unless the test chose `rendezvous`), `vnodes_per_weight` and node
    /// weights.
    pub fn preference(&self, key: &str, replicas: usize) -> Vec<usize> {
        let config: Value =
            serde_json::from_slice(&std::fs::read(&self.levee.config_path).expect("config file"))
                .expect("config json");
        let spec = &config["services"][0];
        let kind: levee::cluster::placement::PlacementKind =
            serde_json::from_value(spec["placement"].clone()).unwrap_or_default();
        let vnodes = spec["vnodes_per_weight"].as_u64().unwrap_or(160) as u32;
        let weight = |id: &str| {
            let nodes = spec["nodes"].as_array().expect("nodes");
            let node = nodes.iter().find(|n| n["id"] == id).expect("node");
            node["weight"].as_u64().unwrap_or(1) as u32
        };
        let nodes = self.replicas.iter().map(|r| (r.id.as_str(), weight(&r.id)));
        let placement = levee::cluster::placement::Placement::new(kind, nodes, vnodes).unwrap();
        placement
            .preference(key.as_bytes(), replicas)
            .iter()
            .collect()
    }

    /// Sum of `/kv` requests over all live replicas.
    pub async fn total_kv_requests(&self) -> u64 {
        let mut total = 0;
        for replica in &self.replicas {
            if replica.proc.pid().is_some() {
                total += replica.kv_requests().await;
            }
        }
        total
    }

    pub async fn get(&self, key: &str) -> (StatusCode, HeaderMap, String) {
        call(
            Method::GET,
            &self.levee.url(&format!("/kv/kv/{key}")),
            &[],
            "",
        )
        .await
    }
}

/// `x-levee-attempts` of a response.
pub fn attempts(headers: &HeaderMap) -> u32 {
    headers
        .get("x-levee-attempts")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-levee-attempts header")
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One HTTP call; panics if it cannot complete.
pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, String) {
    try_call(method.clone(), url, headers, body)
        .await
        .unwrap_or_else(|| panic!("{method} {url} failed to complete"))
}

/// One HTTP call; `None` on a transport failure or timeout.
pub async fn try_call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Option<(StatusCode, HeaderMap, String)> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).ok()?;
    let exchange = async {
        let response = client().request(request).await.ok()?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

/// The `reason` of a levee JSON error body.
pub fn reason(body: &str) -> String {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON error: {body}"));
    value["reason"].as_str().expect("reason").to_owned()
}
