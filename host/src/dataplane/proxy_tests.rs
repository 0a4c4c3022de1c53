//! The read path against real replicas: retries, timeouts, the lag index
//! and stale answers.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use serde_json::json;

use super::*;
use crate::config::ServiceSpec;
use levee_kv_replica::{Faults, Replica};

/// A real kv replica served in-process on a loopback port.
struct LiveReplica {
    address: SocketAddr,
    replica: Arc<Replica>,
    _dir: tempfile::TempDir,
}

async fn live_replica() -> LiveReplica {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = levee_kv_replica::router(Arc::clone(&replica));
    tokio::spawn(async move { axum::serve(listener, app).await });
    LiveReplica {
        address,
        replica,
        _dir: dir,
    }
}

fn service(replicas: &[&LiveReplica], extra: serde_json::Value) -> Arc<Service> {
    let mut spec = json!({
        "name": "kv",
        "nodes": replicas.iter().enumerate()
            .map(|(i, r)| json!({"id": format!("r{i}"), "url": format!("http://{}", r.address)}))
            .collect::<Vec<_>>(),
        "key": {"path_segment": 1},
    });
    for (field, value) in extra.as_object().cloned().unwrap_or_default() {
        spec[field] = value;
    }
    let spec: ServiceSpec = serde_json::from_value(spec).unwrap();
    spec.validate().unwrap();
    let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
    Arc::new(Service::build(spec, &runtime).unwrap())
}

/// A write plane over a fresh log in `dir`, for `service`.
fn plane(dir: &std::path::Path, service: &Service) -> WritePlane {
    let config = crate::config::Config::from_json(
        &json!({"data_dir": dir, "services": [service.spec]}).to_string(),
    )
    .unwrap();
    let options = levee_log::LogOptions::default();
    let (log, _) = levee_log::Log::open(&dir.join("log"), options).unwrap();
    WritePlane::open(log, &config, Default::default()).unwrap()
}

/// [`send_with`] with a write plane of its own (nothing lags, no
/// version is known).
async fn send(
    service: &Arc<Service>,
    method: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, u32, String) {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), service);
    send_with(&plane, service, method, key, headers).await
}

async fn send_with(
    plane: &WritePlane,
    service: &Arc<Service>,
    method: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, u32, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/kv/kv/{key}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from("payload")).unwrap();
    let inbound = Inbound::read(service, request, &format!("/kv/{key}"), clock::now_ms())
        .await
        .unwrap();
    let response = forward(&UpstreamClient::new(), plane, inbound)
        .await
        .unwrap();
    let status = response.status();
    let attempts = response.headers()[&X_LEVEE_ATTEMPTS]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        attempts,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn fail_once(status: u16) -> Faults {
    Faults {
        fail_status: Some(status),
        fail_count: Some(1),
        ..Faults::default()
    }
}

/// The replicas of `key` in preference order.
fn order(service: &Service, key: &str) -> Vec<usize> {
    service.preference(key.as_bytes()).iter().collect()
}

#[tokio::test]
async fn a_post_without_idempotency_key_is_not_retried() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({}));
    let order = order(&service, "k");
    live[order[0]].replica.set_faults(fail_once(503));
    let (status, attempts, _) = send(&service, "POST", "k", &[]).await;
    assert_eq!((status, attempts), (StatusCode::SERVICE_UNAVAILABLE, 1));
    assert_eq!(
        live[order[1]].replica.kv_requests(),
        0,
        "no second replica saw it"
    );
}

#[tokio::test]
async fn a_post_with_idempotency_key_is_retried_on_the_next_replica() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({}));
    let order = order(&service, "k");
    live[order[0]].replica.set_faults(fail_once(503));
    let (status, attempts, body) = send(&service, "POST", "k", &[("idempotency-key", "abc")]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 2, "ok\n")
    );
    assert_eq!(live[order[0]].replica.kv_requests(), 1);
    assert_eq!(live[order[1]].replica.kv_requests(), 1);
}

#[tokio::test]
async fn attempts_never_exceed_max_attempts() {
    let (a, b, c) = (
        live_replica().await,
        live_replica().await,
        live_replica().await,
    );
    let live = [&a, &b, &c];
    let service = service(&live, json!({"max_attempts": 2}));
    for replica in live {
        replica.replica.set_faults(Faults {
            fail_status: Some(503),
            ..Faults::default()
        });
    }
    let (status, attempts, _) = send(&service, "GET", "k", &[]).await;
    assert_eq!((status, attempts), (StatusCode::SERVICE_UNAVAILABLE, 2));
    let total: u64 = live.iter().map(|r| r.replica.kv_requests()).sum();
    assert_eq!(total, 2);
}

#[tokio::test]
async fn a_dead_cluster_answers_502_with_the_reason() {
    // Ports that refuse connections: bound, then released.
    let dead: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let spec: ServiceSpec = serde_json::from_value(json!({
        "name": "kv",
        "nodes": dead.iter().enumerate().map(|(i, port)| json!({"id": format!("d{i}"), "url": format!("http://127.0.0.1:{port}")})).collect::<Vec<_>>(),
        "key": {"path_segment": 1},
    }))
    .unwrap();
    let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
    let service = Arc::new(Service::build(spec, &runtime).unwrap());
    let (status, attempts, body) = send(&service, "GET", "k", &[]).await;
    // max_attempts (3) wraps around the two candidates.
    assert_eq!((status, attempts), (StatusCode::BAD_GATEWAY, 3));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("no replica of kv answered after 3 attempt(s); last: connection failed")
    );
}

#[tokio::test]
async fn a_per_try_timeout_moves_on_to_the_next_replica() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(
        &live,
        json!({"timeouts": {"per_try_ms": 100, "total_ms": 60000}}),
    );
    let order = order(&service, "k");
    live[order[0]].replica.set_faults(Faults {
        delay_ms: 30_000,
        ..Faults::default()
    });
    live[order[1]].replica.set_faults(Faults::default());
    let (status, attempts, _) = send(&service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts),
        (StatusCode::NOT_FOUND, 2),
        "the timed-out primary was abandoned"
    );
}

fn node_ref(service: &Service, node: usize) -> crate::replication::hints::NodeRef {
    crate::replication::hints::NodeRef::new("kv", &service.nodes[node].spec.id)
}

fn version(physical_ms: u64) -> Version {
    Version {
        physical_ms,
        logical: 0,
        instance: levee_version::InstanceId(9),
    }
}

/// Writes `value` with `version` straight into one replica.
async fn put_versioned(replica: &LiveReplica, key: &str, value: &str, version: Version) {
    let request = Request::put(format!("http://{}/kv/{key}", replica.address))
        .header(VERSION_HEADER, version.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from(
            value.to_owned(),
        )))
        .unwrap();
    let response = UpstreamClient::new()
        .send(request, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_replica_that_owes_the_key_is_skipped_by_reads() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({"replicas": 2, "write_quorum": 1}));
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), &service);
    let order = order(&service, "k");
    let targets = [node_ref(&service, order[0]), node_ref(&service, order[1])];
    plane.ledger.begin_append().register_write(1, "k", &targets);
    plane.ledger.acked(&targets[1], 1);
    // The first replica in the preference list still owes the write.
    let (status, attempts, _) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
    assert_eq!(live[order[0]].replica.kv_requests(), 0);
    assert_eq!(live[order[1]].replica.kv_requests(), 1);
    // Another key is read as usual.
    let other = order_of_other_key(&service, order[0]);
    send_with(&plane, &service, "GET", &other, &[]).await;
    assert_eq!(live[order[0]].replica.kv_requests(), 1);
    // Once it has the write, it is read again.
    plane.ledger.acked(&targets[0], 1);
    send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(live[order[0]].replica.kv_requests(), 2);
    assert_eq!(plane.ledger.reads_all_lagging(), 0);
}

/// A key whose first replica is `first`.
fn order_of_other_key(service: &Service, first: usize) -> String {
    (0..1000)
        .map(|i| format!("other{i}"))
        .find(|key| order(service, key)[0] == first)
        .expect("some key starts on each node")
}

#[tokio::test]
async fn when_every_replica_owes_the_key_the_read_goes_as_usual_and_is_counted() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({"replicas": 2, "write_quorum": 1}));
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), &service);
    let order = order(&service, "k");
    let targets = [node_ref(&service, order[0]), node_ref(&service, order[1])];
    plane.ledger.begin_append().register_write(1, "k", &targets);
    let (status, attempts, _) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
    assert_eq!(live[order[0]].replica.kv_requests(), 1);
    assert_eq!(plane.ledger.reads_all_lagging(), 1);
}

#[tokio::test]
async fn a_stale_answer_is_replaced_by_the_next_replica_and_repaired() {
    let (a, b, c) = (
        live_replica().await,
        live_replica().await,
        live_replica().await,
    );
    let live = [&a, &b, &c];
    let service = service(&live, json!({}));
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), &service);
    let order = order(&service, "k");
    put_versioned(live[order[0]], "k", "old", version(1)).await;
    put_versioned(live[order[1]], "k", "older", version(0)).await;
    put_versioned(live[order[2]], "k", "new", version(2)).await;
    // Unknown key: the first answer stands, whatever its version.
    let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 1, "old")
    );
    assert_eq!(plane.repairs.pending(), 0);
    // Known at version 2: both older answers are passed over.
    plane.recent.note("kv", "k", version(2), false);
    let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 3, "new")
    );
    assert_eq!(plane.repairs.pending(), 1, "a repair of k was requested");
    // Known newer than any replica holds: the newest answer seen.
    plane.recent.note("kv", "k", version(3), false);
    let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 3, "new")
    );
}

#[tokio::test]
async fn a_404_without_a_version_is_stale_for_a_key_known_to_hold_a_value() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({}));
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), &service);
    let order = order(&service, "k");
    put_versioned(live[order[1]], "k", "value", version(5)).await;
    plane.recent.note("kv", "k", version(5), false);
    let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 2, "value")
    );
    // A key known as deleted: a 404 without a version is the answer.
    plane.recent.note("kv", "gone", version(6), true);
    let (status, attempts, _) = send_with(&plane, &service, "GET", "gone", &[]).await;
    assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
}

#[tokio::test]
async fn a_stale_answer_asks_a_replica_the_plan_left_out() {
    let (a, b) = (live_replica().await, live_replica().await);
    let live = [&a, &b];
    let service = service(&live, json!({"replicas": 2, "write_quorum": 1}));
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path(), &service);
    let order = order(&service, "k");
    // The second replica has the newest write but its ack is still
    // outstanding, so the lag index leaves it out of the read's plan; the
    // first answers stale (a write it lost that nothing tracks).
    let targets = [node_ref(&service, order[0]), node_ref(&service, order[1])];
    plane.ledger.begin_append().register_write(1, "k", &targets);
    plane.ledger.acked(&targets[0], 1);
    put_versioned(live[order[0]], "k", "old", version(1)).await;
    put_versioned(live[order[1]], "k", "new", version(2)).await;
    plane.recent.note("kv", "k", version(2), false);
    let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
    assert_eq!(
        (status, attempts, body.as_str()),
        (StatusCode::OK, 2, "new")
    );
    assert_eq!(plane.repairs.pending(), 1);
}
