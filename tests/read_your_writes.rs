//! End-to-end tests of read-your-writes routing and read quorum (issue 10):
//! real `levee serve` and `levee kv-replica` processes on loopback ports.
//!
//! The replica first in a key's preference list stays up and answers
//! reads, but every write to it fails (an injected 503 on PUT and DELETE),
//! so it holds the old value while levee holds its hints. Reads must return
//! the newest value from the first request, without asking it; after a
//! levee restart too; and once it has caught up, reads go to it again.
//! With `read_quorum: 2`, a replica whose hints were dropped (so levee no
//! longer knows it lags) is outvoted by the newest version and repaired.

mod support;
mod write_support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Cluster, Replica, attempts, call};
use write_support::{
    CONVERGE_POLL_PAUSE, CONVERGE_POLLS, acks, dump_sha, node_hints, put, restart_levee,
    sha256_hex, start, wait_converged, wait_node_hints, write,
};

/// Keys per test.
const KEYS: usize = 6;

/// `count` keys whose preference list (N = 3) starts with replica `node`.
fn keys_first_on(cluster: &Cluster, node: usize, count: usize) -> Vec<String> {
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("ryw{i}"))
        .filter(|key| cluster.preference(key, 3)[0] == node)
        .take(count)
        .collect();
    assert_eq!(keys.len(), count, "the ring gives every node keys");
    keys
}

/// GETs of `/kv/...` a replica has served.
async fn gets_served(replica: &Replica) -> u64 {
    let (status, _, body) = call(Method::GET, &format!("{}/_stats", replica.url()), &[], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("stats JSON");
    stats["by_method"]["GET"].as_u64().unwrap_or(0)
}

/// Every write to the replica fails with 503; its reads are served.
async fn fail_writes(replica: &Replica) {
    replica
        .fault(json!({"fail_status": 503, "methods": ["PUT", "DELETE"]}))
        .await;
}

/// Reads every key through levee: `v2`, except the deleted first key (404).
async fn assert_newest(cluster: &Cluster, keys: &[String], what: &str) -> Vec<u32> {
    let mut tries = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let (status, headers, body) = cluster.get(key).await;
        if index == 0 {
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{what}: {key} was deleted: {body}"
            );
        } else {
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "v2"),
                "{what}: {key}"
            );
        }
        tries.push(attempts(&headers));
    }
    tries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_skip_a_replica_still_owed_the_key_from_the_first_request() {
    // Outlier ejection off: the failing replica must stay in the read plan,
    // so that only the lag index keeps reads away from it.
    let service = json!({"write_quorum": 2, "outlier": {"consecutive_failures": 1000}});
    let mut cluster = start(3, service).await;
    let keys = keys_first_on(&cluster, 0, KEYS);
    for key in &keys {
        assert_eq!(put(&cluster.levee, key, "v1").await.0, StatusCode::OK);
    }
    wait_converged(&cluster, KEYS).await;

    fail_writes(&cluster.replicas[0]).await;
    let r0_gets = gets_served(&cluster.replicas[0]).await;
    for (index, key) in keys.iter().enumerate() {
        let (status, headers, body) = if index == 0 {
            write(&cluster.levee, Method::DELETE, key, "", &[]).await
        } else {
            put(&cluster.levee, key, "v2").await
        };
        assert_eq!(
            (status, acks(&headers)),
            (StatusCode::OK, "2/3".into()),
            "{body}"
        );
        // At once and every time: the newest value, on the first attempt,
        // though r0 (first in the key's preference list) still holds v1.
        for _ in 0..3 {
            let tries = assert_newest(&cluster, &keys[..=index], "while r0 lags").await;
            assert!(tries.iter().all(|&t| t == 1), "attempts {tries:?}");
        }
    }
    assert_eq!(
        gets_served(&cluster.replicas[0]).await,
        r0_gets,
        "r0 was never read while it lacked the writes"
    );
    let hints = node_hints(&cluster.levee, "r0").await;
    assert!(hints["lag_writes"].as_u64() >= Some(KEYS as u64), "{hints}");

    // levee is killed and restarts while r0 still lacks the writes: the lag
    // index and the recent versions are rebuilt from the log.
    restart_levee(&mut cluster.levee).await;
    assert_newest(&cluster, &keys, "after a levee restart").await;

    // r0 takes writes again: the handoff delivers, and reads go to it again.
    cluster.replicas[0].clear_fault().await;
    wait_node_hints(&cluster.levee, "r0", "no backlog and nothing owed", |n| {
        n["backlog_from"].is_null() && n["lag_writes"] == 0 && n["lag_overflowed"] == false
    })
    .await;
    wait_converged(&cluster, KEYS - 1).await;
    let r0_gets = gets_served(&cluster.replicas[0]).await;
    let tries = assert_newest(&cluster, &keys, "after r0 caught up").await;
    assert!(tries.iter().all(|&t| t == 1), "attempts {tries:?}");
    assert_eq!(
        gets_served(&cluster.replicas[0]).await,
        r0_gets + KEYS as u64,
        "r0, first in every key's preference list, is read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_quorum_answers_the_newest_version_and_the_older_replica_is_repaired() {
    // Hints expire at once: r0's are dropped, so levee stops counting r0 as
    // lagging while it still holds v1.
    let service = json!({
        "write_quorum": 2,
        "read_quorum": 2,
        "hints": {"age_ms_max": 1},
        "outlier": {"consecutive_failures": 1000},
    });
    let cluster = start(3, service).await;
    let keys = keys_first_on(&cluster, 0, KEYS);
    for key in &keys {
        assert_eq!(put(&cluster.levee, key, "v1").await.0, StatusCode::OK);
    }
    wait_converged(&cluster, KEYS).await;

    fail_writes(&cluster.replicas[0]).await;
    for key in &keys {
        let (status, headers, body) = put(&cluster.levee, key, "v2").await;
        assert_eq!(
            (status, acks(&headers)),
            (StatusCode::OK, "2/3".into()),
            "{body}"
        );
    }
    wait_node_hints(&cluster.levee, "r0", "its hints dropped", |n| {
        n["dropped_age_records"].as_u64() >= Some(KEYS as u64) && n["lag_writes"] == 0
    })
    .await;
    let dump = cluster.replicas[0].dump().await;
    for key in &keys {
        assert_eq!(
            dump_sha(&dump, key),
            Some(sha256_hex(b"v1")),
            "r0 still holds v1"
        );
    }

    for key in &keys {
        let (status, headers, body) = cluster.get(key).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v2"), "{key}");
        assert_eq!(headers["x-levee-read-quorum"], "2/2");
    }

    // The repair brings r0 to the newest version once it takes writes.
    cluster.replicas[0].clear_fault().await;
    let expected = Some(sha256_hex(b"v2"));
    for _ in 0..CONVERGE_POLLS {
        let dump = cluster.replicas[0].dump().await;
        if keys.iter().all(|key| dump_sha(&dump, key) == expected) {
            return;
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    panic!(
        "r0 was never repaired: {}\nlevee stderr:\n{}",
        cluster.replicas[0].dump().await,
        cluster.levee.proc.stderr()
    );
}
