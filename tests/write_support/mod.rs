//! Helpers shared by the write-path end-to-end tests (`write_path`,
//! `handoff`, `crash_restart`, `hint_backlog_rss`), on top of `support`:
//! a cluster whose levee has an admin token, writes through levee,
//! restarting a replica on its old port and levee on its old data
//! directory, the admin API's hint counters, and bounded convergence waits.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Cluster, Levee, Proc, Replica, call, try_call};

/// The admin token the write-path tests configure.
pub const ADMIN_TOKEN: &str = "write-path-tests-admin-token-0123456789";
/// Polls of a convergence wait and their spacing (bounded: 1200 × 50 ms).
pub const CONVERGE_POLLS: u32 = 1200;
pub const CONVERGE_POLL_PAUSE: Duration = Duration::from_millis(50);

/// Starts `nodes` replicas (`r0`, `r1`, ...) and levee fronting them as
/// service `kv` (key: the path segment after `/kv/`), W=2 of N=3 unless
/// `service` overrides it. Outlier ejection is relaxed so that a dead
/// replica keeps being tried (each test says what it expects).
pub async fn start(nodes: usize, service: Value) -> Cluster {
    start_with(nodes, json!({}), service).await
}

/// [`start`] with extra top-level configuration fields.
pub async fn start_with(nodes: usize, top: Value, service: Value) -> Cluster {
    let replicas: Vec<Replica> = (0..nodes)
        .map(|i| Replica::spawn(&format!("r{i}")))
        .collect();
    let mut spec = json!({
        "name": "kv",
        "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
        "key": {"path_segment": 1},
        "replicas": nodes.min(3),
        "timeouts": {"per_try_ms": 2000, "total_ms": 10000},
    });
    for (field, value) in service.as_object().cloned().unwrap_or_default() {
        spec[field] = value;
    }
    let mut config = json!({"admin_token": ADMIN_TOKEN, "services": [spec]});
    for (field, value) in top.as_object().cloned().unwrap_or_default() {
        config[field] = value;
    }
    let levee = Levee::start(config).await;
    Cluster { replicas, levee }
}

/// `PUT /kv/kv/{key}` through levee.
pub async fn put(levee: &Levee, key: &str, value: &str) -> (StatusCode, HeaderMap, String) {
    write(levee, Method::PUT, key, value, &[]).await
}

/// Any write through levee.
pub async fn write(
    levee: &Levee,
    method: Method,
    key: &str,
    value: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    call(
        method,
        &levee.url(&format!("/kv/kv/{key}")),
        headers,
        value.to_owned(),
    )
    .await
}

/// `x-levee-acks` of a write's response.
pub fn acks(headers: &HeaderMap) -> String {
    headers
        .get("x-levee-acks")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no x-levee-acks header in {headers:?}"))
        .to_owned()
}

/// Restarts a killed replica on its old address and data directory.
pub fn restart_replica(replica: &mut Replica) {
    replica.proc.kill();
    let data = replica.dir.path().join("data");
    let address = replica.address.to_string();
    let stderr = replica.dir.path().join("stderr-restarted.log");
    // Bounded: the kernel may hold the port for a moment after the kill.
    for attempt in 0..50 {
        let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Proc::spawn(
                &[
                    "kv-replica",
                    "--listen",
                    &address,
                    "--data-dir",
                    data.to_str().unwrap(),
                ],
                &stderr,
            )
        }));
        match spawned {
            Ok(proc) => {
                replica.proc = proc;
                return;
            }
            Err(_) if attempt < 49 => std::thread::sleep(Duration::from_millis(100)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Kills levee (SIGKILL) if it still runs and starts it again on the same
/// configuration and data directory; waits until it is ready.
pub async fn restart_levee(levee: &mut Levee) {
    levee.proc.kill();
    let stderr = levee.dir.path().join("stderr-restarted.log");
    let proc = Proc::spawn(
        &["serve", "--config", levee.config_path.to_str().unwrap()],
        &stderr,
    );
    let (data, admin) = parse_banner(&proc.banner);
    levee.proc = proc;
    levee.data = data;
    levee.admin = admin;
    for _ in 0..CONVERGE_POLLS {
        if let Some((StatusCode::OK, _, _)) =
            try_call(Method::GET, &levee.admin_url("/readyz"), &[], "").await
        {
            return;
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    panic!(
        "restarted levee never became ready; stderr:\n{}",
        levee.proc.stderr()
    );
}

fn parse_banner(banner: &str) -> (SocketAddr, SocketAddr) {
    let field = |name: &str| {
        banner
            .split_whitespace()
            .find_map(|part| part.strip_prefix(name))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("unexpected levee banner {banner:?}"))
    };
    (field("data="), field("admin="))
}

/// An admin API GET, with the token.
pub async fn admin_get(levee: &Levee, path: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = call(
        Method::GET,
        &levee.admin_url(path),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// An admin API POST, with the token.
pub async fn admin_post(levee: &Levee, path: &str) -> (StatusCode, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = call(
        Method::POST,
        &levee.admin_url(path),
        &[("authorization", &auth)],
        "",
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The write path's view of one node (`GET /admin/log` →
/// `write_path.nodes[]`): cursor, backlog, counters.
pub async fn node_hints(levee: &Levee, node: &str) -> Value {
    let log = admin_get(levee, "/admin/log").await;
    log["write_path"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|entry| entry["node"] == node).cloned())
        .unwrap_or_else(|| panic!("node {node} not in /admin/log: {log}"))
}

/// Polls until `condition` holds on the node's hint state; returns it.
pub async fn wait_node_hints(
    levee: &Levee,
    node: &str,
    what: &str,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..CONVERGE_POLLS {
        last = node_hints(levee, node).await;
        if condition(&last) {
            return last;
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    panic!(
        "node {node} never reached {what}: {last}\nlevee stderr:\n{}",
        levee.proc.stderr()
    )
}

/// A replica's dump, or `None` if it does not answer.
pub async fn try_dump(replica: &Replica) -> Option<Value> {
    let (status, _, body) =
        try_call(Method::GET, &format!("{}/_dump", replica.url()), &[], "").await?;
    (status == StatusCode::OK)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Polls until every replica's `/_dump` is identical and holds `keys`
/// live keys; returns the common dump.
pub async fn wait_converged(cluster: &Cluster, keys: usize) -> Value {
    let mut last: Vec<Option<Value>> = Vec::new();
    for _ in 0..CONVERGE_POLLS {
        last.clear();
        for replica in &cluster.replicas {
            last.push(try_dump(replica).await);
        }
        if let Some(Some(first)) = last.first()
            && last.iter().all(|dump| dump.as_ref() == Some(first))
            && first["keys"].as_object().map_or(0, |k| k.len()) == keys
        {
            return first.clone();
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    let sizes: Vec<Option<usize>> = last
        .iter()
        .map(|dump| {
            dump.as_ref()
                .and_then(|d| d["keys"].as_object().map(|k| k.len()))
        })
        .collect();
    panic!("replicas did not converge on {keys} keys; key counts {sizes:?}; dumps: {last:?}")
}

/// The live keys of a dump.
pub fn dump_keys(dump: &Value) -> Vec<String> {
    dump["keys"]
        .as_object()
        .map(|keys| keys.keys().cloned().collect())
        .unwrap_or_default()
}

/// The sha256 a dump records for `key`.
pub fn dump_sha(dump: &Value, key: &str) -> Option<String> {
    dump["keys"][key]["sha256"].as_str().map(str::to_owned)
}

/// `plugins/dist` of this repository; fails clearly when the example
/// plugins have not been built.
pub fn plugin_dist() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    assert!(
        dir.join("checkpoint-interval.wasm").is_file(),
        "the example plugins are missing from {}: run `bash scripts/build-plugins.sh`",
        dir.display()
    );
    dir
}

/// Lower-case hex SHA-256, as `/_dump` reports values.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
