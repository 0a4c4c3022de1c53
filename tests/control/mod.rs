//! Helpers for the control-plane end-to-end tests (admin API, hot reload,
//! status page), on top of `tests/support`.
//!
//! Everything is bounded like the rest of the suite: polls have a fixed
//! count, HTTP calls the support's timeout, processes are killed by PID.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Levee, Proc, Replica, call, try_call};

/// The admin token the tests configure.
pub const TOKEN: &str = "test-admin-token-0123456789";
/// Polls while waiting for the control plane to reach a state, and their spacing.
const POLLS: u32 = 600;
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// `plugins/dist/<relative>`; fails clearly when the plugins are not built.
pub fn plugin_bytes(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); build the plugins first: bash scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// The version levee reports for `bytes`: SHA-256, hex.
pub fn version_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Drops `bytes` into `dir` as `<name>.wasm` the documented way: write a
/// temporary file, then rename it (atomic within one file system).
pub fn drop_in(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// An admin call with the token.
pub async fn admin(
    levee: &Levee,
    method: Method,
    path: &str,
    body: impl Into<bytes::Bytes>,
) -> (StatusCode, HeaderMap, String) {
    let auth = format!("Bearer {TOKEN}");
    call(
        method,
        &levee.admin_url(path),
        &[("authorization", auth.as_str())],
        body,
    )
    .await
}

/// An admin GET with the token, parsed as JSON.
pub async fn admin_json(levee: &Levee, path: &str) -> Value {
    let (status, _, body) = admin(levee, Method::GET, path, "").await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// The entry of plugin `name` in `GET /admin/plugins`.
pub async fn plugin_view(levee: &Levee, name: &str) -> Value {
    let plugins = admin_json(levee, "/admin/plugins").await;
    plugins
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("plugin {name} not listed: {plugins}"))
}

/// Waits (bounded) until plugin `name` serves `version` in every binding.
pub async fn wait_for_version(levee: &Levee, name: &str, version: &str) {
    for _ in 0..POLLS {
        let view = plugin_view(levee, name).await;
        let bound_everywhere = view["bindings"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["version"] == version));
        if view["version"] == version && bound_everywhere {
            return;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!(
        "plugin {name} never reached version {version}: {}",
        plugin_view(levee, name).await
    );
}

/// A levee config fronting `replicas` as service `kv` whose retry policy is
/// plugin `retry` (loaded from `plugin_dir`), tuned so that every request
/// whose primary replica fails is retried once on the other replica: two
/// attempts at most, an unlimited budget, no ejection.
pub fn retrying_config(replicas: &[Replica], plugin_dir: &Path) -> Value {
    json!({
        "admin_token": TOKEN,
        "plugin_dir": plugin_dir,
        "services": [{
            "name": "kv",
            "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
            "replicas": replicas.len(),
            "key": {"path_segment": 1},
            "max_attempts": 2,
            "timeouts": {"per_try_ms": 5000, "total_ms": 20000},
            "retry_budget": {"ratio": 10.0, "min_per_s": 100000, "window_ms": 1000},
            "outlier": {"consecutive_failures": 1000, "base_ejection_ms": 1, "max_ejection_ms": 1},
            // The per-call deadline is wall-clock time (epoch interruption):
            // generous here, so that a test process descheduled on a busy
            // two-core machine is not mistaken for a runaway plugin.
            "policies": {"retry": {"plugin": "retry", "config": {}, "limits": {
                "call_timeout_ms": 1000,
                "configure_timeout_ms": 10000,
            }}},
        }],
    })
}

/// Keys whose primary replica (in ring order) is replica `index` of `count`.
pub fn keys_with_primary(ids: &[&str], index: usize, wanted: usize) -> Vec<String> {
    let ring = levee::cluster::ring::Ring::new(ids.iter().map(|id| (*id, 1)), 160).unwrap();
    (0..100_000)
        .map(|i| format!("key{i}"))
        .filter(|key| ring.primary(key.as_bytes()) == index)
        .take(wanted)
        .collect()
}

/// Restarts levee on the same config file and data directory (after a
/// SIGTERM, whose exit code must be 0), returning the new process.
pub async fn restart(levee: Levee) -> Levee {
    let Levee {
        mut proc,
        dir,
        config_path,
        ..
    } = levee;
    assert_eq!(
        proc.terminate(),
        Some(0),
        "levee did not exit 0 on SIGTERM; stderr:\n{}",
        proc.stderr()
    );
    let proc = Proc::spawn(
        &["serve", "--config", config_path.to_str().unwrap()],
        &dir.path().join("stderr-2.log"),
    );
    let (data, admin) = banner_addresses(&proc.banner);
    let levee = Levee {
        proc,
        data,
        admin,
        dir,
        config_path,
    };
    wait_ready(&levee).await;
    levee
}

/// Polls `/readyz` (bounded) until 200. Before that, the only acceptable
/// answers are "no connection yet" and 503 "starting" (the boot listener),
/// never an error or a premature 200 from a half-built state.
pub async fn wait_ready(levee: &Levee) {
    for _ in 0..POLLS {
        match try_call(Method::GET, &levee.admin_url("/readyz"), &[], "").await {
            Some((StatusCode::OK, _, _)) => return,
            Some((StatusCode::SERVICE_UNAVAILABLE, _, body)) => {
                assert!(
                    body.contains("starting"),
                    "not ready for another reason: {body}"
                );
            }
            Some((status, _, body)) => panic!("/readyz answered {status} while starting: {body}"),
            None => {}
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("levee never became ready; stderr:\n{}", levee.proc.stderr());
}

fn banner_addresses(banner: &str) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let field = |prefix: &str| {
        banner
            .split_whitespace()
            .find_map(|part| part.strip_prefix(prefix))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("unexpected levee banner {banner:?}"))
    };
    (field("data="), field("admin="))
}

/// A fresh plugin directory holding `retry.wasm` = `bytes`.
pub fn plugin_dir_with_retry(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("retry.wasm"), bytes).unwrap();
    dir
}

/// The temporary directory's path, for configs.
pub fn path_of(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// Sends only the head of a request announcing a `content_length`-byte
/// body, and returns the status line's code: what a client sees when the
/// server refuses a body by its declared length before reading it.
pub fn status_for_declared_length(
    address: std::net::SocketAddr,
    path: &str,
    content_length: u64,
) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    // Bounded: the status line is in the first bytes; read at most 64 KiB.
    while response.len() < 65_536 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}
