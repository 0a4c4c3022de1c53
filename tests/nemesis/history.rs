//! What the nemesis test records: every write and read the clients made,
//! with its real-time interval and what levee answered, and the HTTP call
//! that tells "never reached levee" (connect failure) from "outcome
//! unknown" (reset, timeout).

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A write version in its wire form `<physical_ms>.<logical>.<instance hex>`
/// (`levee_version::Version`), parsed here so the test needs no new
/// dependency; ordered like the real one (field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ver {
    pub physical_ms: u64,
    pub logical: u32,
    pub instance: u64,
}

impl Ver {
    pub fn parse(text: &str) -> Option<Ver> {
        let mut parts = text.trim().split('.');
        let (Some(ms), Some(logical), Some(instance), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Ver {
            physical_ms: ms.parse().ok()?,
            logical: logical.parse().ok()?,
            instance: u64::from_str_radix(instance, 16).ok()?,
        })
    }

    pub fn from_header(headers: &HeaderMap, name: &str) -> Option<Ver> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(Ver::parse)
    }
}

impl fmt::Display for Ver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{:016x}",
            self.physical_ms, self.logical, self.instance
        )
    }
}

/// What became of a write, as the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 2xx: acknowledged by the write quorum.
    Acked,
    /// 409 `x-levee-outcome: superseded`: a replica held something newer.
    Superseded,
    /// 503/504/reset/timeout or `x-levee-outcome: unknown`: may or may not
    /// have taken effect.
    Unknown,
    /// `x-levee-outcome: not-written` (503, 507): refused before the log.
    Refused,
    /// `x-levee-outcome: rejected`: every replica refused it definitively.
    Rejected,
    /// The connection to levee could not be opened: never sent.
    NotSent,
}

impl Outcome {
    /// Whether the write may be what a replica holds in the end.
    pub fn may_have_applied(self) -> bool {
        matches!(
            self,
            Outcome::Acked | Outcome::Unknown | Outcome::Superseded
        )
    }
}

/// One client write (PUT with a unique value, or DELETE).
#[derive(Debug, Clone)]
pub struct WriteOp {
    pub writer: usize,
    pub seq: u64,
    pub key: String,
    /// The value of a PUT; `None` for a DELETE.
    pub value: Option<String>,
    pub sha: Option<String>,
    pub start_us: u64,
    pub end_us: u64,
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// `x-levee-version` of the answer, if any.
    pub version: Option<Ver>,
    /// `x-levee-held-version` of a superseded answer.
    pub held: Option<Ver>,
    /// A non-2xx answer without `x-levee-outcome` (a protocol gap).
    pub unlabeled: bool,
    /// Outcome header, acks, error text: for the failure report.
    pub detail: String,
}

impl WriteOp {
    pub fn is_delete(&self) -> bool {
        self.value.is_none()
    }
}

impl fmt::Display for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.value {
            Some(value) => format!("PUT {}={:.24}", self.key, value),
            None => format!("DELETE {}", self.key),
        };
        let version = self.version.map_or("-".into(), |v| v.to_string());
        write!(
            f,
            "w{}#{} {what} [{:.3}s..{:.3}s] {:?} status={} version={version} {}",
            self.writer,
            self.seq,
            self.start_us as f64 / 1e6,
            self.end_us as f64 / 1e6,
            self.outcome,
            self.status.map_or("-".into(), |s| s.to_string()),
            self.detail,
        )
    }
}

/// What a read returned.
#[derive(Debug, Clone)]
pub enum ReadResult {
    Value {
        sha: String,
        version: Option<Ver>,
    },
    NotFound {
        version: Option<Ver>,
        tombstone: bool,
    },
    /// Any other answer, or no answer: not checked.
    Failed(String),
}

/// One client read through levee.
#[derive(Debug, Clone)]
pub struct ReadOp {
    pub reader: usize,
    pub key: String,
    pub start_us: u64,
    pub end_us: u64,
    pub result: ReadResult,
    /// `x-levee-attempts` and `x-request-id` of the answer, for the report.
    pub detail: String,
}

impl fmt::Display for ReadOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read r{} {} [{:.3}s..{:.3}s] {:?} {}",
            self.reader,
            self.key,
            self.start_us as f64 / 1e6,
            self.end_us as f64 / 1e6,
            self.result,
            self.detail
        )
    }
}

/// Microseconds since the run began.
pub fn since_us(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The answer to one client call.
pub enum Reply {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    },
    /// The TCP connection was never made: nothing was sent.
    Connect(String),
    /// Sent, but no complete answer (reset, timeout).
    Failed(String),
}

/// One HTTP call with a fresh connection, bounded by `timeout`.
pub async fn send(method: Method, url: &str, body: String, timeout: Duration) -> Reply {
    let request = match Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
    {
        Ok(request) => request,
        Err(error) => return Reply::Connect(format!("bad request: {error}")),
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Reply::Connect(error.to_string()),
            Err(error) => return Reply::Failed(format!("{error:?}")),
        };
        let status = response.status();
        let headers = response.headers().clone();
        match response.into_body().collect().await {
            Ok(bytes) => Reply::Answer {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes.to_bytes()).into_owned(),
            },
            Err(error) => Reply::Failed(format!("body: {error}")),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Reply::Failed(format!("no answer within {timeout:?}")))
}

/// Lower-case hex SHA-256, as `/_dump` reports values.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
