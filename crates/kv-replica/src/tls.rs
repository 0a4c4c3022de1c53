//! Opt-in TLS: `levee kv-replica --tls-cert FILE --tls-key FILE
//! [--tls-client-ca FILE]` serves HTTPS, so levee's `https://` nodes can be
//! tested against a real replica. Plain HTTP stays the default.
//!
//! With `--tls-client-ca` a client must present a certificate chaining to
//! those CAs (mutual TLS). ALPN offers `http/1.1` only, as levee's upstream
//! side speaks it. Handshakes run off the accept loop (one task each,
//! bounded by [`HANDSHAKE_TIMEOUT`]), so a client that never finishes one
//! holds up nobody; `/_stats` counts the ones that completed
//! (`connections`) and the ones that failed (`tls_handshake_failures`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::Replica;

/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and not yet taken by the server.
const READY_CONNECTIONS_MAX: usize = 64;

/// The files of `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the server's own first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CAs (PEM) a client certificate must chain to; none asked without.
    pub client_ca: Option<PathBuf>,
}

/// The server config of `files`; errors name the flag and the file.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::ALL_VERSIONS)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates("--tls-client-ca", ca)? {
                roots.add(certificate)?;
            }
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
            )
        }
    };
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("--tls-key {}", files.key.display()))?;
    let mut config = builder
        .with_single_cert(certificates("--tls-cert", &files.cert)?, key)
        .with_context(|| format!("--tls-key {} and --tls-cert", files.key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(flag: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let context = || format!("{flag} {}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(context)?
        .collect::<Result<Vec<_>, _>>()
        .with_context(context)?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{}: no PEM certificate",
        context()
    );
    Ok(certificates)
}

/// A listener that hands axum connections whose TLS handshake is done.
pub struct TlsListener {
    address: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`, each handshake in a task of its own.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        replica: Arc<Replica>,
    ) -> std::io::Result<TlsListener> {
        let address = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(READY_CONNECTIONS_MAX);
        // Bounded by the listener: dropping it aborts this task.
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of descriptors and the like: pause, go on.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, sender, replica) =
                    (acceptor.clone(), sender.clone(), Arc::clone(&replica));
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            replica.connections.fetch_add(1, Ordering::AcqRel);
                            let _ = sender.send((tls, peer)).await;
                        }
                        failed => {
                            replica
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::AcqRel);
                            let reason = match failed {
                                Ok(Err(error)) => error.to_string(),
                                _ => "timed out".to_string(),
                            };
                            tracing::warn!(%peer, %reason, "TLS handshake failed");
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            address,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener drops.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_named_with_its_flag() {
        let mut files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: Some("/nonexistent/ca.pem".into()),
        };
        let message = format!("{:#}", server_config(&files).unwrap_err());
        assert!(
            message.starts_with("--tls-client-ca /nonexistent/ca.pem"),
            "{message}"
        );
        files.client_ca = None;
        let message = format!("{:#}", server_config(&files).unwrap_err());
        assert!(
            message.starts_with("--tls-key /nonexistent/key.pem"),
            "{message}"
        );
    }
}
