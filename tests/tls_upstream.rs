//! End-to-end tests of TLS towards replicas (`upstream_tls`, `https://`
//! nodes): a real `levee serve` in front of real `levee kv-replica
//! --tls-cert ... --tls-key ...` processes, with a CA and certificates made
//! here (rcgen) and written to a temporary directory.
//!
//! What they show: reads, replicated writes (N=3, W=2) and health checks
//! go over TLS; a levee trusting another CA gets connect failures (the
//! answer says `connection failed`, the health checks log `Failed(Connect)`
//! and mark the replicas down) and the replicas never see a request; a
//! replica requiring a client certificate gets levee's and refuses a levee
//! without one; pooled TLS connections are reused (the replicas count
//! handshakes); a missing `ca_file` or a client key of another certificate
//! stops levee at start, naming the field and the file. No assertion
//! depends on timing: waits poll with generous bounds.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use support::{Levee, Proc, call, reason};

/// The admin token these tests configure (`/admin/state` needs one).
const ADMIN_TOKEN: &str = "tls-upstream-tests-admin-token-0123456789";
/// Polls of a wait and their spacing (bounded: 1200 × 50 ms).
const POLLS: u32 = 1200;
const POLL_PAUSE: Duration = Duration::from_millis(50);
/// Longest a test's own call to a replica may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A CA and, signed by it, a server certificate for 127.0.0.1 and
/// localhost and a client certificate: PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
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
            let cert_path = dir.join(format!("{name}-{file}.pem"));
            let key_path = dir.join(format!("{name}-{file}.key"));
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

    /// `upstream_tls` trusting this CA, presenting its client certificate
    /// when `client_cert`.
    fn upstream_tls(&self, client_cert: bool) -> Value {
        let mut tls = json!({"ca_file": self.ca});
        if client_cert {
            tls["client_cert_chain_file"] = json!(self.client_cert);
            tls["client_key_file"] = json!(self.client_key);
        }
        tls
    }

    /// The tests' own HTTPS client: trusts this CA, presents the client
    /// certificate (to replicas that ask).
    fn client(
        &self,
    ) -> Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    > {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(certificate.unwrap()).unwrap();
        }
        let chain = CertificateDer::pem_file_iter(&self.client_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.client_key).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(connector)
    }
}

/// A `levee kv-replica` serving HTTPS with `pki`'s server certificate.
struct TlsReplica {
    id: String,
    address: SocketAddr,
    /// Killed (by PID) when the replica drops.
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl TlsReplica {
    /// Requires a client certificate from `pki`'s CA when `client_ca`.
    fn spawn(id: &str, pki: &Pki, client_ca: bool) -> TlsReplica {
        let dir = tempfile::tempdir().expect("replica dir");
        let data = dir.path().join("data");
        let mut args = vec![
            "kv-replica".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
            "--tls-cert".into(),
            pki.server_cert.to_str().unwrap().into(),
            "--tls-key".into(),
            pki.server_key.to_str().unwrap().into(),
        ];
        if client_ca {
            args.extend(["--tls-client-ca".into(), pki.ca.to_str().unwrap().into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::spawn(&args, &dir.path().join("stderr.log"));
        let address = proc
            .banner
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected replica banner {:?}", proc.banner));
        TlsReplica {
            id: id.to_owned(),
            address,
            _proc: proc,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// `GET path` over TLS with the tests' own client (a new connection).
    async fn json(&self, pki: &Pki, path: &str) -> Value {
        let request = Request::get(format!("{}{path}", self.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let exchange = async {
            let response = pki.client().request(request).await.expect("replica call");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            response.into_body().collect().await.unwrap().to_bytes()
        };
        let body = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .expect("replica call in time");
        serde_json::from_slice(&body).expect("json")
    }

    async fn stat(&self, pki: &Pki, name: &str) -> u64 {
        self.json(pki, "/_stats").await[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in /_stats"))
    }
}

fn spawn_replicas(pki: &Pki, client_ca: bool) -> Vec<TlsReplica> {
    (0..3)
        .map(|i| TlsReplica::spawn(&format!("r{i}"), pki, client_ca))
        .collect()
}

/// Service `kv` over `replicas`: N=3, W=2, `extra` fields added.
fn service(replicas: &[TlsReplica], extra: Value) -> Value {
    let mut spec = json!({
        "name": "kv",
        "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
        "key": {"path_segment": 1},
        "replicas": 3,
        "write_quorum": 2,
        "timeouts": {"per_try_ms": 5000, "total_ms": 20000},
    });
    for (field, value) in extra.as_object().cloned().unwrap_or_default() {
        spec[field] = value;
    }
    spec
}

async fn start_levee(upstream_tls: Value, service: Value) -> Levee {
    Levee::start(json!({
        "admin_token": ADMIN_TOKEN,
        "upstream_tls": upstream_tls,
        "services": [service],
    }))
    .await
}

async fn put(levee: &Levee, key: &str, value: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = call(
        Method::PUT,
        &levee.url(&format!("/kv/kv/{key}")),
        &[],
        value.to_owned(),
    )
    .await;
    let acks = headers
        .get("x-levee-acks")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, acks, body)
}

async fn get(levee: &Levee, key: &str) -> (StatusCode, String) {
    let (status, _, body) = call(Method::GET, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
    (status, body)
}

/// Each node's `healthy` in levee's `/admin/state`.
async fn nodes_healthy(levee: &Levee) -> Vec<bool> {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _, body) = call(
        Method::GET,
        &levee.admin_url("/admin/state"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    state["services"][0]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["healthy"].as_bool().expect("healthy"))
        .collect()
}

/// Polls `check` until it holds (bounded); panics with `what` otherwise.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..POLLS {
        if check().await {
            return;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_replicated_writes_and_health_checks_go_over_tls_to_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "good");
    let replicas = spawn_replicas(&pki, false);
    let check =
        json!({"health_check": {"path": "/healthz", "interval_ms": 100, "timeout_ms": 2000}});
    let levee = start_levee(pki.upstream_tls(false), service(&replicas, check)).await;

    for i in 0..10 {
        let (status, acks, body) = put(&levee, &format!("key-{i}"), &format!("value-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(acks == "2/3" || acks == "3/3", "{acks}");
    }
    for replica in &replicas {
        wait_for(&format!("{} holds all 10 keys", replica.id), || async {
            let dump = replica.json(&pki, "/_dump").await;
            dump["keys"].as_object().map(|keys| keys.len()) == Some(10)
        })
        .await;
    }
    for i in 0..10 {
        let (status, body) = get(&levee, &format!("key-{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("value-{i}")));
    }

    // The health checks reach every replica over TLS (it speaks nothing
    // else) and find it healthy.
    for replica in &replicas {
        wait_for(
            &format!("{} answered 5 health checks", replica.id),
            || async { replica.stat(&pki, "healthz_requests").await >= 5 },
        )
        .await;
        assert_eq!(replica.stat(&pki, "tls_handshake_failures").await, 0);
    }
    assert_eq!(nodes_healthy(&levee).await, [true, true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sequential_reads_reuse_pooled_tls_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "good");
    let replicas = spawn_replicas(&pki, false);
    let levee = start_levee(pki.upstream_tls(false), service(&replicas, json!({}))).await;
    let (status, _, body) = put(&levee, "pooled", "value").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(get(&levee, "pooled").await.0, StatusCode::OK);

    // Each stats call is a connection of its own, counted before it is
    // answered: the second reading counts its own.
    let mut before = 0;
    for replica in &replicas {
        before += replica.stat(&pki, "connections").await;
    }
    for _ in 0..50 {
        let (status, body) = get(&levee, "pooled").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "value"));
    }
    let mut after = 0;
    for replica in &replicas {
        after += replica.stat(&pki, "connections").await;
    }
    let opened_by_levee = after - before - replicas.len() as u64;
    assert!(
        opened_by_levee <= 3,
        "50 reads opened {opened_by_levee} TLS connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_levee_trusting_another_ca_gets_connect_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, other) = (Pki::new(dir.path(), "good"), Pki::new(dir.path(), "other"));
    let replicas = spawn_replicas(&pki, false);

    // The data path: reads and writes fail as connect failures.
    let levee = start_levee(other.upstream_tls(false), service(&replicas, json!({}))).await;
    let (status, body) = get(&levee, "k").await;
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {body}"
    );
    assert!(reason(&body).contains("connection failed"), "{body}");
    let (status, _, body) = put(&levee, "k", "v").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        reason(&body).contains("connection refused or unreachable"),
        "{body}"
    );

    // The health checks: `Failed(Connect)`, and the replicas marked down.
    let check = json!({"health_check": {"path": "/healthz", "interval_ms": 100, "timeout_ms": 2000, "unhealthy_threshold": 1}});
    let checked = start_levee(other.upstream_tls(false), service(&replicas, check)).await;
    wait_for("the health checks mark every replica down", || async {
        nodes_healthy(&checked).await == [false, false, false]
    })
    .await;
    let log = checked.proc.stderr();
    assert!(
        log.contains("active health changed") && log.contains("Failed(Connect)"),
        "{log}"
    );

    for replica in &replicas {
        assert_eq!(replica.stat(&pki, "kv_requests").await, 0, "{}", replica.id);
        assert_eq!(replica.stat(&pki, "healthz_requests").await, 0);
        assert!(replica.stat(&pki, "tls_handshake_failures").await > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_requiring_a_client_certificate_gets_levees_and_refuses_a_levee_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "good");
    let replicas = spawn_replicas(&pki, true);

    let with = start_levee(pki.upstream_tls(true), service(&replicas, json!({}))).await;
    let (status, acks, body) = put(&with, "mutual", "tls").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(acks == "2/3" || acks == "3/3", "{acks}");
    assert_eq!(
        get(&with, "mutual").await,
        (StatusCode::OK, "tls".to_string())
    );
    let mut refused_before = 0;
    for replica in &replicas {
        refused_before += replica.stat(&pki, "tls_handshake_failures").await;
    }
    assert_eq!(refused_before, 0, "levee's certificate was accepted");

    let without = start_levee(pki.upstream_tls(false), service(&replicas, json!({}))).await;
    let (status, body) = get(&without, "mutual").await;
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {body}"
    );
    assert!(reason(&body).contains("connection failed"), "{body}");
    let mut refused = 0;
    for replica in &replicas {
        refused += replica.stat(&pki, "tls_handshake_failures").await;
    }
    assert!(refused > 0, "the replicas refused the handshakes");
}

/// Runs `levee serve` with `config` (listeners and data_dir filled in),
/// expecting it to exit unsuccessfully (bounded); returns its stderr.
fn start_fails(dir: &Path, config: Value) -> String {
    let mut config = config;
    config["listeners"] = json!({"data": "127.0.0.1:0", "admin": "127.0.0.1:0"});
    config["data_dir"] = json!(dir.join("data"));
    let config_path = dir.join("levee.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let stderr_path = dir.join("stderr.log");
    let mut child = Command::new(support::LEVEE)
        .args(["serve", "--config", config_path.to_str().unwrap()])
        .env("LEVEE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn levee");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    for _ in 0..POLLS {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "levee started; stderr:\n{}", stderr());
            return stderr();
        }
        std::thread::sleep(POLL_PAUSE);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("levee kept running; stderr:\n{}", stderr());
}

#[test]
fn a_missing_ca_file_or_a_client_key_of_another_certificate_stops_levee_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "good");
    let missing = dir.path().join("missing-ca.pem");

    let run = tempfile::tempdir().unwrap();
    let stderr = start_fails(run.path(), json!({"upstream_tls": {"ca_file": missing}}));
    let expected = format!("upstream_tls.ca_file {}: No such file", missing.display());
    assert!(stderr.contains(&expected), "{stderr}");

    let run = tempfile::tempdir().unwrap();
    let mismatched = json!({"upstream_tls": {
        "ca_file": pki.ca,
        "client_cert_chain_file": pki.client_cert,
        "client_key_file": pki.server_key,
    }});
    let stderr = start_fails(run.path(), mismatched);
    let expected = format!(
        "upstream_tls.client_key_file {}: does not go with upstream_tls.client_cert_chain_file {}",
        pki.server_key.display(),
        pki.client_cert.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
