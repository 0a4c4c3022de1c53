//! End-to-end tests of the read path: a real `levee serve` process in front
//! of real `levee kv-replica` processes on loopback.
//!
//! Values are written straight into the replicas (bypassing levee's write
//! path) so that these tests exercise reads alone. No assertion depends on
//! how fast the machine is: delays are checked only as lower bounds the
//! protocol guarantees (a honoured `Retry-After`), never as upper bounds.

mod support;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use support::{Cluster, attempts, call, reason};

/// The GET requests in a replica's log (seeding PUTs are left out).
async fn gets(replica: &support::Replica) -> Vec<serde_json::Value> {
    replica
        .request_log()
        .await
        .into_iter()
        .filter(|e| e["method"] == "GET")
        .collect()
}

/// Writes `value` under `key` on every replica.
async fn seed(cluster: &Cluster, key: &str, value: &str) {
    for replica in &cluster.replicas {
        replica.put(key, value).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_over_when_the_primary_replica_is_killed() {
    let mut cluster = Cluster::start(3, json!({"outlier": {"consecutive_failures": 2, "base_ejection_ms": 600000, "max_ejection_ms": 600000}})).await;
    seed(&cluster, "alice", "wonderland").await;
    let (status, headers, body) = cluster.get("alice").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "wonderland"));
    assert_eq!(attempts(&headers), 1);

    let primary = cluster.preference("alice", 3)[0];
    cluster.replicas[primary].proc.kill();

    // The first read after the kill finds the primary dead and fails over.
    let (status, headers, body) = cluster.get("alice").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "wonderland"));
    assert_eq!(
        attempts(&headers),
        2,
        "one failed attempt on the dead primary, then the next replica"
    );

    // A second failure ejects the primary; after that, reads go straight to
    // the next replica without paying for a failed attempt.
    let (status, _, _) = cluster.get("alice").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..5 {
        let (status, headers, body) = cluster.get("alice").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "wonderland"));
        assert_eq!(attempts(&headers), 1, "the ejected primary is skipped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_as_retry_after_says_and_reuse_the_request_id() {
    // One replica, so every retry lands on it and its log shows them all.
    let cluster = Cluster::start(
        1,
        json!({"timeouts": {"per_try_ms": 5000, "total_ms": 20000}}),
    )
    .await;
    let replica = &cluster.replicas[0];
    replica.put("k", "v").await;
    replica
        .fault(json!({"fail_status": 503, "fail_count": 2, "retry_after_s": 1, "methods": ["GET"]}))
        .await;

    let (status, headers, body) = call(
        Method::GET,
        &cluster.levee.url("/kv/kv/k"),
        &[("x-request-id", "test-retry-1")],
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v"));
    assert_eq!(attempts(&headers), 3);
    assert_eq!(headers["x-request-id"], "test-retry-1");

    let log = replica.request_log().await;
    let gets: Vec<_> = log.iter().filter(|e| e["method"] == "GET").collect();
    let statuses: Vec<u64> = gets.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    for entry in &gets {
        assert_eq!(
            entry["request_id"], "test-retry-1",
            "every attempt carries the client's id"
        );
    }
    // Retry-After: 1 is honoured, so each retry came at least 1 s later.
    // (The log stamps responses; injected failures answer at once, and the
    // retry cannot be sent before the delay, so the gap is a lower bound.)
    for pair in gets.windows(2) {
        let gap_ms = pair[1]["at_ms"].as_u64().unwrap() - pair[0]["at_ms"].as_u64().unwrap();
        assert!(
            gap_ms >= 1000,
            "retry came {gap_ms} ms after the failure, before Retry-After"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_moves_to_the_next_replica() {
    let cluster = Cluster::start(3, json!({})).await;
    seed(&cluster, "bob", "builder").await;
    let order = cluster.preference("bob", 3);
    let (primary, second) = (&cluster.replicas[order[0]], &cluster.replicas[order[1]]);
    primary
        .fault(json!({"fail_status": 502, "fail_count": 1}))
        .await;
    let (status, headers, body) = cluster.get("bob").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "builder"));
    assert_eq!(attempts(&headers), 2);
    assert_eq!(gets(primary).await.len(), 1);
    assert_eq!(
        gets(second).await.len(),
        1,
        "the retry went to the second replica of the key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_status_is_returned_as_is() {
    let cluster = Cluster::start(2, json!({})).await;
    seed(&cluster, "k", "v").await;
    let primary = &cluster.replicas[cluster.preference("k", 2)[0]];
    primary
        .fault(json!({"fail_status": 500, "fail_count": 1}))
        .await;
    let (status, headers, _) = cluster.get("k").await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 is not retried by the native policy"
    );
    assert_eq!(attempts(&headers), 1);
    // 404 from a replica is an answer, not a failure.
    let (status, headers, _) = cluster.get("missing").await;
    assert_eq!((status, attempts(&headers)), (StatusCode::NOT_FOUND, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_a_retry_storm() {
    let ratio = 0.2;
    let min_per_s = 1u64;
    let window_ms = 10_000u64;
    let cluster = Cluster::start(
        3,
        json!({
            "max_attempts": 3,
            "retry_budget": {"ratio": ratio, "min_per_s": min_per_s, "window_ms": window_ms},
            "timeouts": {"per_try_ms": 2000, "total_ms": 10000},
        }),
    )
    .await;
    for replica in &cluster.replicas {
        replica.fault(json!({"fail_status": 503})).await;
    }
    let requests = 200u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let url = cluster.levee.url("/kv/kv/");
    for worker in 0..8u64 {
        let url = url.clone();
        tasks.spawn(async move {
            for i in 0..requests / 8 {
                let (status, _, _) =
                    call(Method::GET, &format!("{url}key-{worker}-{i}"), &[], "").await;
                assert_eq!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the replicas' own 503 comes back"
                );
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let attempts_total = cluster.total_kv_requests().await;
    // The floor is granted once per window; allow for every window the
    // test's run touched, however slow the machine.
    let windows = elapsed_ms / window_ms + 2;
    let allowed = (requests as f64 * (1.0 + ratio)) as u64 + min_per_s * window_ms / 1000 * windows;
    assert!(
        attempts_total <= allowed,
        "{attempts_total} upstream attempts for {requests} requests, budget allows {allowed}"
    );
    assert!(
        attempts_total > requests,
        "some retries were made ({attempts_total} attempts)"
    );
    assert!(
        attempts_total < requests * 3,
        "without a budget there would be {} attempts",
        requests * 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_reads_answer_from_the_second_replica_when_the_first_is_slow() {
    let cluster = Cluster::start(
        2,
        json!({"hedge_delay_ms": 50, "timeouts": {"per_try_ms": 30000, "total_ms": 60000}}),
    )
    .await;
    seed(&cluster, "h", "hedged").await;
    let order = cluster.preference("h", 2);
    let (slow, fast) = (&cluster.replicas[order[0]], &cluster.replicas[order[1]]);
    slow.fault(json!({"delay_ms": 20000, "methods": ["GET"]}))
        .await;
    let started = Instant::now();
    let (status, headers, body) = cluster.get("h").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hedged"));
    assert_eq!(attempts(&headers), 2, "the first attempt plus its hedge");
    let fast_log = gets(fast).await;
    assert_eq!(fast_log.len(), 1, "the hedge went to the second replica");
    // The answer did not wait for the slow replica's 20 s (a bound the
    // protocol guarantees: the response is sent when the hedge answers).
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        gets(slow).await.is_empty(),
        "the slow attempt has not completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let cluster = Cluster::start(2, json!({"body_bytes_max": 1024})).await;
    // Missing routing key: /kv/kv/ has no segment 1.
    let (status, _, body) = call(Method::GET, &cluster.levee.url("/kv/kv/"), &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reason(&body),
        "missing routing key: expected path segment 1 after /kv"
    );
    // Unknown service.
    let (status, _, body) = call(Method::GET, &cluster.levee.url("/nope/kv/x"), &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reason(&body), "no service named \"nope\"");
    // Oversized body, declared by Content-Length.
    let (status, _, body) = call(
        Method::GET,
        &cluster.levee.url("/kv/kv/x"),
        &[],
        vec![b'x'; 2048],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reason(&body),
        "request body is larger than the 1024 bytes this service accepts"
    );
    // Oversized body without Content-Length (chunked) is cut off too.
    let response = raw_exchange(
        cluster.levee.data,
        format!(
            "GET /kv/kv/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "y".repeat(2048)
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // Nothing reached a replica.
    assert_eq!(cluster.total_kv_requests().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_service_refuses_with_503_and_a_reason() {
    let cluster = Cluster::start(
        1,
        json!({"concurrency_max": 1, "timeouts": {"per_try_ms": 30000, "total_ms": 60000}}),
    )
    .await;
    cluster.replicas[0].put("k", "v").await;
    cluster.replicas[0].fault(json!({"delay_ms": 5000})).await;
    let url = cluster.levee.url("/kv/kv/k");
    let first = tokio::spawn({
        let url = url.clone();
        async move { call(Method::GET, &url, &[], "").await }
    });
    let second = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        call(Method::GET, &url, &[], "").await
    });
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE]);
    let refused = if first.0 == StatusCode::OK {
        second
    } else {
        first
    };
    assert_eq!(
        reason(&refused.2),
        "service kv has 1 requests in flight, its concurrency_max"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_by_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let replica = support::Replica::spawn("r0");
    let levee = support::Levee::start(json!({
        "server": {"header_read_timeout_ms": 200},
        "services": [{"name": "kv", "nodes": [{"id": "r0", "url": replica.url()}], "key": {"path_segment": 1}}],
    }))
    .await;
    let mut stream = tokio::net::TcpStream::connect(levee.data).await.unwrap();
    stream
        .write_all(b"GET /kv/kv/x HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Never finish the head. The server must close the connection (bounded
    // wait: 60 s is far beyond the 200 ms timeout on any machine).
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buffer)).await;
    assert!(
        read.is_ok(),
        "connection still open long after the header read timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_when_absent_and_hop_by_hop_headers_stay_home() {
    let cluster = Cluster::start(1, json!({})).await;
    cluster.replicas[0].put("k", "v").await;
    let (status, headers, _) = call(
        Method::GET,
        &cluster.levee.url("/kv/kv/k"),
        &[("connection", "x-hop"), ("x-hop", "secret")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let generated = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!generated.is_empty());
    let log = cluster.replicas[0].request_log().await;
    let entry = log.last().unwrap();
    assert_eq!(
        entry["request_id"],
        generated.as_str(),
        "the replica saw the same id"
    );
    let names: Vec<&str> = entry["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"x-hop"),
        "a header named in Connection was forwarded: {names:?}"
    );
    assert!(
        !names.contains(&"connection"),
        "hop-by-hop Connection was forwarded: {names:?}"
    );
    assert!(names.contains(&"x-request-id"));
}

/// Sends raw bytes and reads the whole response (connection: close).
async fn raw_exchange(address: std::net::SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buffer)).await;
    String::from_utf8_lossy(&buffer).into_owned()
}
