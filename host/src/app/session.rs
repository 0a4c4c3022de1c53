//! A connection served by hyper for its whole life: HTTP/2 (over TLS or
//! h2c) and HTTP/1 over TLS.
//!
//! Why not the plain path's shedding (see [`connection`](super::connection)):
//! an HTTP/2 connection's state (HPACK tables, windows, settings) cannot be
//! dropped and rebuilt between requests, and a TLS session's bytes cannot
//! be peeked or handed back. These connections keep their buffers while
//! idle; the keep-alive timeout bounds how long.
//!
//! Limits, the same as the plain path's: the first request (stream) must
//! begin within the header read timeout; a connection with nothing in
//! flight and no request begun for a keep-alive period is ended (HTTP/2:
//! GOAWAY, then close), so it closes after one to two keep-alive periods
//! of idleness; shutdown ends it gracefully (HTTP/2: GOAWAY, in-flight
//! streams finish; HTTP/1: `Connection: close` on the response in
//! progress), bounded by the listener's drain.

use std::sync::Arc;

use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::connection::{Activity, Tracked};
use super::settings::Settings;

/// Serves `io` with `builder` (HTTP/1-only or HTTP/2-only) until the
/// client leaves, the idle limits pass, or shutdown has drained it.
pub async fn serve<I, S>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    service: S,
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::default());
    let service = Tracked::new(service, Arc::clone(&activity));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let mut wait = settings.idle.first_request;
    let mut begun_at_check = 0;
    let check = tokio::time::sleep(wait);
    let mut check = std::pin::pin!(check);
    // Bounded: each turn ends the connection, begins closing it (once),
    // or finds a request begun since the last check (the client's doing).
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(error = %error, "client connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait_for(|&stop| stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.as_mut(), if !closing => {
                let begun = activity.begun();
                if activity.in_flight() == 0 && begun == begun_at_check {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                begun_at_check = begun;
                wait = settings.idle.between_requests;
                check.as_mut().reset(tokio::time::Instant::now() + wait);
            }
        }
    }
}
