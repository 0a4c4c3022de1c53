//! Serving a router on a TCP listener with the limits a public listener
//! needs against slow or abusive clients.
//!
//! `axum::serve` offers no header-read timeout, so the accept loop is ours:
//! - **Header read timeout**: a client must finish its request head within
//!   `header_read_timeout_ms` (hyper closes the connection otherwise), so a
//!   slowloris cannot pin connections.
//! - **Connection cap**: at most `connections_max` open connections; beyond
//!   that, accepting waits (the kernel backlog absorbs the burst) instead of
//!   exhausting file descriptors.
//! - **Graceful shutdown**: when the state's shutdown signal fires, the
//!   loop stops accepting, in-flight requests finish (idle keep-alive
//!   connections are closed), bounded by `drain_ms`.
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
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::ServerLimits;

/// An axum `Router` as a hyper service, for [`serve`].
pub fn router(router: Router) -> TowerToHyperService<Router> {
    TowerToHyperService::new(router)
}

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// Serves `service` until `shutdown` turns true, then drains for up to
/// `drain_ms`. Any hyper service: the data plane's own (no router: see
/// `api::data`), or an axum `Router` through [`router`].
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: &ServerLimits,
    mut shutdown: watch::Receiver<bool>,
    drain_ms: u64,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.connections_max as usize));
    let graceful = GracefulShutdown::new();
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
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            // Errors here are client-side (reset, bad request head, timeout).
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_millis(drain_ms), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(drain_ms, "connections still open after the drain period");
    }
}
