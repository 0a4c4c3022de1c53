//! TLS and HTTP/2 on levee's listeners, end to end: real `levee serve` and
//! `levee kv-replica` processes, certificates generated here (rcgen), and
//! real clients: curl (HTTP/1.1 and HTTP/2 over TLS, h2c, mutual TLS),
//! nghttp (many HTTP/2 streams on one connection), and rustls + hyper
//! clients where a test must hold a connection across a certificate
//! rotation or a shutdown.
//!
//! curl and nghttp come from Debian (`curl`, `nghttp2-client`), installed
//! by `scripts/test.sh`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::{Cluster, LEVEE, Proc};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a client command may take (curl, nghttp).
const CLIENT_SECONDS_MAX: &str = "30";
/// Polls for a rotated certificate to be served (bounded: 200 × 50 ms,
/// well past the 1 s reload check).
const ROTATION_POLLS: u32 = 200;

// ---- certificates -----------------------------------------------------------

/// A certificate authority that issues certificates into `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Its own name: a leaf whose issuer name equals its subject name
        // looks self-signed to OpenSSL (curl).
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes this CA's certificate to `dir/name`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write_atomically(dir, name, &self.pem)
    }

    /// A certificate for `localhost` (and 127.0.0.1) as `dir/name.pem`
    /// and `dir/name-key.pem`.
    fn issue(&self, dir: &Path, name: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: write_atomically(dir, &format!("{name}.pem"), &cert.pem()),
            key: write_atomically(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
        }
    }
}

/// Write-then-rename, as a certificate renewer does.
fn write_atomically(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

fn tls_spec(issued: &Issued) -> Value {
    json!({"cert_chain_file": issued.cert, "key_file": issued.key})
}

// ---- clients ----------------------------------------------------------------

/// What a curl run printed: its exit code, `-w` output and stderr.
struct Curl {
    code: i32,
    out: String,
    err: String,
}

/// curl with a time bound, `localhost` pinned to 127.0.0.1 on `address`'s
/// port, printing the body then `<http_version> <status>`.
fn curl(address: SocketAddr, args: &[&str]) -> Curl {
    let resolve = format!("localhost:{}:127.0.0.1", address.port());
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            CLIENT_SECONDS_MAX,
            "--resolve",
            &resolve,
        ])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    Curl {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Curl {
    /// The last line: `<http_version> <status>`.
    fn outcome(&self) -> &str {
        self.out.lines().last().unwrap_or_default()
    }

    fn body(&self) -> &str {
        self.out
            .rsplit_once('\n')
            .map(|(body, _)| body)
            .unwrap_or_default()
    }
}

fn https(address: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", address.port())
}

/// A rustls client config trusting `cas` (PEM files), offering `alpn`.
fn client_config(cas: &[&Path], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to levee; the end-entity certificate it presented.
async fn tls_connect(
    address: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>), String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, presented))
}

fn der_of(cert: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(cert).unwrap().to_vec()
}

// ---- levee ------------------------------------------------------------------

/// Two replicas behind levee with `listeners` and `server` config.
async fn cluster(listeners: Value, server: Value) -> Cluster {
    Cluster::start_with(
        2,
        // Timeouts well past the slow replica of the shutdown test.
        json!({"replicas": 2, "write_quorum": 2, "timeouts": {"per_try_ms": 10_000, "total_ms": 20_000}}),
        json!({"listeners": listeners, "server": server}),
    )
    .await
}

fn plain_listeners() -> Value {
    json!({"data": "127.0.0.1:0", "admin": "127.0.0.1:0"})
}

// ---- tests ------------------------------------------------------------------

#[tokio::test]
async fn http1_and_http2_over_tls_take_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("levee test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = ca.issue(dir.path(), "server");
    let mut listeners = plain_listeners();
    listeners["tls"] = json!({"data": tls_spec(&server)});
    let cluster = cluster(listeners, json!({})).await;
    let data = cluster.levee.data;
    let ca_arg = ca_file.to_str().unwrap();

    let put = curl(
        data,
        &[
            "--http1.1",
            "--cacert",
            ca_arg,
            "-X",
            "PUT",
            "--data",
            "over-h1",
            &https(data, "/kv/kv/one"),
        ],
    );
    assert_eq!(put.outcome(), "1.1 200", "{} {}", put.out, put.err);
    let put = curl(
        data,
        &[
            "--http2",
            "--cacert",
            ca_arg,
            "-X",
            "PUT",
            "--data",
            "over-h2",
            &https(data, "/kv/kv/two"),
        ],
    );
    assert_eq!(put.outcome(), "2 200", "{} {}", put.out, put.err);
    // A write over HTTP/2 is replicated like any other: both replicas hold it.
    for replica in &cluster.replicas {
        let dump = replica.dump().await.to_string();
        assert!(dump.contains("one") && dump.contains("two"), "{dump}");
    }
    let get = curl(
        data,
        &[
            "--http2",
            "--cacert",
            ca_arg,
            "-i",
            &https(data, "/kv/kv/one"),
        ],
    );
    assert_eq!(get.outcome(), "2 200", "{}", get.err);
    assert!(get.body().contains("over-h1"), "{}", get.out);
    assert!(
        get.out.contains("x-levee-attempts"),
        "levee's headers: {}",
        get.out
    );

    // Many streams on one connection (nghttp: -m repeats the request).
    let output = Command::new("nghttp")
        .args(["-n", "-v", "-m", "50", "-t", CLIENT_SECONDS_MAX])
        .arg(https(data, "/kv/kv/two").replace("localhost", "127.0.0.1"))
        .output()
        .expect("nghttp runs (scripts/test.sh installs nghttp2-client)");
    let frames = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{frames}");
    assert_eq!(frames.matches(":status: 200").count(), 50, "{frames}");
    assert!(frames.contains("recv SETTINGS frame"), "{frames}");
    assert!(
        frames.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100"),
        "{frames}"
    );

    // A client trusting another CA refuses levee's certificate.
    let stranger = Ca::new("a stranger's CA").write(dir.path(), "other-ca.pem");
    let refused = curl(
        data,
        &[
            "--cacert",
            stranger.to_str().unwrap(),
            &https(data, "/kv/kv/one"),
        ],
    );
    assert_eq!(refused.code, 60, "certificate problem: {}", refused.err);
    // Plain HTTP on the TLS port is not served.
    let plain = curl(data, &[&format!("http://localhost:{}/kv/one", data.port())]);
    assert_ne!(plain.outcome(), "1.1 200", "{}", plain.out);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_only_when_enabled() {
    let on = cluster(plain_listeners(), json!({"http2": {"h2c": true}})).await;
    let url = on.levee.url("/kv/kv/k");
    let put = curl(
        on.levee.data,
        &["--http2-prior-knowledge", "-X", "PUT", "--data", "v", &url],
    );
    assert_eq!(put.outcome(), "2 200", "{} {}", put.out, put.err);
    let get = curl(on.levee.data, &["--http2-prior-knowledge", &url]);
    assert_eq!((get.outcome(), get.body()), ("2 200", "v"), "{}", get.err);
    let http1 = curl(on.levee.data, &["--http1.1", &url]);
    assert_eq!(
        http1.outcome(),
        "1.1 200",
        "HTTP/1 beside h2c: {}",
        http1.err
    );

    let off = cluster(plain_listeners(), json!({})).await;
    let refused = curl(
        off.levee.data,
        &["--http2-prior-knowledge", &off.levee.url("/kv/kv/k")],
    );
    assert_ne!(refused.outcome(), "2 200", "h2c is opt-in: {}", refused.out);
    let http1 = curl(off.levee.data, &["--http1.1", &off.levee.url("/kv/kv/k")]);
    assert_eq!(http1.outcome(), "1.1 404", "{}", http1.err);
}

#[tokio::test]
async fn a_certificate_rotation_drops_no_connection_and_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let old_ca_file = old_ca.write(dir.path(), "old-ca.pem");
    let new_ca_file = new_ca.write(dir.path(), "new-ca.pem");
    let server = old_ca.issue(dir.path(), "server");
    let mut listeners = plain_listeners();
    listeners["tls"] = json!({"data": tls_spec(&server)});
    let cluster = cluster(listeners, json!({})).await;
    let data = cluster.levee.data;
    let both = client_config(&[&old_ca_file, &new_ca_file], &[b"http/1.1"]);

    // A client holding one connection from before the rotation.
    let (held, presented) = tls_connect(data, both.clone()).await.unwrap();
    assert_eq!(presented, der_of(&server.cert));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(held))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        Request::get("/kv/kv/r")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let mut answered = 0;
    let response = sender.send_request(get()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
    answered += 1;

    // Rotate: the renewer writes a new certificate and key.
    let renewed = new_ca.issue(dir.path(), "renewed");
    std::fs::rename(&renewed.key, &server.key).unwrap();
    std::fs::rename(&renewed.cert, &server.cert).unwrap();
    let renewed_der = der_of(&server.cert);

    // Until new handshakes present the new certificate, keep using the held
    // connection and opening new ones: every request is answered.
    let mut rotated = false;
    for _ in 0..ROTATION_POLLS {
        let response = sender
            .send_request(get())
            .await
            .expect("the held connection still serves");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        answered += 1;
        let (_fresh, presented) = tls_connect(data, both.clone())
            .await
            .expect("a new connection is served");
        if presented == renewed_der {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "levee never presented the renewed certificate");
    // After the rotation: the old connection still answers, a client that
    // trusts only the new CA connects, one that trusts only the old does not.
    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(answered > 1);
    assert!(
        tls_connect(data, client_config(&[&new_ca_file], &[b"http/1.1"]))
            .await
            .is_ok()
    );
    assert!(
        tls_connect(data, client_config(&[&old_ca_file], &[b"http/1.1"]))
            .await
            .is_err()
    );
    let reloads = support::call(
        hyper::Method::GET,
        &cluster.levee.admin_url("/metrics"),
        &[],
        "",
    )
    .await
    .2;
    assert!(
        reloads.contains(r#"levee_tls_reloads_total{listener="data",result="ok"}"#),
        "{reloads}"
    );
}

#[tokio::test]
async fn shutdown_sends_goaway_and_in_flight_streams_finish() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("levee test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = ca.issue(dir.path(), "server");
    let mut listeners = plain_listeners();
    listeners["tls"] = json!({"data": tls_spec(&server)});
    let mut cluster = cluster(listeners, json!({})).await;
    for replica in &cluster.replicas {
        replica.put("slow", "finished").await;
        replica.fault(json!({"delay_ms": 1500})).await;
    }
    let (tls, _) = tls_connect(cluster.levee.data, client_config(&[&ca_file], &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
    let request = Request::get("https://localhost/kv/kv/slow")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let in_flight = tokio::spawn(sender.send_request(request));
    // Let the stream reach a replica, then stop levee.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = cluster.levee.proc.pid().unwrap();
    sigterm(pid);
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight stream finishes");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"finished");
    // GOAWAY: the connection ends once its last stream is done, and levee
    // exits cleanly.
    tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("the connection ends after GOAWAY")
        .unwrap()
        .expect("ended without a protocol error");
    assert_eq!(cluster.levee.proc.terminate(), Some(0));
}

#[tokio::test]
async fn mutual_tls_guards_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("levee test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = ca.issue(dir.path(), "server");
    let clients = Ca::new("operators' CA");
    let clients_file = clients.write(dir.path(), "clients-ca.pem");
    let operator = clients.issue(dir.path(), "operator");
    let mut admin_tls = tls_spec(&server);
    admin_tls["client_ca_file"] = json!(clients_file);
    let config = json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0", "tls": {"admin": admin_tls}},
        "data_dir": dir.path().join("data"),
    });
    let (mut levee, admin) = spawn_levee(dir.path(), &config);
    let ca_arg = ca_file.to_str().unwrap();
    let (cert, key) = (
        operator.cert.to_str().unwrap(),
        operator.key.to_str().unwrap(),
    );
    let mut ready = None;
    // Bounded: 600 × 50 ms, as the support module's readiness wait.
    for _ in 0..600 {
        let probe = curl(
            admin,
            &[
                "--cacert",
                ca_arg,
                "--cert",
                cert,
                "--key",
                key,
                &https(admin, "/readyz"),
            ],
        );
        if probe.outcome().ends_with(" 200") {
            ready = Some(probe);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready =
        ready.unwrap_or_else(|| panic!("admin never ready over mutual TLS: {}", levee.stderr()));
    assert!(ready.outcome() == "2 200" || ready.outcome() == "1.1 200");
    let refused = curl(admin, &["--cacert", ca_arg, &https(admin, "/readyz")]);
    assert_ne!(refused.code, 0, "no client certificate: {}", refused.out);
    let stranger = Ca::new("a stranger's CA").issue(dir.path(), "stranger");
    let refused = curl(
        admin,
        &[
            "--cacert",
            ca_arg,
            "--cert",
            stranger.cert.to_str().unwrap(),
            "--key",
            stranger.key.to_str().unwrap(),
            &https(admin, "/readyz"),
        ],
    );
    assert_ne!(
        refused.code, 0,
        "a certificate of another CA: {}",
        refused.out
    );
    assert_eq!(levee.terminate(), Some(0));
}

#[test]
fn bad_certificate_files_refuse_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("levee test CA");
    let server = ca.issue(dir.path(), "server");
    let other = ca.issue(dir.path(), "other");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            json!({"cert_chain_file": missing, "key_file": server.key}),
            "listeners.tls.data.cert_chain_file",
            "missing.pem",
        ),
        (
            json!({"cert_chain_file": server.cert, "key_file": other.key}),
            "listeners.tls.data.key_file",
            "does not go with",
        ),
    ];
    for (tls, field, words) in cases {
        let config = json!({
            "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0", "tls": {"data": tls}},
            "data_dir": dir.path().join("data"),
        });
        let (code, stderr) = run_to_exit(dir.path(), &config);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(field) && stderr.contains(words), "{stderr}");
    }
    // A token on a plain admin listener other machines can reach.
    let config = json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "0.0.0.0:0"},
        "admin_token": "0123456789abcdef0123",
        "data_dir": dir.path().join("data"),
    });
    let (code, stderr) = run_to_exit(dir.path(), &config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("clear text") && stderr.contains("listeners.tls.admin"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").join("log").exists(),
        "refused before recovery"
    );
}

/// `levee serve` with `config`, expected to exit by itself; its exit code
/// and stderr.
fn run_to_exit(dir: &Path, config: &Value) -> (Option<i32>, String) {
    let path = dir.join("refused.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let output = Command::new("timeout")
        .args(["60", LEVEE, "serve", "--config", path.to_str().unwrap()])
        .env_remove("LEVEE_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `levee serve` with `config`; the process and its admin address.
fn spawn_levee(dir: &Path, config: &Value) -> (Proc, SocketAddr) {
    let path = dir.join("levee.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let levee = Proc::spawn(
        &["serve", "--config", path.to_str().unwrap()],
        &dir.join("stderr.log"),
    );
    let admin = levee
        .banner
        .split_whitespace()
        .find_map(|part| part.strip_prefix("admin="))
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {:?}", levee.banner));
    (levee, admin)
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
