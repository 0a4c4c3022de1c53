//! The admin listener while levee starts: answers probes before the state
//! exists, so an orchestrator sees "alive, not ready" during recovery
//! instead of a connection that hangs.
//!
//! Recovery (opening the log, rebuilding hint cursors, compiling plugins)
//! can take seconds on a large log, and `/readyz` must say "not yet" during
//! that time, which needs something listening. [`serve_while_booting`]
//! answers on the admin listener until told to stop, then hands the
//! listener back for the real admin router:
//! - `GET /healthz` → 200 (the process is alive),
//! - anything else → 503 `{"error": "unavailable", "reason": "starting: ..."}`.
//!
//! Every answer carries `Connection: close`, so a client polling with
//! keep-alive reconnects and reaches the real router once it is up. An
//! admin listener with TLS does its handshake here too, and a client may
//! speak HTTP/2 (by ALPN, or h2c) as well as HTTP/1.1.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT_MS: u64 = 5_000;

/// Serves boot answers on `listener` until `booted` fires (or is dropped),
/// then returns the listener.
pub fn serve_while_booting(
    listener: TcpListener,
    tls: Option<Arc<super::tls::Terminator>>,
    booted: oneshot::Receiver<()>,
) -> JoinHandle<TcpListener> {
    tokio::spawn(async move {
        tokio::pin!(booted);
        loop {
            tokio::select! {
                _ = &mut booted => return listener,
                accepted = listener.accept() => {
                    if let Ok((stream, _peer)) = accepted {
                        tokio::spawn(answer_connection(stream, tls.clone()));
                    }
                }
            }
        }
    })
}

async fn answer_connection(
    stream: tokio::net::TcpStream,
    tls: Option<Arc<super::tls::Terminator>>,
) {
    let limit = Duration::from_millis(HEADER_READ_TIMEOUT_MS);
    match tls {
        None => answer_on(stream).await,
        Some(tls) => {
            if let Ok(Ok(stream)) = tokio::time::timeout(limit, tls.acceptor().accept(stream)).await
            {
                answer_on(stream).await;
            }
        }
    }
}

/// HTTP/1.1 or HTTP/2 (sniffed), one answer per connection.
async fn answer_on<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
        .keep_alive(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(4);
    let serving = builder.serve_connection(TokioIo::new(io), service_fn(answer));
    // Errors are the client's (reset, timeout); there is nothing to do.
    // Bounded: an HTTP/2 client may keep its connection, not past this.
    let _ = tokio::time::timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS), serving).await;
}

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if request.uri().path() == "/healthz" {
        (StatusCode::OK, r#"{"status":"ok"}"#)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"unavailable","reason":"starting: recovering the log and loading plugins"}"#,
        )
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response is valid");
    Ok(response)
}
