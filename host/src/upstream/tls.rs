//! TLS towards `https://` replicas (`upstream_tls`): the one rustls client
//! config the pooled client uses for every `https://` node, and how a
//! failed handshake is recognised.
//!
//! Why a file of its own: what the client trusts and presents is decided
//! once, at start, from files an operator names, and every way those files
//! can be wrong must be refused there, naming the field and the file
//! (`upstream_tls.ca_file /etc/levee/ca.pem: No such file or directory`),
//! not discovered as failed requests later. The pooled client itself
//! (`upstream/mod.rs`) only wraps its TCP connector in this config.
//!
//! - **Trust.** The system's roots (rustls-native-certs, loaded once per
//!   process) unless `ca_file` is set; then only that bundle, so a private
//!   CA cannot be sidestepped by a public one.
//! - **Client certificate.** Presented to replicas that ask for one when
//!   `client_cert_chain_file` and `client_key_file` are set; a key that
//!   does not match the chain's first certificate is refused at start.
//! - **Protocol.** TLS 1.2 and 1.3 on the ring provider (explicitly: no
//!   process-wide default provider is assumed), ALPN `http/1.1` only: levee
//!   speaks HTTP/1.1 to replicas. The server name (SNI, and the name the
//!   certificate must carry) is the node URL's host, an IP address included.
//! - **A failed handshake is a connect failure** ([`handshake_failure`]):
//!   a replica that cannot be verified, or refuses levee's certificate,
//!   never saw the request, so the retry policy and outlier ejection treat
//!   it like a refused connection. With TLS 1.3 a server refuses a client
//!   certificate only after the client has finished its half of the
//!   handshake, so that refusal arrives as an alert on the first read; it
//!   is recognised by its alert and counts the same.

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{AlertDescription, ClientConfig, RootCertStore};

use crate::base::pem::{TlsFileError, read_certificates, read_key};
use crate::config::UpstreamTlsSpec;

/// The only protocol offered to replicas by ALPN.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// An `upstream_tls` file that could not be used, naming the config field
/// and the file.
pub type UpstreamTlsError = TlsFileError;

/// The client config for `spec`: its CA bundle or the system's roots, its
/// client certificate if any, ALPN `http/1.1`.
pub fn client_config(spec: &UpstreamTlsSpec) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
    let roots = match &spec.ca_file {
        Some(ca_file) => Arc::new(ca_roots(ca_file)?),
        None => system_roots(),
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
    let mut config = match (&spec.client_cert_chain_file, &spec.client_key_file) {
        (Some(chain_file), Some(key_file)) => {
            let chain = read_certificates("upstream_tls.client_cert_chain_file", chain_file)?;
            let key = read_key("upstream_tls.client_key_file", key_file)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsFileError::new(
                    "upstream_tls.client_key_file",
                    key_file,
                    format!(
                        "does not go with upstream_tls.client_cert_chain_file {} ({e})",
                        chain_file.display()
                    ),
                )
            })?
        }
        // The config refuses one without the other; levee presents none.
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The plain default: the system's roots, no client certificate.
pub fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            client_config(&UpstreamTlsSpec::default()).expect("no files to read, nothing to refuse")
        })
        .clone()
}

/// The system's CA roots, loaded once per process. A system without any
/// (a bare container) gets an empty store: every `https://` node then
/// fails its handshake, which is logged, until `ca_file` names a bundle.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(
                added,
                ignored,
                errors = found.errors.len(),
                "system CA roots loaded for https:// replicas"
            );
            Arc::new(roots)
        })
        .clone()
}

/// Every certificate of `ca_file` as a root store; only these are trusted.
fn ca_roots(ca_file: &Path) -> Result<RootCertStore, UpstreamTlsError> {
    let field = "upstream_tls.ca_file";
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(field, ca_file)? {
        roots.add(certificate).map_err(|e| {
            TlsFileError::new(field, ca_file, format!("not a usable CA certificate: {e}"))
        })?;
    }
    Ok(roots)
}

/// The TLS error in `error`, if it is a failed handshake: any rustls error
/// while connecting (the caller knows it was connecting), or, afterwards,
/// a fatal alert refusing the handshake (TLS 1.3's late refusal of levee's
/// certificate, see the module doc). I/O errors are peeled: tokio-rustls
/// and hyper-rustls each wrap the rustls error in one.
pub fn handshake_failure<'a>(
    error: &'a (dyn Error + 'static),
    connecting: bool,
) -> Option<&'a rustls::Error> {
    let mut current = error;
    // Bounded: two wrappers are all there is, never trust a cycle.
    for _ in 0..4 {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return (connecting || is_handshake_refusal(tls)).then_some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// Alerts a server sends when it will not complete the handshake.
fn is_handshake_refusal(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied
                | AlertDescription::HandshakeFailure
                | AlertDescription::NoApplicationProtocol
        )
    )
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
