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
//!   [`READ_BUFFER_BYTES_MAX`](super::settings::READ_BUFFER_BYTES_MAX) (a longer request head gets 431).
//! - **Connection cap**: at most `connections_max` open connections; beyond
//!   that, accepting waits (the kernel backlog absorbs the burst) instead of
//!   exhausting file descriptors.
//! - **Graceful shutdown**: when the state's shutdown signal fires, the
//!   loop stops accepting, idle connections close, in-flight requests
//!   finish (their responses say `Connection: close`), bounded by
//!   `drain_ms`.
//!
//! - **TLS** (opt-in per listener, see [`tls`](super::tls)): the handshake
//!   is bounded by the header read timeout, then ALPN picks HTTP/2 or
//!   HTTP/1.1 ([`secure`](super::secure)).
//! - **h2c** (opt-in, `server.http2.h2c`): a plain connection that opens
//!   with the HTTP/2 preface is served as HTTP/2 ([`h2c`](super::h2c));
//!   otherwise plain connections are HTTP/1.1, served only while busy.
//!
//! Every protocol reaches the same service, so an HTTP/2 stream takes the
//! same inbound, routing, retry and fan-out path as an HTTP/1 request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::connection;
use super::memory::ConnectionCounts;
use super::settings::Settings;
use super::tls::Terminator;
use crate::config::ServerLimits;

/// An axum `Router` as a hyper service, for [`serve`].
pub fn router(router: Router) -> TowerToHyperService<Router> {
    TowerToHyperService::new(router)
}

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// One listener: its socket, its name (`data` or `admin`) and its TLS, if
/// it terminates TLS.
#[derive(Debug)]
pub struct Listener {
    pub socket: TcpListener,
    pub name: &'static str,
    pub tls: Option<Arc<Terminator>>,
}

/// Serves `service` until `shutdown` turns true, then drains for up to
/// `drain_ms`. Any hyper service: the data plane's own (no router: see
/// `api::data`), or an axum `Router` through [`router`].
pub async fn serve<S>(
    listener: Listener,
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
    let Listener {
        socket: listener,
        name,
        tls,
    } = listener;
    let settings = Arc::new(Settings::new(name, limits));
    if let Some(tls) = &tls {
        tls.spawn_reload(shutdown.clone());
    }
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
        match &tls {
            None => tokio::spawn(async move {
                connection::serve(stream, service, &settings, &counts.busy, shutdown).await;
                counts.open.down();
                drop(permit);
            }),
            Some(tls) => {
                let tls = Arc::clone(tls);
                tokio::spawn(async move {
                    let busy = &counts.busy;
                    super::secure::serve(stream, &tls, service, &settings, busy, shutdown).await;
                    counts.open.down();
                    drop(permit);
                })
            }
        };
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
