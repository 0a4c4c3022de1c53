//! The upstream HTTP client: one pooled, keep-alive client for all replicas,
//! and the header hygiene a proxy owes both sides.
//!
//! - **Pooling.** hyper-util's legacy `Client` keeps idle connections per
//!   replica, so steady traffic pays no TCP handshake. Requests that die on
//!   a pooled connection the replica already closed are re-sent by hyper
//!   itself only when nothing was written; anything else surfaces as a
//!   `reset` for the retry policy to judge.
//! - **Hop-by-hop headers** (RFC 9110 §7.6.1): `Connection`, every header it
//!   names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`
//!   and `Upgrade` describe one connection, not the message, so they are
//!   stripped in both directions. `Host` is set by the client from the
//!   replica's address; `Expect` is dropped because the body is already
//!   buffered.
//! - **Limits.** A per-try timeout bounds the wait for the response head;
//!   a response body larger than the limit is refused (by Content-Length)
//!   or cut (while streaming) rather than buffered.
//!
//! - **No per-request extras.** The connector's connections carry no
//!   `HttpInfo` (peer and local address): the pooled client copies a
//!   connection's extras into the extensions of every response, three
//!   allocations per request that nothing in levee reads.
//! - **`http://` and `https://` nodes alike.** One client, one pool: the
//!   TCP connector is wrapped in hyper-rustls, which leaves `http://`
//!   connections as they are and does the TLS handshake for `https://`
//!   ones with the config of [`tls`] (trust, client certificate, ALPN
//!   `http/1.1`). The pool keys connections by scheme and authority, so a
//!   TLS connection is reused like a plain one, handshake paid once.
//!
//! Errors are classified into the WIT `error-kind`s the retry policy sees;
//! a failed TLS handshake is a `connect` failure, logged at debug with its
//! reason.

pub mod tls;

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use levee_policy::ErrorKind;

use crate::config::UpstreamTlsSpec;
pub use tls::UpstreamTlsError;

/// Idle pooled connections kept per replica.
pub const POOL_IDLE_PER_HOST_MAX: usize = 512;
/// How long an idle pooled connection is kept. Each holds hyper's buffers
/// (~16 KiB), so a burst's surplus connections should not outlive it by
/// long: nginx's upstream `keepalive_timeout` is 60 s, HAProxy purges idle
/// server connections every 5 s (`pool-purge-delay`).
pub const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Largest response body levee relays (bigger responses are refused).
pub const RESPONSE_BODY_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The body type levee sends upstream: requests are buffered so that a
/// retry or a fan-out can send them again.
pub type UpstreamBody = Full<Bytes>;

/// The shared pooled client, for `http://` and `https://` nodes.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<Connector>, UpstreamBody>,
}

/// Why an attempt produced no usable HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptError {
    pub kind: ErrorKind,
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamClient {
    /// The plain default: `https://` nodes are verified against the
    /// system's roots (loaded once per process), no client certificate.
    pub fn new() -> UpstreamClient {
        UpstreamClient::with_tls(tls::default_client_config())
    }

    /// The client `upstream_tls` asks for; an unusable file is refused
    /// here, naming the field and the file.
    pub fn from_spec(spec: &UpstreamTlsSpec) -> Result<UpstreamClient, UpstreamTlsError> {
        if spec.is_default() {
            return Ok(UpstreamClient::new());
        }
        Ok(UpstreamClient::with_tls(tls::client_config(spec)?))
    }

    fn with_tls(config: Arc<rustls::ClientConfig>) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(30)));
        // `https://` URIs reach the TCP connector too (under the TLS one,
        // which refuses any other scheme).
        connector.enforce_http(false);
        // The server name is the URI's host (hyper-rustls' default).
        let connector = HttpsConnector::from((Connector(connector), config));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        UpstreamClient { client }
    }

    /// Sends one request and waits at most `timeout` for the response head.
    pub async fn send(
        &self,
        request: Request<UpstreamBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, AttemptError> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                let kind = classify(&error);
                match tls_failure(&error) {
                    Some(reason) => {
                        tracing::debug!(?kind, %reason, "upstream TLS handshake failed");
                    }
                    None => {
                        tracing::debug!(?kind, error = %Chain(&error), "upstream attempt failed")
                    }
                }
                Err(AttemptError { kind })
            }
            Err(_elapsed) => Err(AttemptError {
                kind: ErrorKind::Timeout,
            }),
        }
    }
}

/// An error and its sources, `: `-separated, for logs.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        // Bounded: error chains are short, but never trust a cycle.
        for _ in 0..16 {
            let Some(current) = source else { break };
            write!(f, ": {current}")?;
            source = current.source();
        }
        Ok(())
    }
}

/// The TLS error of a failed handshake somewhere in `error`'s sources.
fn tls_failure(error: &hyper_util::client::legacy::Error) -> Option<&rustls::Error> {
    let mut source = error.source();
    // Bounded: error chains are short, but never trust a cycle.
    for _ in 0..16 {
        let current = source?;
        if let Some(tls) = tls::handshake_failure(current, error.is_connect()) {
            return Some(tls);
        }
        source = current.source();
    }
    None
}

/// The TCP connector, minus the `HttpInfo` extra (see the module doc).
#[derive(Clone, Debug)]
pub struct Connector(HttpConnector);

/// A connector's future: connecting is per connection, not per request,
/// so the box is of no concern.
type Connecting = Pin<
    Box<
        dyn Future<Output = Result<Plain, <HttpConnector as tower_service::Service<Uri>>::Error>>
            + Send,
    >,
>;

impl tower_service::Service<Uri> for Connector {
    type Response = Plain;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let connecting = self.0.call(destination);
        Box::pin(async move { connecting.await.map(Plain) })
    }
}

/// A connected TCP stream whose [`Connection::connected`] carries nothing.
#[derive(Debug)]
pub struct Plain(TokioIo<tokio::net::TcpStream>);

impl Connection for Plain {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// Maps a client error to the WIT error kind by walking its source chain.
/// Whatever fails while connecting (TCP or the TLS handshake) is
/// `connect`, and so is a handshake the replica refuses afterwards (TLS
/// 1.3's late refusal of a client certificate, see [`tls`]).
pub fn classify(error: &hyper_util::client::legacy::Error) -> ErrorKind {
    if error.is_connect() || tls_failure(error).is_some() {
        return ErrorKind::Connect;
    }
    let mut source = error.source();
    // Bounded: error chains are short, but never trust a cycle.
    for _ in 0..16 {
        let Some(current) = source else { break };
        if let Some(hyper_error) = current.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse()
                || hyper_error.is_parse_status()
                || hyper_error.is_parse_too_large()
            {
                return ErrorKind::Protocol;
            }
            if hyper_error.is_timeout() {
                return ErrorKind::Timeout;
            }
            if hyper_error.is_incomplete_message()
                || hyper_error.is_canceled()
                || hyper_error.is_closed()
            {
                return ErrorKind::Reset;
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            match io.kind() {
                Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::BrokenPipe
                | Io::UnexpectedEof => {
                    return ErrorKind::Reset;
                }
                Io::TimedOut => return ErrorKind::Timeout,
                Io::ConnectionRefused => return ErrorKind::Connect,
                _ => {}
            }
        }
        source = current.source();
    }
    ErrorKind::Other
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any named in `Connection` and the
/// obsolete `Proxy-Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.get(header::CONNECTION).cloned()
        && let Ok(listed) = connection.to_str()
    {
        for name in listed
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .take(32)
        {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                headers.remove(name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

/// Request headers that must not go upstream beyond the hop-by-hop ones:
/// `Host` (the client sets the replica's) and `Expect` (body is buffered).
pub fn strip_for_upstream(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    headers.remove(header::CONTENT_LENGTH);
}

/// The upstream's `Retry-After` in milliseconds (delta-seconds form only;
/// an HTTP-date is ignored rather than trusted against our clock).
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u32> {
    let seconds: u32 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(seconds.saturating_mul(1000))
}

/// Turns an upstream response into one for the client: hop-by-hop headers
/// stripped, body streamed through a size limit. Refuses (by
/// Content-Length) a body larger than `body_bytes_max` before streaming.
pub fn relay_response(
    response: Response<Incoming>,
    body_bytes_max: u64,
) -> Result<Response<Body>, String> {
    let (mut parts, incoming) = response.into_parts();
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH)
        && let Some(length) = length.to_str().ok().and_then(|l| l.parse::<u64>().ok())
        && length > body_bytes_max
    {
        return Err(format!(
            "replica response of {length} bytes exceeds the {body_bytes_max} byte limit"
        ));
    }
    strip_hop_by_hop(&mut parts.headers);
    let limit = usize::try_from(body_bytes_max).unwrap_or(usize::MAX);
    Ok(Response::from_parts(
        parts,
        Body::new(Limited::new(incoming, limit)),
    ))
}

/// A fresh request id: 8 hex digits of process-random prefix and 16 of a
/// counter, unique within and (with high probability) across processes.
/// One allocation, which every clone of the value shares (it goes to each
/// attempt and back to the client).
pub fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u32>);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buffer = [0u8; 24];
    format_request_id(prefix, count, &mut buffer);
    HeaderValue::from_maybe_shared(Bytes::from_owner(buffer))
        .expect("hex digits are a valid header value")
}

fn format_request_id(prefix: u32, count: u64, buffer: &mut [u8; 24]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..8 {
        buffer[i] = HEX[((prefix >> (28 - 4 * i)) & 0xf) as usize];
    }
    for i in 0..16 {
        buffer[8 + i] = HEX[((count >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buffer).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped_including_connection_listed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-request-id", "abc"),
            ("content-type", "text/plain"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-request-id", "content-type"]);
    }

    #[test]
    fn upstream_strip_removes_host_and_expect() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("levee"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_for_upstream(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after_ms(&headers), Some(2_000));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), None);
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        let mut buffer = [0u8; 24];
        assert_eq!(
            format_request_id(0xdeadbeef, 1, &mut buffer),
            "deadbeef0000000000000001"
        );
    }

    #[tokio::test]
    async fn connect_refused_is_classified_as_connect() {
        // Bind then drop a listener: its port now refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = UpstreamClient::new();
        let request = Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let error = client
            .send(request, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Connect);
    }

    #[tokio::test]
    async fn silent_server_is_a_timeout_and_garbage_is_a_protocol_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // First connection: read, say nothing (held open until the test ends).
            let (mut silent, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = silent.read(&mut buffer).await;
            // Second connection: answer with garbage.
            let (mut garbage, _) = listener.accept().await.unwrap();
            let _ = garbage.read(&mut buffer).await;
            garbage.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
            garbage.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(silent);
        });
        let client = UpstreamClient::new();
        let get = || {
            Request::get(format!("http://{address}/"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let error = client
            .send(get(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Timeout);
        let error = client
            .send(get(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Protocol);
        server.await.unwrap();
    }
}
