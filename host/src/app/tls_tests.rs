//! Real handshakes over loopback against [`Terminator`]: loading, ALPN,
//! mutual TLS, refusals that name the file, and reloads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::*;

/// A CA and a certificate for `localhost` it signed, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn new_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    // Write-then-rename, as a certificate renewer does: a new inode.
    let partial = dir.join(format!("{name}.partial"));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

fn spec(dir: &Path, pki: &Pki) -> ListenerTls {
    ListenerTls {
        cert_chain_file: write(dir, "cert.pem", &pki.cert_pem),
        key_file: write(dir, "key.pem", &pki.key_pem),
        client_ca_file: None,
    }
}

fn client_config(ca_pem: &str, client: Option<&Pki>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(pki) => {
            let chain = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// One handshake against `terminator` on a fresh loopback listener;
/// the negotiated ALPN protocol, or the client's error.
async fn handshake(
    terminator: &Terminator,
    client: rustls::ClientConfig,
) -> Result<Vec<u8>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = terminator.acceptor();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // The server's side may fail too (a missing client certificate).
        let _ = acceptor.accept(stream).await;
    });
    let stream = TcpStream::connect(address).await.unwrap();
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("localhost").unwrap();
    let result = match connector.connect(name, stream).await {
        Ok(tls) => Ok(tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec()),
        Err(error) => Err(error.to_string()),
    };
    server.await.unwrap();
    result
}

#[tokio::test]
async fn a_loaded_certificate_serves_and_offers_h2_then_http1() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let terminator = Terminator::load("data", &spec(dir.path(), &pki), true).unwrap();
    let alpn = handshake(&terminator, client_config(&pki.ca_pem, None)).await;
    assert_eq!(alpn.unwrap(), b"h2");
    let http1_only = Terminator::load("data", &spec(dir.path(), &pki), false).unwrap();
    let alpn = handshake(&http1_only, client_config(&pki.ca_pem, None)).await;
    assert_eq!(alpn.unwrap(), b"http/1.1");
    // A client trusting another CA refuses the server.
    let other = new_pki();
    assert!(
        handshake(&terminator, client_config(&other.ca_pem, None))
            .await
            .is_err()
    );
}

#[test]
fn bad_files_are_refused_naming_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let mut missing = spec(dir.path(), &pki);
    missing.cert_chain_file = dir.path().join("nowhere.pem");
    let error = Terminator::load("data", &missing, true)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("listeners.tls.data.cert_chain_file "),
        "{error}"
    );
    assert!(error.contains("nowhere.pem"), "{error}");

    let mut mismatched = spec(dir.path(), &pki);
    mismatched.key_file = write(dir.path(), "other-key.pem", &new_pki().key_pem);
    let error = Terminator::load("admin", &mismatched, true)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("listeners.tls.admin.key_file "),
        "{error}"
    );
    assert!(error.contains("other-key.pem"), "{error}");
    assert!(error.contains("does not go with"), "{error}");

    let mut not_pem = spec(dir.path(), &pki);
    not_pem.key_file = write(dir.path(), "garbage.pem", "not a key");
    let error = Terminator::load("data", &not_pem, true)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no usable PEM private key"), "{error}");

    let mut no_certs = spec(dir.path(), &pki);
    no_certs.cert_chain_file = write(dir.path(), "empty.pem", "");
    let error = Terminator::load("data", &no_certs, true)
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds no PEM certificate"), "{error}");
}

#[tokio::test]
async fn a_client_ca_requires_a_client_certificate_it_signed() {
    let dir = tempfile::tempdir().unwrap();
    let server = new_pki();
    let client = new_pki();
    let mut mutual = spec(dir.path(), &server);
    mutual.client_ca_file = Some(write(dir.path(), "client-ca.pem", &client.ca_pem));
    let terminator = Terminator::load("admin", &mutual, false).unwrap();
    let with_cert = handshake(&terminator, client_config(&server.ca_pem, Some(&client))).await;
    assert_eq!(with_cert.unwrap(), b"http/1.1");
    // TLS 1.3: the client learns of the refusal at its first read, not in
    // the handshake; so check the server's view through a plain read.
    let stranger = new_pki();
    let refused =
        handshake_and_read(&terminator, client_config(&server.ca_pem, Some(&stranger))).await;
    assert!(refused.is_err(), "a certificate from another CA is refused");
    let refused = handshake_and_read(&terminator, client_config(&server.ca_pem, None)).await;
    assert!(refused.is_err(), "no certificate is refused");
}

/// A handshake, then a read: Ok only if the server kept the connection.
async fn handshake_and_read(
    terminator: &Terminator,
    client: rustls::ClientConfig,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = terminator.acceptor();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(stream).await {
            let _ = tls.write_all(b"hello").await;
            let _ = tls.flush().await;
        }
    });
    let stream = TcpStream::connect(address).await.unwrap();
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("localhost").unwrap();
    let outcome = async {
        let mut tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut hello = [0u8; 5];
        tls.read_exact(&mut hello)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    server.await.unwrap();
    outcome
}

#[tokio::test]
async fn changed_files_are_reloaded_and_a_bad_change_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = new_pki();
    let spec = spec(dir.path(), &first);
    let terminator = Terminator::load("data", &spec, true).unwrap();
    assert!(!terminator.reload_if_changed(), "nothing changed yet");

    let second = new_pki();
    write(dir.path(), "cert.pem", &second.cert_pem);
    write(dir.path(), "key.pem", &second.key_pem);
    assert!(terminator.reload_if_changed());
    assert!(
        handshake(&terminator, client_config(&second.ca_pem, None))
            .await
            .is_ok()
    );
    assert!(
        handshake(&terminator, client_config(&first.ca_pem, None))
            .await
            .is_err()
    );

    // Half a rotation: a new certificate whose key has not arrived yet.
    let third = new_pki();
    write(dir.path(), "cert.pem", &third.cert_pem);
    assert!(!terminator.reload_if_changed());
    assert!(
        handshake(&terminator, client_config(&second.ca_pem, None))
            .await
            .is_ok(),
        "the previous certificate keeps serving"
    );
    // The key arrives: the next look picks the pair up.
    write(dir.path(), "key.pem", &third.key_pem);
    assert!(terminator.reload_if_changed());
    assert!(
        handshake(&terminator, client_config(&third.ca_pem, None))
            .await
            .is_ok()
    );
}
