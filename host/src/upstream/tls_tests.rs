//! `upstream_tls` loading errors, and the pooled client against loopback
//! TLS servers: verification by `ca_file`, connection reuse, client
//! certificates, and handshake failures as `connect` failures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use levee_policy::ErrorKind;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::config::UpstreamTlsSpec;
use crate::upstream::UpstreamClient;

/// A CA and, signed by it, a server certificate for 127.0.0.1 and
/// localhost and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, file: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, &ca).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}-{file}.pem")),
            dir.join(format!("{name}-{file}.key")),
        );
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = leaf(
        vec!["levee-client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let ca_path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

fn spec(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> UpstreamTlsSpec {
    UpstreamTlsSpec {
        ca_file: ca.map(Path::to_owned),
        client_cert_chain_file: client.map(|(cert, _)| cert.to_owned()),
        client_key_file: client.map(|(_, key)| key.to_owned()),
    }
}

/// A loopback HTTPS server answering 200 `ok`, requiring a client
/// certificate chaining to `client_ca` when given. Counts handshakes.
async fn server(pki: &Pki, client_ca: Option<&Path>) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(certificate.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let ok = hyper::service::service_fn(|_| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), ok)
                    .await;
            });
        }
    });
    (address, handshakes)
}

async fn get(client: &UpstreamClient, url: &str) -> Result<StatusCode, ErrorKind> {
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    client
        .send(request, Duration::from_secs(10))
        .await
        .map(|response| response.status())
        .map_err(|error| error.kind)
}

/// Debug logs of this thread while `run` runs.
async fn logs_of<F: std::future::Future>(run: F) -> (F::Output, String) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let buffer = Arc::clone(&buffer);
        move || Sink(Arc::clone(&buffer))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(writer)
        .finish();
    let output = {
        let _guard = tracing::subscriber::set_default(subscriber);
        run.await
    };
    let logs = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    (output, logs)
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_missing_ca_file_is_refused_naming_the_field_and_the_file() {
    let error = client_config(&spec(Some(Path::new("/nonexistent/ca.pem")), None)).unwrap_err();
    assert_eq!(error.field, "upstream_tls.ca_file");
    let message = error.to_string();
    assert!(
        message.starts_with("upstream_tls.ca_file /nonexistent/ca.pem: No such file"),
        "{message}"
    );
}

#[test]
fn files_without_certificates_or_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "a");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let message = client_config(&spec(Some(&garbage), None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "upstream_tls.ca_file {}: holds no PEM certificate",
            garbage.display()
        )
    );
    // A key file that holds a certificate, not a key.
    let error = client_config(&spec(
        Some(&pki.ca),
        Some((&pki.client_cert, &pki.client_cert)),
    ))
    .unwrap_err();
    assert_eq!(error.field, "upstream_tls.client_key_file");
    assert_eq!(error.file, pki.client_cert);
    assert!(
        error.reason.contains("no usable PEM private key"),
        "{error}"
    );
    // A chain file that holds a key, not a certificate.
    let error = client_config(&spec(
        Some(&pki.ca),
        Some((&pki.client_key, &pki.client_key)),
    ))
    .unwrap_err();
    assert_eq!(error.field, "upstream_tls.client_cert_chain_file");
    assert_eq!(error.file, pki.client_key);
}

#[test]
fn a_client_key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "a");
    let error = client_config(&spec(
        Some(&pki.ca),
        Some((&pki.client_cert, &pki.server_key)),
    ))
    .unwrap_err();
    assert_eq!(error.field, "upstream_tls.client_key_file");
    assert_eq!(error.file, pki.server_key);
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "does not go with upstream_tls.client_cert_chain_file {}",
            pki.client_cert.display()
        )),
        "{message}"
    );
    assert!(
        UpstreamClient::from_spec(&spec(
            Some(&pki.ca),
            Some((&pki.client_cert, &pki.client_key))
        ))
        .is_ok()
    );
}

#[test]
fn only_http1_is_offered() {
    assert_eq!(
        default_client_config().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn an_https_node_is_verified_by_ca_file_and_its_connection_reused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "a");
    let (address, handshakes) = server(&pki, None).await;
    let client = UpstreamClient::from_spec(&spec(Some(&pki.ca), None)).unwrap();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &format!("https://{address}/")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
    // By name too: SNI and verification use the URL's host.
    let localhost = format!("https://localhost:{}/", address.port());
    assert_eq!(get(&client, &localhost).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn an_unverifiable_replica_is_a_connect_failure_logged_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (pki(dir.path(), "ours"), pki(dir.path(), "theirs"));
    let (address, handshakes) = server(&theirs, None).await;
    let url = format!("https://{address}/");
    for client in [
        UpstreamClient::from_spec(&spec(Some(&ours.ca), None)).unwrap(),
        UpstreamClient::new(),
    ] {
        let (result, logs) = logs_of(get(&client, &url)).await;
        assert_eq!(result, Err(ErrorKind::Connect));
        assert!(logs.contains("upstream TLS handshake failed"), "{logs}");
        assert!(logs.contains("UnknownIssuer"), "{logs}");
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_client_certificate_is_presented_and_its_absence_is_a_connect_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "a");
    let (address, handshakes) = server(&pki, Some(&pki.ca)).await;
    let url = format!("https://{address}/");
    let with = UpstreamClient::from_spec(&spec(
        Some(&pki.ca),
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .unwrap();
    assert_eq!(get(&with, &url).await, Ok(StatusCode::OK));
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    // TLS 1.3: the refusal comes after the client's half of the handshake.
    let without = UpstreamClient::from_spec(&spec(Some(&pki.ca), None)).unwrap();
    let (result, logs) = logs_of(get(&without, &url)).await;
    assert_eq!(result, Err(ErrorKind::Connect), "{logs}");
    assert!(logs.contains("upstream TLS handshake failed"), "{logs}");
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}
