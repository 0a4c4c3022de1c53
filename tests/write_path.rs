//! End-to-end tests of the write path: a real `levee serve` in front of
//! real `levee kv-replica` processes; replicas fail by being killed
//! (SIGKILL) or through their fault knobs. No assertion depends on timing.

mod support;
mod write_support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use write_support::{CONVERGE_POLL_PAUSE, CONVERGE_POLLS, acks, put, start, wait_converged, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_acknowledged_by_all_three_replicas_and_stored_on_each() {
    let cluster = start(3, json!({})).await;
    let (status, headers, body) = put(&cluster.levee, "alice", "wonderland").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // W=2: the answer may come before the third ack; all three get it anyway.
    let acks = acks(&headers);
    assert!(acks == "2/3" || acks == "3/3", "{acks}");
    assert!(headers.contains_key("x-levee-lsn"));
    let dump = wait_converged(&cluster, 1).await;
    assert_eq!(dump["keys"]["alice"]["bytes"], 10);
    let (status, _, body) = cluster.get("alice").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "wonderland"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_one_replica_down_is_acknowledged_by_two_of_three() {
    let mut cluster = start(3, json!({})).await;
    cluster.replicas[1].proc.kill();
    for i in 0..5 {
        let (status, headers, body) =
            put(&cluster.levee, &format!("key-{i}"), &format!("value-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(acks(&headers), "2/3");
    }
    for i in 0..5 {
        let (status, _, body) = cluster.get(&format!("key-{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("value-{i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_two_replicas_down_fails_with_503_naming_them() {
    let mut cluster = start(3, json!({})).await;
    cluster.replicas[0].proc.kill();
    cluster.replicas[2].proc.kill();
    let (status, headers, body) = put(&cluster.levee, "bob", "builder").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["error"], "write_quorum_failed");
    assert_eq!(error["required"].as_u64(), Some(2));
    // levee answers as soon as W=2 is out of reach: r1's ack may or may not
    // have arrived by then (`1/3` or `0/3`), but r0 and r2 are named.
    let acks_seen = error["acks"].as_u64().unwrap();
    assert!(acks_seen <= 1, "{error}");
    assert_eq!(acks(&headers), format!("{acks_seen}/3"));
    let reason = error["reason"].as_str().unwrap();
    assert!(
        reason.contains("r0: ") && reason.contains("r2: "),
        "{reason}"
    );
    assert!(
        !reason.contains("r1: "),
        "the live replica is not a failure: {reason}"
    );
    let outcomes = error["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 3);
    for outcome in outcomes {
        let text = outcome["outcome"].as_str().unwrap();
        if outcome["node"] == "r1" {
            assert!(
                text.starts_with("acknowledged") || text == "pending",
                "{outcome}"
            );
        } else {
            assert!(
                !text.starts_with("acknowledged") && text != "pending",
                "{outcome}"
            );
        }
    }
    // The live replica has the write all the same (not confirmed, not lost).
    for _ in 0..write_support::CONVERGE_POLLS {
        if let Some(dump) = write_support::try_dump(&cluster.replicas[1]).await
            && dump["keys"]["bob"].is_object()
        {
            return;
        }
        tokio::time::sleep(write_support::CONVERGE_POLL_PAUSE).await;
    }
    panic!("r1 never stored the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_answered_at_w_acks_and_the_slow_replica_still_gets_the_write() {
    let cluster = start(3, json!({})).await;
    // r2 answers every write after 1.5 s: the client gets its answer from
    // r0 and r1, and r2's copy lands in the background.
    cluster.replicas[2]
        .fault(json!({"delay_ms": 1500, "methods": ["PUT"]}))
        .await;
    let (status, headers, body) = put(&cluster.levee, "carol", "slow but sure").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        acks(&headers),
        "2/3",
        "answered before the slow replica acknowledged"
    );
    let dump = wait_converged(&cluster, 1).await;
    assert!(dump["keys"]["carol"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_writes_are_retried_on_the_same_replica_and_a_plain_post_is_not() {
    let cluster = start(3, json!({"max_attempts": 3})).await;
    let fail_once = json!({"fail_status": 503, "fail_count": 1});

    // PUT is idempotent: r0's one failure is retried on r0 within the request.
    cluster.replicas[0].fault(fail_once.clone()).await;
    let (status, headers, _) = put(&cluster.levee, "put-key", "v").await;
    assert_eq!(status, StatusCode::OK);
    wait_for_acks(&cluster, "put-key", &headers).await;
    assert_eq!(
        put_attempts_on(&cluster.replicas[0], "/kv/put-key").await,
        2,
        "failed once, retried once"
    );

    // POST without an Idempotency-Key: r0 fails once and is NOT retried by
    // the request (only hinted handoff will bring the write to it later,
    // under a derived Idempotency-Key).
    cluster.replicas[0].fault(fail_once.clone()).await;
    let (status, headers, body) = write(&cluster.levee, Method::POST, "post-key", "v", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        acks(&headers),
        "2/3",
        "r0 failed and was not retried within the request"
    );
    // The handoff brings post-key to r0 in the background: let it land
    // first, or it could take the next fault meant for keyed-post.
    wait_for_acks(&cluster, "post-key", &headers).await;

    // POST with an Idempotency-Key may be retried on the same replica.
    cluster.replicas[0].fault(fail_once).await;
    let (status, headers, _) = write(
        &cluster.levee,
        Method::POST,
        "keyed-post",
        "v",
        &[("idempotency-key", "op-42")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_acks(&cluster, "keyed-post", &headers).await;
    assert_eq!(
        put_attempts_on(&cluster.replicas[0], "/kv/keyed-post").await,
        2
    );
}

/// With W=2 the answer may precede r0's retry; wait until r0 holds the key.
async fn wait_for_acks(cluster: &support::Cluster, key: &str, headers: &hyper::HeaderMap) {
    let acks = acks(headers);
    assert!(acks == "2/3" || acks == "3/3", "{acks}");
    for _ in 0..write_support::CONVERGE_POLLS {
        if let Some(dump) = write_support::try_dump(&cluster.replicas[0]).await
            && dump["keys"][key].is_object()
        {
            return;
        }
        tokio::time::sleep(write_support::CONVERGE_POLL_PAUSE).await;
    }
    panic!("r0 never got {key}");
}

/// How many requests for `path` the replica has seen (its request log).
async fn put_attempts_on(replica: &support::Replica, path: &str) -> usize {
    replica
        .request_log()
        .await
        .iter()
        .filter(|entry| entry["path"] == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_replicated_and_leave_tombstones_everywhere() {
    let cluster = start(3, json!({})).await;
    assert_eq!(put(&cluster.levee, "dave", "x").await.0, StatusCode::OK);
    let (status, _, body) = write(&cluster.levee, Method::DELETE, "dave", "", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dump = wait_converged(&cluster, 0).await;
    assert!(dump["tombstones"]["dave"].is_string(), "{dump}");
    assert_eq!(cluster.get("dave").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definitive_rejection_by_the_replicas_is_relayed_not_hidden_behind_503() {
    let cluster = start(3, json!({})).await;
    for replica in &cluster.replicas {
        replica
            .fault(json!({"fail_status": 422, "methods": ["PUT"]}))
            .await;
    }
    let (status, headers, _) = put(&cluster.levee, "erin", "bad").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(acks(&headers), "0/3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_ejected_by_writes_alone_is_counted_in_the_metrics() {
    // Writes only, no reads: the only requests r1 can fail are write
    // fan-out sends, so an ejection of r1 can only come from the write path.
    // One attempt per replica per write (no retries), three failures in a
    // row eject, and an ejection outlasts the test.
    const CONSECUTIVE_FAILURES: u64 = 3;
    let cluster = start(
        3,
        json!({
            "max_attempts": 1,
            "outlier": {
                "consecutive_failures": CONSECUTIVE_FAILURES,
                "base_ejection_ms": 600_000,
                "max_ejection_ms": 600_000,
            },
        }),
    )
    .await;
    cluster.replicas[1]
        .fault(json!({"fail_status": 503, "methods": ["PUT"]}))
        .await;
    let r1 = [("service", "kv"), ("node", "r1")];

    // Bounded: r1 fails every write, so it is ejected after the third; the
    // failure is recorded in the background, hence the metrics poll.
    let mut writes = 0u64;
    let mut ejections = None;
    for i in 0..CONVERGE_POLLS {
        if writes < 4 * CONSECUTIVE_FAILURES {
            let (status, headers, body) = put(&cluster.levee, &format!("w{i}"), "v").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(acks(&headers), "2/3", "r1 never acknowledges");
            writes += 1;
        }
        ejections = sample(&scrape(&cluster.levee).await, EJECTIONS, &r1);
        if ejections.is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    let text = scrape(&cluster.levee).await;
    assert!(
        ejections.is_some_and(|n| n >= 1.0),
        "{writes} writes failed on r1 but {EJECTIONS} has no count for it:\n{text}"
    );
    for healthy in ["r0", "r2"] {
        let labels = [("service", "kv"), ("node", healthy)];
        assert_eq!(sample(&text, EJECTIONS, &labels), None, "{text}");
    }
    assert!(
        !text.contains("method=\"GET\""),
        "the test sent no reads:\n{text}"
    );

    // r0 and r2 acknowledged every write (W=2 needs both, r1 never acks).
    // Each write makes one attempt per replica it is sent to, so r1's
    // attempts are at least the failures that ejected it and at most one per
    // write sent before the ejection was seen.
    let attempts = |text: &str, node: &str| {
        sample(text, ATTEMPTS, &[("service", "kv"), ("node", node)])
            .unwrap_or_else(|| panic!("no {ATTEMPTS} for {node}:\n{text}"))
    };
    for healthy in ["r0", "r2"] {
        assert_eq!(attempts(&text, healthy), writes as f64, "{text}");
    }
    let r1_attempts = attempts(&text, "r1");
    assert!(
        r1_attempts >= CONSECUTIVE_FAILURES as f64,
        "{r1_attempts} attempts on r1:\n{text}"
    );

    // Ejected (for longer than the test): later writes skip r1 and are
    // hinted for the handoff, so its attempts stay within the first writes.
    let more = 3;
    for i in 0..more {
        let (status, headers, body) = put(&cluster.levee, &format!("after{i}"), "v").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(acks(&headers), "2/3");
    }
    let text = scrape(&cluster.levee).await;
    for healthy in ["r0", "r2"] {
        assert_eq!(attempts(&text, healthy), (writes + more) as f64, "{text}");
    }
    let r1_attempts = attempts(&text, "r1");
    assert!(
        (CONSECUTIVE_FAILURES as f64..=writes as f64).contains(&r1_attempts),
        "{r1_attempts} attempts on r1 for {writes} writes before the ejection and {more} after:\n{text}"
    );
}

const EJECTIONS: &str = "levee_node_ejections_total";
const ATTEMPTS: &str = "levee_upstream_attempts_total";

/// The admin listener's `/metrics` (open on loopback).
async fn scrape(levee: &support::Levee) -> String {
    let (status, _, text) = support::call(Method::GET, &levee.admin_url("/metrics"), &[], "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// The value of the Prometheus sample `name{...}` whose labels include
/// `labels` (the sum if several do); `None` when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, series_labels) = match series.split_once('{') {
            Some((metric, rest)) => (metric, parse_labels(rest.strip_suffix('}')?)),
            None => (series, Vec::new()),
        };
        let matches = metric == name
            && labels
                .iter()
                .all(|(key, wanted)| series_labels.iter().any(|(k, v)| k == key && v == wanted));
        if matches {
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample value in {line:?}"));
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// `a="x",b="y\"z"` → `[(a, x), (b, y"z)]`.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    labels
}
