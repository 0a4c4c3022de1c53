//! Serving a hyper service on a TCP listener with the limits a public
//! listener needs against slow or abusive clients.
//!
//! `axum::serve` offers no header-read timeout, so the accept loop is ours:
//! - **Header read timeout**: a client must send its first bytes, and then
//!   finish its request head, within `header_read_timeout_ms` (hyper
//!   closes the connection otherwise), so a slowloris cannot pin
//!   connections.
//! - **Keep-alive timeout**: an idle connection is closed after
//!   `keepalive_timeout_ms`; while idle it holds no HTTP buffers (see
//!   [`connection`](super::connection)).
//! - **Bounded buffers**: hyper's read buffer grows to at most
//!   [`READ_BUFFER_BYTES_MAX`] (a longer request head gets 431).
//! - **Connection cap**: at most `connections_max` open connections; beyond
//!   that, accepting waits (the kernel backlog absorbs the burst) instead of
//!   exhausting file descriptors.
//! - **Graceful shutdown**: when the state's shutdown signal fires, the
//!   loop stops accepting, idle connections close, in-flight requests
//!   finish (their responses say `Connection: close`), bounded by
//!   `drain_ms`.
//!
//! HTTP/1.1 only: it is what load balancers and benchmarks speak to a proxy,
//! and skipping protocol sniffing keeps the accept path lean.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::connection::{self, IdleLimits, Settings};
use super::memory::ConnectionCounts;
use crate::config::ServerLimits;

/// An axum `Router` as a hyper service, for [`serve`].
pub fn router(router: Router) -> TowerToHyperService<Router> {
    TowerToHyperService::new(router)
}

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// The most a connection's read buffer grows to while hyper parses a
/// request head or reads a body (hyper's default is ~400 KiB). A head
/// longer than this is refused with 431; nginx allows 4 × 8 KiB, HAProxy
/// 16 KiB.
pub const READ_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// Serves `service` until `shutdown` turns true, then drains for up to
/// `drain_ms`. Any hyper service: the data plane's own (no router: see
/// `api::data`), or an axum `Router` through [`router`].
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: &ServerLimits,
    counts: Arc<ConnectionCounts>,
    mut shutdown: watch::Receiver<bool>,
    drain_ms: u64,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let settings = Arc::new(Settings {
        http1: http1_builder(limits),
        idle: IdleLimits {
            first_request: Duration::from_millis(limits.header_read_timeout_ms),
            between_requests: Duration::from_millis(limits.keepalive_timeout_ms),
            shed_after: Duration::from_millis(connection::SHED_AFTER_IDLE_MS),
        },
    });
    let connections_max = limits.connections_max;
    let connections = Arc::new(Semaphore::new(connections_max as usize));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.wait_for(|&stop| stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|&stop| stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (service, settings, shutdown, counts) = (
            service.clone(),
            Arc::clone(&settings),
            shutdown.clone(),
            Arc::clone(&counts),
        );
        counts.open.up();
        tokio::spawn(async move {
            connection::serve(stream, service, &settings, &counts.busy, shutdown).await;
            counts.open.down();
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: all of them back
    // means every connection has finished.
    let drained = tokio::time::timeout(
        Duration::from_millis(drain_ms),
        connections.acquire_many(connections_max),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(drain_ms, "connections still open after the drain period");
    }
}

/// hyper's HTTP/1 settings, shared by every connection of a listener.
fn http1_builder(limits: &ServerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(READ_BUFFER_BYTES_MAX)
        .keep_alive(true);
    builder
}
