//! Placement end to end: a real `levee serve` in front of real
//! `levee kv-replica` processes on loopback.
//!
//! - `placement: "rendezvous"` puts every written key on exactly the
//!   replicas the documented rule names (computed here by
//!   `Cluster::preference`, from the config file levee was started with).
//! - Bounded loads for reads (`read_balance_factor_percent`): a replica
//!   holding a slow read is skipped for the next reads of the same key,
//!   and still gets the key's writes.

mod support;

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use support::{Cluster, attempts, call};

/// The methods a replica's log shows for `path`, oldest first.
async fn methods_for(replica: &support::Replica, path: &str) -> Vec<String> {
    replica
        .request_log()
        .await
        .into_iter()
        .filter(|entry| entry["path"] == path)
        .map(|entry| entry["method"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_puts_each_key_on_the_replicas_the_rule_names() {
    let cluster = Cluster::start(
        5,
        json!({"placement": "rendezvous", "replicas": 3, "write_quorum": 3}),
    )
    .await;
    let keys: Vec<String> = (0..24).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        let (status, headers, body) = call(
            Method::PUT,
            &cluster.levee.url(&format!("/kv/kv/{key}")),
            &[],
            format!("value of {key}"),
        )
        .await;
        assert!(status.is_success(), "{key}: {status} {body}");
        assert_eq!(headers["x-levee-acks"], "3/3");
    }
    let mut led = [0usize; 5];
    for (index, replica) in cluster.replicas.iter().enumerate() {
        let dump = replica.dump().await;
        for key in &keys {
            let owners = cluster.preference(key, 3);
            let holds = dump["keys"].get(key.as_str()).is_some();
            assert_eq!(
                holds,
                owners.contains(&index),
                "{key} on {} (owners {owners:?}); dump {dump}",
                replica.id
            );
        }
    }
    for key in &keys {
        led[cluster.preference(key, 3)[0]] += 1;
        let (status, headers, body) = cluster.get(key).await;
        assert_eq!((status, body), (StatusCode::OK, format!("value of {key}")));
        assert_eq!(attempts(&headers), 1);
    }
    // Every node leads some of the 24 keys (a broken rule tends to pile
    // them on one).
    assert!(led.iter().all(|&n| n > 0), "primaries per node: {led:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holding_slow_reads_is_skipped_for_reads_but_still_written() {
    let cluster = Cluster::start(
        3,
        json!({
            "replicas": 3,
            "write_quorum": 2,
            "read_balance_factor_percent": 125,
            "timeouts": {"per_try_ms": 20000, "total_ms": 30000},
        }),
    )
    .await;
    let key = "hot";
    let (status, _, body) = call(
        Method::PUT,
        &cluster.levee.url("/kv/kv/hot"),
        &[],
        "v1".to_owned(),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let order = cluster.preference(key, 3);
    let slow = &cluster.replicas[order[0]];
    // Every replica has the write before the reads start (the third ack
    // may land after the answer), so none is skipped as lagging.
    for replica in &cluster.replicas {
        for _ in 0..100 {
            if methods_for(replica, "/kv/hot")
                .await
                .contains(&"PUT".to_owned())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The key's primary answers reads slowly from now on; writes are not
    // delayed.
    slow.fault(json!({"delay_ms": 4000, "methods": ["GET"]}))
        .await;

    // The first read goes to the primary, as always, and sits there.
    let levee_url = cluster.levee.url("/kv/kv/hot");
    let first = tokio::spawn({
        let url = levee_url.clone();
        async move { call(Method::GET, &url, &[], "").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // While it is in flight, the primary is over its bound (1 of the
    // service's 1 attempt in flight against a third of 2 × 1.25): the next
    // reads of the same key go to the next replica, first try.
    for _ in 0..5 {
        let (status, headers, body) = cluster.get(key).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
        assert_eq!(attempts(&headers), 1, "planned elsewhere, not retried");
    }
    // A write meanwhile still goes to the loaded primary: where data lives
    // and where writes go never depend on load.
    let (status, _, body) = call(
        Method::PUT,
        &cluster.levee.url("/kv/kv/hot"),
        &[],
        "v2".to_owned(),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, _, body) = first.await.expect("first read");
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut slow_log = Vec::new();
    for _ in 0..100 {
        slow_log = methods_for(slow, "/kv/hot").await;
        if slow_log.iter().filter(|m| *m == "PUT").count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        slow_log.iter().filter(|m| *m == "GET").count(),
        1,
        "only the first read reached the loaded replica: {slow_log:?}"
    );
    assert_eq!(
        slow_log.iter().filter(|m| *m == "PUT").count(),
        2,
        "both writes reached it: {slow_log:?}"
    );
    let others: usize = {
        let mut gets = 0;
        for &index in &order[1..] {
            gets += methods_for(&cluster.replicas[index], "/kv/hot")
                .await
                .iter()
                .filter(|m| *m == "GET")
                .count();
        }
        gets
    };
    assert!(
        others >= 5,
        "the five later reads went to the other replicas"
    );
}
