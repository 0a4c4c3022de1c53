//! `levee kv-replica`: the small, real key-value HTTP server that the demo
//! and the tests put behind levee.
//!
//! It is a real upstream, not a mock: values are files in `--data-dir`,
//! written atomically (temp file, fsync, rename, fsync of the directory), so
//! a killed replica keeps what it acknowledged and replicas can be compared
//! byte-for-byte. It prints `listening <addr>` as its first stdout line.
//!
//! # API
//! - `PUT|POST /kv/{key}` stores the body (200). `DELETE /kv/{key}` removes
//!   it (200, also when absent). `GET|HEAD /kv/{key}`: 200 with the value,
//!   404 when absent or deleted. Keys are 1..=120 bytes (after percent
//!   decoding); values at most 64 MiB.
//! - **Ordering (optional)**: a write carrying `x-levee-lsn: N` is applied
//!   only if `N >=` the LSN stored with the key (writes without it carry
//!   LSN 0 and always apply). A stale write answers 200 with
//!   `x-kv-applied: false` and changes nothing, so replaying old writes
//!   (hinted handoff) can never roll a key back. Deletes with an LSN leave a
//!   tombstone that remembers it. `GET` returns the stored LSN in
//!   `x-levee-lsn`.
//! - `GET /healthz`: 200 `ok` (or the injected `healthz_status`).
//! - `POST /_fault` `{"delay_ms", "fail_status", "fail_count",
//!   "retry_after_s", "methods", "healthz_status"}` (all optional) replaces
//!   the fault settings for `/kv` requests: each is delayed by `delay_ms`;
//!   the next `fail_count` of them (all, when absent) whose method is in
//!   `methods` (all, when absent) answer `fail_status` (with `Retry-After`
//!   when `retry_after_s` is set) without touching the store.
//!   `DELETE /_fault` clears them; `GET /_fault` shows them.
//! - `GET /_stats`: `{"kv_requests", "injected_failures", "by_method"}`.
//! - `GET /_log`: the last 4096 `/kv` requests, oldest first:
//!   `[{"seq", "method", "path", "at_ms", "status", "request_id",
//!   "header_names"}]`
//!   (`at_ms` is monotonic milliseconds since the replica started).
//! - `GET /_dump`: `{"keys": {key: {"sha256", "bytes", "lsn"}}, "tombstones":
//!   {key: lsn}}`, sorted by key, for comparing replicas.
//!
//! # File format
//! One file per key, named by the hex of the key's bytes: one tag byte
//! (`V` value, `T` tombstone), the LSN as 8 bytes big-endian, then the value.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of a key (its hex file name must fit in 255 bytes).
pub const KEY_BYTES_MAX: usize = 120;
/// Bytes of a value.
pub const VALUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Entries kept in the request log.
pub const REQUEST_LOG_MAX: usize = 4096;
/// Stripes of the per-key write locks.
const LOCK_STRIPES: usize = 64;
/// The longest injectable delay.
const DELAY_MS_MAX: u64 = 60_000;

/// The LSN header shared with levee's write path.
pub const LSN_HEADER: &str = "x-levee-lsn";
const TAG_VALUE: u8 = b'V';
const TAG_TOMBSTONE: u8 = b'T';

/// Injected faults (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    pub delay_ms: u64,
    pub fail_status: Option<u16>,
    pub fail_count: Option<u32>,
    pub retry_after_s: Option<u32>,
    pub methods: Option<Vec<String>>,
    pub healthz_status: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
struct LogEntry {
    seq: u64,
    method: String,
    path: String,
    at_ms: u64,
    status: u16,
    request_id: Option<String>,
    /// Names of the request's headers (to check what a proxy forwarded).
    header_names: Vec<String>,
}

/// One replica's state.
#[derive(Debug)]
pub struct Replica {
    data_dir: PathBuf,
    started: Instant,
    faults: Mutex<Faults>,
    log: Mutex<VecDeque<LogEntry>>,
    by_method: Mutex<BTreeMap<String, u64>>,
    kv_requests: AtomicU64,
    injected_failures: AtomicU64,
    temp_counter: AtomicU64,
    locks: Vec<Mutex<()>>,
}

impl Replica {
    pub fn open(data_dir: &Path) -> std::io::Result<Arc<Replica>> {
        std::fs::create_dir_all(data_dir)?;
        // Leftover temp files are writes that never got acknowledged.
        for entry in std::fs::read_dir(data_dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Arc::new(Replica {
            data_dir: data_dir.to_owned(),
            started: Instant::now(),
            faults: Mutex::default(),
            log: Mutex::default(),
            by_method: Mutex::default(),
            kv_requests: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }))
    }

    /// Replaces the fault settings (what `POST /_fault` does).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    /// `/kv` requests served so far, injected failures included.
    pub fn kv_requests(&self) -> u64 {
        self.kv_requests.load(Ordering::Acquire)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.data_dir.join(hex::encode(key.as_bytes()))
    }

    fn lock_of(&self, key: &str) -> &Mutex<()> {
        let stripe = stripe_of(key.as_bytes());
        &self.locks[stripe]
    }

    /// Decides the fault for one request: `(delay, failure status)`.
    fn take_fault(&self, method: &Method) -> (u64, Option<(u16, Option<u32>)>) {
        let mut faults = self.faults.lock().expect("faults lock");
        let applies = faults
            .methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case(method.as_str())));
        let failure = match (faults.fail_status, applies) {
            (Some(status), true) => match faults.fail_count {
                Some(0) => None,
                Some(count) => {
                    faults.fail_count = Some(count - 1);
                    Some((status, faults.retry_after_s))
                }
                None => Some((status, faults.retry_after_s)),
            },
            _ => None,
        };
        (faults.delay_ms, failure)
    }

    fn record(&self, method: &Method, path: String, status: u16, headers: &HeaderMap) {
        let seq = self.kv_requests.fetch_add(1, Ordering::AcqRel);
        *self
            .by_method
            .lock()
            .expect("stats lock")
            .entry(method.to_string())
            .or_default() += 1;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect());
        let header_names = headers
            .keys()
            .take(64)
            .map(|name| name.as_str().to_owned())
            .collect();
        let entry = LogEntry {
            seq,
            method: method.to_string(),
            path,
            at_ms: self.elapsed_ms(),
            status,
            request_id,
            header_names,
        };
        let mut log = self.log.lock().expect("log lock");
        if log.len() == REQUEST_LOG_MAX {
            log.pop_front();
        }
        log.push_back(entry);
    }
}

/// A stored record: tag, LSN, value.
struct Stored {
    tombstone: bool,
    lsn: u64,
    value: Vec<u8>,
}

fn read_stored(path: &Path) -> std::io::Result<Option<Stored>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if bytes.len() < 9 || !matches!(bytes[0], TAG_VALUE | TAG_TOMBSTONE) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "corrupt record file",
        ));
    }
    let lsn = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    Ok(Some(Stored {
        tombstone: bytes[0] == TAG_TOMBSTONE,
        lsn,
        value: bytes[9..].to_vec(),
    }))
}

/// Writes a record atomically: temp file, fsync, rename, fsync directory.
fn write_stored(
    replica: &Replica,
    path: &Path,
    tag: u8,
    lsn: u64,
    value: &[u8],
) -> std::io::Result<()> {
    let temp = replica.data_dir.join(format!(
        "{}.tmp",
        replica.temp_counter.fetch_add(1, Ordering::AcqRel)
    ));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&[tag])?;
    file.write_all(&lsn.to_be_bytes())?;
    file.write_all(value)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    std::fs::File::open(&replica.data_dir)?.sync_all()
}

/// Applies a write under the key's lock; returns whether it was applied.
fn apply_write(
    replica: &Replica,
    key: &str,
    tag: u8,
    lsn: u64,
    value: &[u8],
) -> std::io::Result<bool> {
    let _guard = replica.lock_of(key).lock().expect("key lock");
    let path = replica.path_of(key);
    if lsn > 0
        && let Some(stored) = read_stored(&path)?
        && stored.lsn > lsn
    {
        return Ok(false);
    }
    if tag == TAG_TOMBSTONE && lsn == 0 {
        match std::fs::remove_file(&path) {
            Ok(()) => std::fs::File::open(&replica.data_dir)?.sync_all()?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        return Ok(true);
    }
    write_stored(replica, &path, tag, lsn, value)?;
    Ok(true)
}

/// The replica's router.
pub fn router(replica: Arc<Replica>) -> Router {
    Router::new()
        .route("/kv/{key}", get(kv).head(kv).put(kv).post(kv).delete(kv))
        .route("/healthz", get(healthz))
        .route(
            "/_fault",
            get(get_fault).post(set_fault).delete(clear_fault),
        )
        .route("/_stats", get(stats))
        .route("/_log", get(request_log))
        .route("/_dump", get(dump))
        .layer(DefaultBodyLimit::max(VALUE_BYTES_MAX))
        .with_state(replica)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

async fn kv(
    State(replica): State<Arc<Replica>>,
    method: Method,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/kv/{key}");
    let (delay_ms, failure) = replica.take_fault(&method);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms.min(DELAY_MS_MAX))).await;
    }
    let response = match failure {
        Some((status, retry_after_s)) => {
            replica.injected_failures.fetch_add(1, Ordering::AcqRel);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = text(status, "injected failure\n");
            if let Some(seconds) = retry_after_s {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        None => serve_kv(&replica, &method, key, &headers, body).await,
    };
    replica.record(&method, path, response.status().as_u16(), &headers);
    response
}

async fn serve_kv(
    replica: &Arc<Replica>,
    method: &Method,
    key: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return text(
            StatusCode::BAD_REQUEST,
            format!("key must be 1 to {KEY_BYTES_MAX} bytes\n"),
        );
    }
    let lsn = match headers
        .get(LSN_HEADER)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
    {
        None => 0,
        Some(Some(lsn)) => lsn,
        Some(None) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{LSN_HEADER} must be an unsigned integer\n"),
            );
        }
    };
    let replica = Arc::clone(replica);
    let method = method.clone();
    let outcome = tokio::task::spawn_blocking(move || match method {
        Method::GET | Method::HEAD => {
            read_stored(&replica.path_of(&key)).map(|stored| match stored {
                Some(stored) if !stored.tombstone => {
                    let mut response = (StatusCode::OK, stored.value).into_response();
                    response
                        .headers_mut()
                        .insert(LSN_HEADER, HeaderValue::from(stored.lsn));
                    response
                }
                _ => text(StatusCode::NOT_FOUND, "no such key\n"),
            })
        }
        Method::DELETE => apply_write(&replica, &key, TAG_TOMBSTONE, lsn, &[]).map(write_response),
        _ => apply_write(&replica, &key, TAG_VALUE, lsn, &body).map(write_response),
    })
    .await;
    match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {error}\n"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed\n"),
    }
}

fn write_response(applied: bool) -> Response {
    let mut response = text(StatusCode::OK, if applied { "ok\n" } else { "stale\n" });
    response.headers_mut().insert(
        "x-kv-applied",
        HeaderValue::from_static(if applied { "true" } else { "false" }),
    );
    response
}

async fn healthz(State(replica): State<Arc<Replica>>) -> Response {
    let status = replica.faults.lock().expect("faults lock").healthz_status;
    match status.and_then(|s| StatusCode::from_u16(s).ok()) {
        Some(status) => text(status, "injected\n"),
        None => text(StatusCode::OK, "ok\n"),
    }
}

async fn get_fault(State(replica): State<Arc<Replica>>) -> Response {
    axum::Json(replica.faults.lock().expect("faults lock").clone()).into_response()
}

async fn set_fault(State(replica): State<Arc<Replica>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid fault settings: {error}\n"),
            );
        }
    };
    let valid_status = |s: Option<u16>| s.is_none_or(|s| (200..=599).contains(&s));
    if !valid_status(faults.fail_status)
        || !valid_status(faults.healthz_status)
        || faults.delay_ms > DELAY_MS_MAX
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!("statuses must be 200..=599 and delay_ms <= {DELAY_MS_MAX}\n"),
        );
    }
    *replica.faults.lock().expect("faults lock") = faults;
    text(StatusCode::OK, "ok\n")
}

async fn clear_fault(State(replica): State<Arc<Replica>>) -> Response {
    *replica.faults.lock().expect("faults lock") = Faults::default();
    text(StatusCode::OK, "ok\n")
}

async fn stats(State(replica): State<Arc<Replica>>) -> Response {
    let by_method = replica.by_method.lock().expect("stats lock").clone();
    axum::Json(serde_json::json!({
        "kv_requests": replica.kv_requests.load(Ordering::Acquire),
        "injected_failures": replica.injected_failures.load(Ordering::Acquire),
        "by_method": by_method,
    }))
    .into_response()
}

async fn request_log(State(replica): State<Arc<Replica>>) -> Response {
    let entries: Vec<LogEntry> = replica
        .log
        .lock()
        .expect("log lock")
        .iter()
        .cloned()
        .collect();
    axum::Json(entries).into_response()
}

async fn dump(State(replica): State<Arc<Replica>>) -> Response {
    let replica = Arc::clone(&replica);
    match tokio::task::spawn_blocking(move || dump_store(&replica)).await {
        Ok(Ok(dump)) => axum::Json(dump).into_response(),
        Ok(Err(error)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("dump failed: {error}\n"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "dump task failed\n"),
    }
}

fn dump_store(replica: &Replica) -> std::io::Result<serde_json::Value> {
    let mut keys = BTreeMap::new();
    let mut tombstones = BTreeMap::new();
    for entry in std::fs::read_dir(&replica.data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = hex::decode(&name)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            continue; // temp files and strangers
        };
        let Some(stored) = read_stored(&entry.path())? else {
            continue;
        };
        if stored.tombstone {
            tombstones.insert(key, stored.lsn);
        } else {
            let sha256 = hex::encode(Sha256::digest(&stored.value));
            keys.insert(key, serde_json::json!({"sha256": sha256, "bytes": stored.value.len(), "lsn": stored.lsn}));
        }
    }
    Ok(serde_json::json!({"keys": keys, "tombstones": tombstones}))
}

/// The lock stripe of a key: any stable spread will do (keys only need to
/// agree with themselves), so std's SipHash, not the ring's SHA-1.
fn stripe_of(key: &[u8]) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (hash % LOCK_STRIPES as u64) as usize
}

/// Runs a replica until `stop` resolves (the `levee kv-replica` command
/// passes SIGINT/SIGTERM); prints `listening <addr>` first.
pub async fn run(
    listen: SocketAddr,
    data_dir: &Path,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let replica = Replica::open(data_dir)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {address}")?;
        stdout.flush()?;
    }
    axum::serve(listener, router(replica))
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .clone()
            .oneshot(
                request
                    .body(axum::body::Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn put_get_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        assert_eq!(
            call(&app, "PUT", "/kv/alice", &[], "v1").await.0,
            StatusCode::OK
        );
        assert_eq!(call(&app, "GET", "/kv/alice", &[], "").await.2, "v1");
        assert_eq!(
            call(&app, "GET", "/kv/bob", &[], "").await.0,
            StatusCode::NOT_FOUND
        );
        // A new replica process over the same directory sees the data.
        let reopened = router(Replica::open(dir.path()).unwrap());
        assert_eq!(call(&reopened, "GET", "/kv/alice", &[], "").await.2, "v1");
        assert_eq!(
            call(&reopened, "DELETE", "/kv/alice", &[], "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&reopened, "GET", "/kv/alice", &[], "").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(
                &reopened,
                "PUT",
                &format!("/kv/{}", "k".repeat(121)),
                &[],
                "x"
            )
            .await
            .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn stale_lsn_writes_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        let (_, headers, _) = call(&app, "PUT", "/kv/k", &[(LSN_HEADER, "10")], "new").await;
        assert_eq!(headers["x-kv-applied"], "true");
        let (status, headers, _) = call(&app, "PUT", "/kv/k", &[(LSN_HEADER, "5")], "old").await;
        assert_eq!(
            (status, &headers["x-kv-applied"]),
            (StatusCode::OK, &HeaderValue::from_static("false"))
        );
        let (_, headers, body) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!(
            (body.as_str(), &headers[LSN_HEADER]),
            ("new", &HeaderValue::from(10u64))
        );
        // A delete at a later LSN leaves a tombstone that blocks older puts.
        call(&app, "DELETE", "/kv/k", &[(LSN_HEADER, "12")], "").await;
        let (_, headers, _) = call(&app, "PUT", "/kv/k", &[(LSN_HEADER, "11")], "older").await;
        assert_eq!(headers["x-kv-applied"], "false");
        assert_eq!(
            call(&app, "GET", "/kv/k", &[], "").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "GET", "/kv/k", &[(LSN_HEADER, "x")], "").await.0,
            StatusCode::BAD_REQUEST
        );
        let dump: serde_json::Value =
            serde_json::from_str(&call(&app, "GET", "/_dump", &[], "").await.2).unwrap();
        assert_eq!(dump["tombstones"]["k"], 12);
    }

    #[tokio::test]
    async fn faults_fail_a_counted_number_of_matching_requests() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        let fault =
            r#"{"fail_status": 503, "fail_count": 2, "retry_after_s": 1, "methods": ["GET"]}"#;
        assert_eq!(
            call(&app, "POST", "/_fault", &[], fault).await.0,
            StatusCode::OK
        );
        assert_eq!(call(&app, "PUT", "/kv/a", &[], "x").await.0, StatusCode::OK);
        let (status, headers, _) = call(&app, "GET", "/kv/a", &[], "").await;
        assert_eq!(
            (status, &headers[header::RETRY_AFTER]),
            (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from(1))
        );
        assert_eq!(
            call(&app, "GET", "/kv/a", &[], "").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call(&app, "GET", "/kv/a", &[], "").await.0, StatusCode::OK);
        let stats: serde_json::Value =
            serde_json::from_str(&call(&app, "GET", "/_stats", &[], "").await.2).unwrap();
        assert_eq!(
            (
                stats["kv_requests"].as_u64(),
                stats["injected_failures"].as_u64()
            ),
            (Some(4), Some(2))
        );
        let log: Vec<serde_json::Value> =
            serde_json::from_str(&call(&app, "GET", "/_log", &[], "").await.2).unwrap();
        let statuses: Vec<u64> = log.iter().map(|e| e["status"].as_u64().unwrap()).collect();
        assert_eq!(statuses, vec![200, 503, 503, 200]);
        assert_eq!(
            call(&app, "POST", "/_fault", &[], r#"{"nope": 1}"#).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(&app, "POST", "/_fault", &[], r#"{"healthz_status": 500}"#)
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/healthz", &[], "").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            call(&app, "DELETE", "/_fault", &[], "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/healthz", &[], "").await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn dumps_of_equal_stores_are_equal() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (app_a, app_b) = (
            router(Replica::open(a.path()).unwrap()),
            router(Replica::open(b.path()).unwrap()),
        );
        for app in [&app_a, &app_b] {
            call(app, "PUT", "/kv/x", &[], "1").await;
            call(app, "PUT", "/kv/y", &[], "2").await;
        }
        let dump_a = call(&app_a, "GET", "/_dump", &[], "").await.2;
        assert_eq!(dump_a, call(&app_b, "GET", "/_dump", &[], "").await.2);
        call(&app_b, "PUT", "/kv/y", &[], "3").await;
        assert_ne!(dump_a, call(&app_b, "GET", "/_dump", &[], "").await.2);
    }
}
