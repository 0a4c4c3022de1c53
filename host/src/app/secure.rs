//! One TLS client connection: the handshake (bounded by the header read
//! timeout, like the first request on a plain connection), then HTTP/2 or
//! HTTP/1.1 as ALPN chose, through the same service as plain connections.

use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::memory::Gauge;
use super::settings::Settings;
use super::tls::Terminator;

/// Serves one accepted TCP connection over TLS until it ends.
pub async fn serve<S>(
    stream: TcpStream,
    terminator: &Terminator,
    service: S,
    settings: &Settings,
    busy: &Gauge,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handshake = terminator.acceptor().accept(stream);
    let tls = tokio::select! {
        tls = tokio::time::timeout(settings.idle.first_request, handshake) => tls,
        _ = shutdown.wait_for(|&stop| stop) => return,
    };
    let tls = match tls {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            crate::base::metrics::tls_handshake_failed(terminator.listener());
            tracing::debug!(listener = terminator.listener(), %error, "TLS handshake failed");
            return;
        }
        Err(_elapsed) => {
            crate::base::metrics::tls_handshake_failed(terminator.listener());
            tracing::debug!(listener = terminator.listener(), "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let (builder, served) = if h2 {
        (&settings.http2, &settings.served.h2)
    } else {
        (&settings.http1_whole, &settings.served.http1_tls)
    };
    served.increment(1);
    busy.up();
    super::session::serve(tls, builder, service, settings, shutdown).await;
    busy.down();
}
