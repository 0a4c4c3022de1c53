//! `levee kv-replica`: the small, real key-value HTTP server that the demo
//! and the tests put behind levee.
//!
//! It is a real upstream, not a mock: values are files in `--data-dir`,
//! written atomically (temp file, fsync, rename, fsync of the directory), so
//! a killed replica keeps what it acknowledged and replicas can be compared
//! byte-for-byte. It prints `listening <addr>` as its first stdout line.
//! It speaks plain HTTP unless given a certificate ([`tls`]: `--tls-cert`,
//! `--tls-key`, optionally `--tls-client-ca` to require client
//! certificates), then HTTPS only.
//!
//! # API
//! - `PUT|POST /kv/{key}` stores the body. `DELETE /kv/{key}` deletes it
//!   (200, also when absent). `GET|HEAD /kv/{key}`: 200 with the value,
//!   404 when absent or deleted. Keys are 1..=120 bytes (after percent
//!   decoding); values at most 64 MiB.
//! - **Ordering by version** (last writer wins, see `levee_version`): every
//!   key remembers the version of what it holds, value or tombstone
//!   ("held", `Version::ZERO` when the key was never written). A write
//!   carrying `x-levee-version: V`
//!   - applies iff `V >` held: 200 with `x-levee-version: V`;
//!   - with `V ==` held is a redelivery: 200 with `x-levee-version: V`,
//!     nothing changes;
//!   - with `V <` held is superseded: **409 Conflict** with
//!     `x-levee-held-version: H` and body `superseded by H`, nothing
//!     changes. So replaying old writes (hinted handoff, repair, a second
//!     levee instance) can never roll a key back, and levee learns why.
//!
//!   A write without the header (a direct, non-levee write) applies
//!   unconditionally and is stored with `Version::ZERO`; a DELETE without
//!   it removes the key's file (no tombstone). A malformed header on a
//!   write (reads ignore it) answers 400 naming the header and the parse
//!   error. Why versions and not levee's LSNs, as before: LSNs restart at 1
//!   when levee's log is wiped or restored and mean nothing across two levee
//!   instances, so ordering by them silently dropped newer writes.
//!   `x-levee-lsn` is now ignored.
//! - A versioned DELETE leaves a tombstone that remembers its version.
//!   `GET|HEAD` answer a value with `x-levee-version: H`, a tombstone with
//!   404, `x-levee-version: H` and `x-levee-tombstone: true`, and a key
//!   never written with a plain 404 (no version), so a reader can tell a
//!   deletion from a replica that never heard of the key.
//! - `GET /healthz`: 200 `ok` (or the injected `healthz_status`).
//! - `POST /_fault` `{"delay_ms", "fail_status", "fail_count",
//!   "retry_after_s", "methods", "healthz_status"}` (all optional) replaces
//!   the fault settings for `/kv` requests: each is delayed by `delay_ms`;
//!   the next `fail_count` of them (all, when absent) whose method is in
//!   `methods` (all, when absent) answer `fail_status` (with `Retry-After`
//!   when `retry_after_s` is set) without touching the store.
//!   `DELETE /_fault` clears them; `GET /_fault` shows them.
//! - `GET /_stats`: `{"kv_requests", "injected_failures", "by_method",
//!   "healthz_requests", "connections", "tls_handshake_failures"}`
//!   (`connections`: accepted, after the TLS handshake when serving TLS).
//! - `GET /_log`: the last 4096 `/kv` requests, oldest first:
//!   `[{"seq", "method", "path", "at_ms", "status", "request_id",
//!   "header_names"}]`
//!   (`at_ms` is monotonic milliseconds since the replica started).
//! - `GET /_dump`: `{"keys": {key: {"sha256", "bytes", "version"}},
//!   "tombstones": {key: version}}`, sorted by key, versions in their wire
//!   form, for comparing replicas. `GET /_dump?values=1` adds `"value_hex"`
//!   (the value, hex) to every key whose value is at most 4 KiB, for
//!   checkers that must see the values themselves.
//!
//! # File format
//! One file per key, named by the hex of the key's bytes: one tag byte
//! (`v` value, `t` tombstone), the version as 20 bytes (physical ms as 8
//! bytes big-endian, logical as 4, instance as 8), then the value. Files of
//! the earlier format (tag `V` or `T`, then an LSN as 8 bytes big-endian)
//! are still read, with the version `Version::legacy(0, lsn)`, which every
//! version a levee clock issues supersedes; a write rewrites them in the
//! current format.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use levee_version::{HELD_VERSION_HEADER, InstanceId, VERSION_HEADER, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod tls;

pub use tls::TlsFiles;

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

/// Bytes of a value that `/_dump?values=1` includes (as `value_hex`).
pub const DUMP_VALUE_BYTES_MAX: usize = 4096;

/// On a 404 for a deleted key: `true` (the key's version rides along).
pub const TOMBSTONE_HEADER: &str = "x-levee-tombstone";

/// Record tags of the current format: tag, 20-byte version, value.
const TAG_VALUE: u8 = b'v';
const TAG_TOMBSTONE: u8 = b't';
/// Record tags of the earlier format: tag, 8-byte LSN, value.
const TAG_LEGACY_VALUE: u8 = b'V';
const TAG_LEGACY_TOMBSTONE: u8 = b'T';
/// Bytes of a version in a record (8 physical, 4 logical, 8 instance).
const VERSION_BYTES: usize = 20;
/// Bytes before the value in a current / earlier record.
const HEADER_BYTES: usize = 1 + VERSION_BYTES;
const LEGACY_HEADER_BYTES: usize = 1 + 8;

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
    healthz_requests: AtomicU64,
    /// Connections accepted (TLS: handshakes completed).
    connections: AtomicU64,
    tls_handshake_failures: AtomicU64,
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
            healthz_requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
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

/// The start of a record file: what it holds and at which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    tombstone: bool,
    version: Version,
    /// Bytes before the value.
    bytes: usize,
}

/// A stored record: its header and value.
struct Stored {
    header: Header,
    value: Vec<u8>,
}

fn encode_version(version: Version) -> [u8; VERSION_BYTES] {
    let mut bytes = [0; VERSION_BYTES];
    bytes[..8].copy_from_slice(&version.physical_ms.to_be_bytes());
    bytes[8..12].copy_from_slice(&version.logical.to_be_bytes());
    bytes[12..].copy_from_slice(&version.instance.0.to_be_bytes());
    bytes
}

fn decode_version(bytes: &[u8; VERSION_BYTES]) -> Version {
    let (physical, rest) = bytes.split_at(8);
    let (logical, instance) = rest.split_at(4);
    Version {
        physical_ms: u64::from_be_bytes(physical.try_into().expect("8 bytes")),
        logical: u32::from_be_bytes(logical.try_into().expect("4 bytes")),
        instance: InstanceId(u64::from_be_bytes(instance.try_into().expect("8 bytes"))),
    }
}

/// Decodes a record's header (current or earlier format) from its first
/// bytes; the reason when they are not a record.
fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    let (tombstone, legacy) = match bytes.first() {
        Some(&TAG_VALUE) => (false, false),
        Some(&TAG_TOMBSTONE) => (true, false),
        Some(&TAG_LEGACY_VALUE) => (false, true),
        Some(&TAG_LEGACY_TOMBSTONE) => (true, true),
        Some(tag) => return Err(format!("unknown tag byte {tag:#04x}")),
        None => return Err("empty file".into()),
    };
    let needed = if legacy {
        LEGACY_HEADER_BYTES
    } else {
        HEADER_BYTES
    };
    let Some(field) = bytes.get(1..needed) else {
        return Err(format!(
            "{} bytes, a record header needs {needed}",
            bytes.len()
        ));
    };
    let version = if legacy {
        Version::legacy(0, u64::from_be_bytes(field.try_into().expect("8 bytes")))
    } else {
        decode_version(field.try_into().expect("20 bytes"))
    };
    Ok(Header {
        tombstone,
        version,
        bytes: needed,
    })
}

fn corrupt(path: &Path, reason: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("corrupt record file {}: {reason}", path.display()),
    )
}

/// The file's bytes (at most `limit` of them), or `None` when it does not
/// exist.
fn read_file(path: &Path, limit: Option<usize>) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    match limit {
        Some(limit) => file.take(limit as u64).read_to_end(&mut bytes)?,
        None => (&file).read_to_end(&mut bytes)?,
    };
    Ok(Some(bytes))
}

/// The header of the key's record, without reading its value.
fn read_header(path: &Path) -> std::io::Result<Option<Header>> {
    let Some(bytes) = read_file(path, Some(HEADER_BYTES))? else {
        return Ok(None);
    };
    decode_header(&bytes)
        .map(Some)
        .map_err(|reason| corrupt(path, reason))
}

fn read_stored(path: &Path) -> std::io::Result<Option<Stored>> {
    let Some(mut bytes) = read_file(path, None)? else {
        return Ok(None);
    };
    let header = decode_header(&bytes).map_err(|reason| corrupt(path, reason))?;
    let value = bytes.split_off(header.bytes);
    Ok(Some(Stored { header, value }))
}

/// Writes a record atomically: temp file, fsync, rename, fsync directory.
fn write_stored(
    replica: &Replica,
    path: &Path,
    tag: u8,
    version: Version,
    value: &[u8],
) -> std::io::Result<()> {
    let temp = replica.data_dir.join(format!(
        "{}.tmp",
        replica.temp_counter.fetch_add(1, Ordering::AcqRel)
    ));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&[tag])?;
    file.write_all(&encode_version(version))?;
    file.write_all(value)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    std::fs::File::open(&replica.data_dir)?.sync_all()
}

/// Removes the key's file (an unversioned DELETE), durably.
fn remove_stored(replica: &Replica, path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => std::fs::File::open(&replica.data_dir)?.sync_all(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Stored at this version (`None`: an unversioned delete removed the
    /// key, nothing is stored).
    Written(Option<Version>),
    /// The key already holds exactly this version: a redelivery.
    AlreadyHeld(Version),
    /// The key holds this newer version; nothing changed.
    Superseded(Version),
}

/// A write to apply: a value, or a delete (`tombstone`).
struct WriteOp<'a> {
    tombstone: bool,
    version: Option<Version>,
    value: &'a [u8],
}

/// Compares and applies a write under the key's lock, so two writes to one
/// key never interleave between reading the held version and storing.
fn apply_write(replica: &Replica, key: &str, op: &WriteOp<'_>) -> std::io::Result<Applied> {
    let _guard = replica
        .lock_of(key)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let path = replica.path_of(key);
    let tag = if op.tombstone {
        TAG_TOMBSTONE
    } else {
        TAG_VALUE
    };
    let Some(version) = op.version else {
        if op.tombstone {
            remove_stored(replica, &path)?;
            return Ok(Applied::Written(None));
        }
        write_stored(replica, &path, tag, Version::ZERO, op.value)?;
        return Ok(Applied::Written(Some(Version::ZERO)));
    };
    let held = read_header(&path)?.map_or(Version::ZERO, |header| header.version);
    match version.cmp(&held) {
        std::cmp::Ordering::Less => Ok(Applied::Superseded(held)),
        std::cmp::Ordering::Equal => Ok(Applied::AlreadyHeld(held)),
        std::cmp::Ordering::Greater => {
            write_stored(replica, &path, tag, version, op.value)?;
            Ok(Applied::Written(Some(version)))
        }
    }
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
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let version = if reading {
        None
    } else {
        match write_version(headers) {
            Ok(version) => version,
            Err(refusal) => return text(StatusCode::BAD_REQUEST, refusal),
        }
    };
    let replica = Arc::clone(replica);
    let tombstone = *method == Method::DELETE;
    let outcome = tokio::task::spawn_blocking(move || {
        if reading {
            return read_stored(&replica.path_of(&key)).map(read_response);
        }
        let op = WriteOp {
            tombstone,
            version,
            value: &body,
        };
        apply_write(&replica, &key, &op).map(write_response)
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

/// The write's version from its header: `None` without one; the refusal
/// (naming the header and the parse error) when it is malformed.
fn write_version(headers: &HeaderMap) -> Result<Option<Version>, String> {
    let Some(value) = headers.get(VERSION_HEADER) else {
        return Ok(None);
    };
    let parsed = match value.to_str() {
        Ok(text) => Version::parse(text).map_err(|error| error.to_string()),
        Err(_) => Err("not visible ASCII".to_owned()),
    };
    parsed
        .map(Some)
        .map_err(|reason| format!("malformed {VERSION_HEADER} header: {reason}\n"))
}

fn version_value(version: Version) -> HeaderValue {
    HeaderValue::from_str(&version.to_string()).expect("a version's wire form is ASCII")
}

fn read_response(stored: Option<Stored>) -> Response {
    let Some(stored) = stored else {
        return text(StatusCode::NOT_FOUND, "no such key\n");
    };
    let mut response = if stored.header.tombstone {
        let mut response = text(StatusCode::NOT_FOUND, "deleted\n");
        response
            .headers_mut()
            .insert(TOMBSTONE_HEADER, HeaderValue::from_static("true"));
        response
    } else {
        (StatusCode::OK, stored.value).into_response()
    };
    response
        .headers_mut()
        .insert(VERSION_HEADER, version_value(stored.header.version));
    response
}

fn write_response(applied: Applied) -> Response {
    let (status, body, header) = match applied {
        Applied::Written(stored) => (
            StatusCode::OK,
            "ok\n".to_owned(),
            stored.map(|v| (VERSION_HEADER, v)),
        ),
        Applied::AlreadyHeld(held) => (
            StatusCode::OK,
            "already held\n".to_owned(),
            Some((VERSION_HEADER, held)),
        ),
        Applied::Superseded(held) => (
            StatusCode::CONFLICT,
            format!("superseded by {held}\n"),
            Some((HELD_VERSION_HEADER, held)),
        ),
    };
    let mut response = text(status, body);
    if let Some((name, version)) = header {
        response.headers_mut().insert(name, version_value(version));
    }
    response
}

async fn healthz(State(replica): State<Arc<Replica>>) -> Response {
    replica.healthz_requests.fetch_add(1, Ordering::AcqRel);
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
        "healthz_requests": replica.healthz_requests.load(Ordering::Acquire),
        "connections": replica.connections.load(Ordering::Acquire),
        "tls_handshake_failures": replica.tls_handshake_failures.load(Ordering::Acquire),
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

async fn dump(State(replica): State<Arc<Replica>>, RawQuery(query): RawQuery) -> Response {
    let with_values = match dump_values_wanted(query.as_deref().unwrap_or("")) {
        Ok(wanted) => wanted,
        Err(reason) => return text(StatusCode::BAD_REQUEST, format!("{reason}\n")),
    };
    let replica = Arc::clone(&replica);
    match tokio::task::spawn_blocking(move || dump_store(&replica, with_values)).await {
        Ok(Ok(dump)) => axum::Json(dump).into_response(),
        Ok(Err(error)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("dump failed: {error}\n"),
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "dump task failed\n"),
    }
}

/// Reads `/_dump`'s query: `values=1|true|0|false` (absent: no values).
fn dump_values_wanted(query: &str) -> Result<bool, String> {
    let mut wanted = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "values" {
            return Err(format!(
                "unknown /_dump query parameter {name:?}; only values=1 is known"
            ));
        }
        wanted = match value {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(format!("values must be 1, true, 0 or false, not {value:?}")),
        };
    }
    Ok(wanted)
}

fn dump_store(replica: &Replica, with_values: bool) -> std::io::Result<serde_json::Value> {
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
        let version = stored.header.version.to_string();
        if stored.header.tombstone {
            tombstones.insert(key, serde_json::Value::String(version));
            continue;
        }
        let mut record = serde_json::json!({
            "sha256": hex::encode(Sha256::digest(&stored.value)),
            "bytes": stored.value.len(),
            "version": version,
        });
        if with_values && stored.value.len() <= DUMP_VALUE_BYTES_MAX {
            record["value_hex"] = hex::encode(&stored.value).into();
        }
        keys.insert(key, record);
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
/// passes SIGINT/SIGTERM), over TLS when given `tls` files (read before
/// binding: a wrong one stops it first); prints `listening <addr>` first.
pub async fn run(
    listen: SocketAddr,
    data_dir: &Path,
    tls: Option<&TlsFiles>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let replica = Replica::open(data_dir)?;
    let tls = tls.map(tls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {address}")?;
        stdout.flush()?;
    }
    let app = router(Arc::clone(&replica));
    match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config, replica)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
        None => {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(move |_| {
                replica.connections.fetch_add(1, Ordering::AcqRel);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
    }
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

    /// A response header's value as text ("" when absent).
    fn header(headers: &HeaderMap, name: &str) -> String {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    fn v(physical_ms: u64, logical: u32) -> String {
        Version {
            physical_ms,
            logical,
            instance: InstanceId(0xabc),
        }
        .to_string()
    }

    async fn put_at(
        app: &Router,
        key: &str,
        version: &str,
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        call(
            app,
            "PUT",
            &format!("/kv/{key}"),
            &[(VERSION_HEADER, version)],
            body,
        )
        .await
    }

    async fn dump_of(app: &Router, query: &str) -> serde_json::Value {
        let (status, _, body) = call(app, "GET", &format!("/_dump{query}"), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    #[tokio::test]
    async fn a_newer_version_applies_and_is_echoed_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        let (status, headers, _) = put_at(&app, "k", &v(10, 0), "old").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, v(10, 0))
        );
        let (status, headers, _) = put_at(&app, "k", &v(10, 1), "new").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, v(10, 1))
        );
        let (status, headers, body) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "new"));
        assert_eq!(headers[VERSION_HEADER], v(10, 1));
        assert!(!headers.contains_key(TOMBSTONE_HEADER));
        let (status, headers, _) = call(&app, "HEAD", "/kv/k", &[], "").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, v(10, 1))
        );
    }

    #[tokio::test]
    async fn an_equal_version_is_an_idempotent_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "k", &v(20, 3), "first").await;
        let (status, headers, _) = put_at(&app, "k", &v(20, 3), "other body").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, v(20, 3))
        );
        assert_eq!(call(&app, "GET", "/kv/k", &[], "").await.2, "first");
        let (status, _, _) =
            call(&app, "DELETE", "/kv/k", &[(VERSION_HEADER, &v(20, 3))], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            call(&app, "GET", "/kv/k", &[], "").await.2,
            "first",
            "same version, no delete"
        );
    }

    #[tokio::test]
    async fn an_older_version_is_refused_with_409_and_the_held_version() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "k", &v(30, 0), "held").await;
        for (method, body) in [("PUT", "stale"), ("POST", "stale"), ("DELETE", "")] {
            let (status, headers, reply) =
                call(&app, method, "/kv/k", &[(VERSION_HEADER, &v(29, 9))], body).await;
            assert_eq!(status, StatusCode::CONFLICT, "{method}");
            assert_eq!(headers[HELD_VERSION_HEADER], v(30, 0));
            assert!(!headers.contains_key(VERSION_HEADER));
            assert_eq!(reply, format!("superseded by {}\n", v(30, 0)));
        }
        let (status, headers, body) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "held"));
        assert_eq!(headers[VERSION_HEADER], v(30, 0));
    }

    #[tokio::test]
    async fn unversioned_writes_apply_unconditionally_at_version_zero() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "k", &v(40, 0), "versioned").await;
        let (status, headers, _) = call(&app, "PUT", "/kv/k", &[], "direct").await;
        let zero = Version::ZERO.to_string();
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, zero.clone())
        );
        let (_, headers, body) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!(
            (body.as_str(), header(&headers, VERSION_HEADER)),
            ("direct", zero.clone())
        );
        // Any versioned write supersedes a direct one; the LSN header is ignored.
        let (status, _, _) = call(
            &app,
            "PUT",
            "/kv/k",
            &[(VERSION_HEADER, &v(1, 0)), ("x-levee-lsn", "not a number")],
            "levee",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/kv/k", &[], "").await.2, "levee");
        // An unversioned delete removes the key: no tombstone, plain 404.
        let (status, headers, _) = call(&app, "DELETE", "/kv/k", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key(VERSION_HEADER));
        let (status, headers, _) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!headers.contains_key(VERSION_HEADER));
        assert_eq!(dump_of(&app, "").await["tombstones"], serde_json::json!({}));
    }

    #[tokio::test]
    async fn a_versioned_delete_leaves_a_tombstone_that_answers_404_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "k", &v(50, 0), "value").await;
        let (status, headers, _) =
            call(&app, "DELETE", "/kv/k", &[(VERSION_HEADER, &v(51, 0))], "").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::OK, v(51, 0))
        );
        for method in ["GET", "HEAD"] {
            let (status, headers, _) = call(&app, method, "/kv/k", &[], "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
            assert_eq!(headers[VERSION_HEADER], v(51, 0));
            assert_eq!(headers[TOMBSTONE_HEADER], "true");
        }
        let (status, headers, _) = put_at(&app, "k", &v(50, 5), "older").await;
        assert_eq!(
            (status, header(&headers, HELD_VERSION_HEADER)),
            (StatusCode::CONFLICT, v(51, 0))
        );
        // A delete of a key never written still remembers its version.
        call(
            &app,
            "DELETE",
            "/kv/gone",
            &[(VERSION_HEADER, &v(52, 0))],
            "",
        )
        .await;
        let (status, headers, _) = put_at(&app, "gone", &v(49, 0), "late").await;
        assert_eq!(
            (status, header(&headers, HELD_VERSION_HEADER)),
            (StatusCode::CONFLICT, v(52, 0))
        );
        // Never written: 404 without a version.
        let (status, headers, _) = call(&app, "GET", "/kv/never", &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!headers.contains_key(VERSION_HEADER));
        assert!(!headers.contains_key(TOMBSTONE_HEADER));
        // A newer write revives the key.
        assert_eq!(put_at(&app, "k", &v(53, 0), "back").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/kv/k", &[], "").await.2, "back");
    }

    #[tokio::test]
    async fn a_malformed_version_header_is_refused_with_400_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        for (method, bad) in [
            ("PUT", "12"),
            ("DELETE", "1.2.XYZ"),
            ("POST", "1.2.9F3A0C1D2E4B5A6C"),
        ] {
            let (status, _, body) =
                call(&app, method, "/kv/k", &[(VERSION_HEADER, bad)], "x").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {bad}");
            assert!(body.contains(VERSION_HEADER), "{body}");
            assert!(body.contains("version"), "{body}");
        }
        let (_, _, body) = call(&app, "PUT", "/kv/k", &[(VERSION_HEADER, "1.2")], "x").await;
        assert!(
            body.contains("<physical_ms>.<logical>.<16 hex digits>"),
            "{body}"
        );
        assert_eq!(
            call(&app, "GET", "/kv/k", &[], "").await.0,
            StatusCode::NOT_FOUND,
            "nothing was written"
        );
    }

    #[tokio::test]
    async fn files_of_the_earlier_lsn_format_are_read_and_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let file = |key: &str| dir.path().join(hex::encode(key));
        let mut value = vec![TAG_LEGACY_VALUE];
        value.extend_from_slice(&7u64.to_be_bytes());
        value.extend_from_slice(b"legacy");
        std::fs::write(file("old"), value).unwrap();
        let mut tombstone = vec![TAG_LEGACY_TOMBSTONE];
        tombstone.extend_from_slice(&9u64.to_be_bytes());
        std::fs::write(file("dead"), tombstone).unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        let legacy = |lsn| Version::legacy(0, lsn).to_string();
        let (status, headers, body) = call(&app, "GET", "/kv/old", &[], "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "legacy"));
        assert_eq!(headers[VERSION_HEADER], legacy(7));
        let (status, headers, _) = call(&app, "GET", "/kv/dead", &[], "").await;
        assert_eq!(
            (status, header(&headers, VERSION_HEADER)),
            (StatusCode::NOT_FOUND, legacy(9))
        );
        let dump = dump_of(&app, "").await;
        assert_eq!(dump["keys"]["old"]["version"], legacy(7));
        assert_eq!(dump["tombstones"]["dead"], legacy(9));
        // Any version a clock issues is newer; the rewrite uses the new format.
        assert_eq!(put_at(&app, "old", &v(1, 0), "new").await.0, StatusCode::OK);
        assert_eq!(
            put_at(&app, "dead", &v(1, 0), "alive").await.0,
            StatusCode::OK
        );
        assert_eq!(std::fs::read(file("old")).unwrap()[0], TAG_VALUE);
        assert_eq!(call(&app, "GET", "/kv/dead", &[], "").await.2, "alive");
    }

    #[tokio::test]
    async fn a_corrupt_record_file_answers_500_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(hex::encode("short")), b"v123").unwrap();
        std::fs::write(
            dir.path().join(hex::encode("odd")),
            b"Zxxxxxxxxxxxxxxxxxxxxxxx",
        )
        .unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        let (status, _, body) = call(&app, "GET", "/kv/short", &[], "").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body.contains(&hex::encode("short")) && body.contains("needs 21"),
            "{body}"
        );
        let (status, _, body) = put_at(&app, "odd", &v(1, 0), "x").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("unknown tag byte 0x5a"), "{body}");
    }

    #[tokio::test]
    async fn the_dump_shows_versions_and_on_request_small_values() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "small", &v(60, 0), "hi").await;
        let big = "b".repeat(DUMP_VALUE_BYTES_MAX + 1);
        put_at(&app, "big", &v(60, 1), &big).await;
        call(
            &app,
            "DELETE",
            "/kv/gone",
            &[(VERSION_HEADER, &v(60, 2))],
            "",
        )
        .await;
        let dump = dump_of(&app, "").await;
        assert_eq!(
            dump,
            serde_json::json!({
                "keys": {
                    "big": {"sha256": hex::encode(Sha256::digest(&big)), "bytes": big.len(), "version": v(60, 1)},
                    "small": {"sha256": hex::encode(Sha256::digest("hi")), "bytes": 2, "version": v(60, 0)},
                },
                "tombstones": {"gone": v(60, 2)},
            })
        );
        let with_values = dump_of(&app, "?values=1").await;
        assert_eq!(with_values["keys"]["small"]["value_hex"], hex::encode("hi"));
        assert!(with_values["keys"]["big"].get("value_hex").is_none());
        assert_eq!(with_values["tombstones"], dump["tombstones"]);
        assert_eq!(dump_of(&app, "?values=0").await, dump);
        for bad in ["?values=yes", "?other=1"] {
            let (status, _, body) = call(&app, "GET", &format!("/_dump{bad}"), &[], "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
    }

    #[tokio::test]
    async fn a_reopened_replica_keeps_the_versions_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        put_at(&app, "k", &v(70, 4), "kept").await;
        call(&app, "DELETE", "/kv/t", &[(VERSION_HEADER, &v(71, 0))], "").await;
        let before = dump_of(&app, "").await;
        drop(app);
        let app = router(Replica::open(dir.path()).unwrap());
        assert_eq!(dump_of(&app, "").await, before);
        let (_, headers, body) = call(&app, "GET", "/kv/k", &[], "").await;
        assert_eq!(
            (body.as_str(), header(&headers, VERSION_HEADER)),
            ("kept", v(70, 4))
        );
        let (status, headers, _) = put_at(&app, "k", &v(70, 3), "older").await;
        assert_eq!(
            (status, header(&headers, HELD_VERSION_HEADER)),
            (StatusCode::CONFLICT, v(70, 4))
        );
        let (status, headers, _) = put_at(&app, "t", &v(70, 9), "older").await;
        assert_eq!(
            (status, header(&headers, HELD_VERSION_HEADER)),
            (StatusCode::CONFLICT, v(71, 0))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_versioned_writes_to_one_key_keep_the_newest() {
        const WRITERS: u32 = 32;
        let dir = tempfile::tempdir().unwrap();
        let app = router(Replica::open(dir.path()).unwrap());
        // Versions arrive in a scrambled order (a permutation of 0..WRITERS).
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| (i * 7) % WRITERS)
            .map(|logical| {
                let app = app.clone();
                tokio::spawn(async move {
                    let version = v(80, logical);
                    put_at(&app, "hot", &version, &format!("value {logical}"))
                        .await
                        .0
                })
            })
            .collect();
        for task in tasks {
            let status = task.await.unwrap();
            assert!(
                matches!(status, StatusCode::OK | StatusCode::CONFLICT),
                "{status}"
            );
        }
        let (_, headers, body) = call(&app, "GET", "/kv/hot", &[], "").await;
        let newest = WRITERS - 1;
        assert_eq!(
            (body, header(&headers, VERSION_HEADER)),
            (format!("value {newest}"), v(80, newest))
        );
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
