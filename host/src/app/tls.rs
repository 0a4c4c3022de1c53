//! TLS termination for one listener: its certificate, reloaded when the
//! files change, and the protocols it offers by ALPN.
//!
//! Why a reload by polling: a certificate is rotated by whatever renews it
//! (cert-manager's Secret volume swaps a symlink, certbot rewrites files,
//! an operator copies them); a change of any of the files' modification
//! time, size or inode is noticed within [`RELOAD_CHECK_MS`], on every
//! filesystem, without inotify's blind spots for those symlink swaps.
//! A reload builds a whole new `rustls::ServerConfig` and swaps it in:
//! handshakes from then on use it, connections already open keep theirs
//! (nothing is dropped). A reload that fails (a key written after its
//! certificate, a half-copied file) keeps the previous certificate serving,
//! is logged and counted (`levee_tls_reloads_total{result="error"}`), and
//! is tried again at the next change.
//!
//! What is offered: TLS 1.2 and 1.3 only (rustls has nothing older),
//! the ring provider's default cipher suites, ALPN `h2` (when HTTP/2 is
//! enabled) then `http/1.1`. With a `client_ca_file`, a client must present
//! a certificate chaining to one of those CAs (mutual TLS).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use crate::base::pem::TlsFileError;
use crate::base::pem::{read_certificates, read_key};
use crate::config::ListenerTls;

/// How often the certificate files are checked for a change.
pub const RELOAD_CHECK_MS: u64 = 1_000;

/// One listener's TLS: the current server config and how to rebuild it.
pub struct Terminator {
    /// `data` or `admin`, for logs and metrics.
    listener: &'static str,
    spec: ListenerTls,
    alpn: Vec<Vec<u8>>,
    current: ArcSwap<ServerConfig>,
    /// The files' identity when `current` was built (or last refused).
    seen: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("listener", &self.listener)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What tells a file's versions apart without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl Terminator {
    /// Loads the listener's files (an error names the field and the file)
    /// and offers `h2` by ALPN when `http2` is true.
    pub fn load(
        listener: &'static str,
        spec: &ListenerTls,
        http2: bool,
    ) -> Result<Arc<Terminator>, TlsFileError> {
        let mut alpn = Vec::with_capacity(2);
        if http2 {
            alpn.push(b"h2".to_vec());
        }
        alpn.push(b"http/1.1".to_vec());
        let seen = stamps(spec);
        let config = build(listener, spec, &alpn)?;
        Ok(Arc::new(Terminator {
            listener,
            spec: spec.clone(),
            alpn,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        }))
    }

    /// `data` or `admin`.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// An acceptor over the current certificate (a pointer copy).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Rebuilds the server config if any file changed since the last look.
    /// Returns whether a new config was swapped in.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.spec);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match build(self.listener, &self.spec, &self.alpn) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                crate::base::metrics::tls_reloaded(self.listener, true);
                tracing::info!(listener = self.listener, "TLS certificate reloaded");
                true
            }
            Err(error) => {
                crate::base::metrics::tls_reloaded(self.listener, false);
                tracing::error!(
                    listener = self.listener,
                    %error,
                    "TLS certificate reload failed; the previous certificate keeps serving"
                );
                false
            }
        }
    }

    /// Checks the files every [`RELOAD_CHECK_MS`] until shutdown.
    pub fn spawn_reload(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let terminator = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(RELOAD_CHECK_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded by shutdown: one check per tick until it fires.
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|&stop| stop) => return,
                }
                let terminator = Arc::clone(&terminator);
                // File reads and key parsing are blocking work.
                let _ = tokio::task::spawn_blocking(move || terminator.reload_if_changed()).await;
            }
        });
    }
}

fn stamps(spec: &ListenerTls) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let files = [
        Some(&spec.cert_chain_file),
        Some(&spec.key_file),
        spec.client_ca_file.as_ref(),
    ];
    files
        .into_iter()
        .flatten()
        .map(|path| match std::fs::metadata(path) {
            Ok(meta) => Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            },
            Err(_) => Stamp {
                modified: None,
                len: 0,
                inode: 0,
            },
        })
        .collect()
}

/// A whole server config from the files.
fn build(
    listener: &'static str,
    spec: &ListenerTls,
    alpn: &[Vec<u8>],
) -> Result<ServerConfig, TlsFileError> {
    let field = |name: &str| format!("listeners.tls.{listener}.{name}");
    let chain = read_certificates(&field("cert_chain_file"), &spec.cert_chain_file)?;
    let key = read_key(&field("key_file"), &spec.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| {
            TlsFileError::new(
                &field("cert_chain_file"),
                &spec.cert_chain_file,
                e.to_string(),
            )
        })?;
    let builder = match &spec.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let ca_field = field("client_ca_file");
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(&ca_field, ca_file)? {
                roots.add(certificate).map_err(|e| {
                    TlsFileError::new(
                        &ca_field,
                        ca_file,
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsFileError::new(&ca_field, ca_file, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsFileError {
            field: field("key_file"),
            file: spec.key_file.clone(),
            reason: format!("does not go with {} ({e})", spec.cert_chain_file.display()),
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
