//! End-to-end tests of hinted handoff: a replica dies, misses writes, comes
//! back on its old port and data directory, and levee streams what it
//! missed out of the log; hints past their limits are dropped and counted.

mod support;
mod write_support;

use hyper::{Method, StatusCode};
use serde_json::json;
use write_support::{
    acks, dump_sha, put, restart_replica, sha256_hex, start, wait_converged, wait_node_hints, write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hinted_handoff_delivers_after_the_replica_returns_and_all_replicas_end_identical() {
    let mut cluster = start(3, json!({})).await;
    for i in 0..10 {
        assert_eq!(
            put(&cluster.levee, &format!("k{i}"), "before").await.0,
            StatusCode::OK
        );
    }
    wait_converged(&cluster, 10).await;

    cluster.replicas[1].proc.kill();
    // While r1 is down: new keys, overwrites, deletes, and a POST.
    for i in 0..20 {
        let (status, headers, body) =
            put(&cluster.levee, &format!("new{i}"), &format!("value {i}")).await;
        assert_eq!(
            (status, acks(&headers)),
            (StatusCode::OK, "2/3".into()),
            "{body}"
        );
    }
    for i in 0..5 {
        assert_eq!(
            put(&cluster.levee, &format!("k{i}"), "after").await.0,
            StatusCode::OK
        );
    }
    for i in 5..8 {
        assert_eq!(
            write(&cluster.levee, Method::DELETE, &format!("k{i}"), "", &[])
                .await
                .0,
            StatusCode::OK
        );
    }
    assert_eq!(
        write(&cluster.levee, Method::POST, "posted", "via post", &[])
            .await
            .0,
        StatusCode::OK
    );
    let hints = wait_node_hints(&cluster.levee, "r1", "a backlog", |n| {
        n["backlog_records"].as_u64() >= Some(29)
    })
    .await;
    assert!(hints["backlog_from"].is_u64(), "{hints}");

    restart_replica(&mut cluster.replicas[1]);
    // 10 - 3 deleted + 20 new + 1 posted.
    let dump = wait_converged(&cluster, 28).await;
    for i in 0..5 {
        assert_eq!(
            dump_sha(&dump, &format!("k{i}")),
            Some(sha256_hex(b"after"))
        );
    }
    for i in 5..8 {
        assert!(
            dump["tombstones"][format!("k{i}")].is_string(),
            "k{i} deleted everywhere: {dump}"
        );
    }
    assert_eq!(dump_sha(&dump, "new19"), Some(sha256_hex(b"value 19")));
    let hints = wait_node_hints(&cluster.levee, "r1", "an empty backlog", |n| {
        n["backlog_from"].is_null()
    })
    .await;
    assert!(hints["delivered_records"].as_u64() >= Some(29), "{hints}");
    assert_eq!(hints["dropped_records"], 0, "{hints}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_past_its_age_limit_is_dropped_counted_and_never_delivered() {
    // Every hint is older than 1 ms by the time the handoff looks at it.
    // No ejection: the write after r2 returns must be sent to it directly.
    let service = json!({"hints": {"age_ms_max": 1}, "outlier": {"consecutive_failures": 1000}});
    let mut cluster = start(3, service).await;
    cluster.replicas[2].proc.kill();
    for i in 0..4 {
        assert_eq!(
            put(&cluster.levee, &format!("old{i}"), "x").await.0,
            StatusCode::OK
        );
    }
    // Dropping needs no live replica: the handoff walks a dead node's backlog too.
    let hints = wait_node_hints(&cluster.levee, "r2", "4 dropped hints", |n| {
        n["dropped_age_records"] == 4
    })
    .await;
    assert_eq!(hints["dropped_records"], 4, "{hints}");
    assert_eq!(hints["delivered_records"], 0, "{hints}");
    wait_node_hints(&cluster.levee, "r2", "an empty backlog", |n| {
        n["backlog_from"].is_null()
    })
    .await;

    restart_replica(&mut cluster.replicas[2]);
    // A later write reaches r2 directly; the dropped ones never come by
    // handoff, but the repair pass (which recorded their keys) copies them
    // from the other replicas.
    assert_eq!(put(&cluster.levee, "fresh", "y").await.0, StatusCode::OK);
    wait_converged(&cluster, 5).await;
    let hints = write_support::node_hints(&cluster.levee, "r2").await;
    assert_eq!(hints["delivered_records"], 0, "{hints}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_over_the_byte_budget_are_dropped_oldest_first_and_the_rest_delivered() {
    let mut cluster = start(3, json!({"hints": {"bytes_max": 100}})).await;
    cluster.replicas[0].proc.kill();
    // Five 60-byte hints for r0: 300 bytes against a 100-byte budget. The
    // handoff drops the oldest while the backlog is over budget, so exactly
    // the newest one is left, whenever its walks happen to run.
    let value = "v".repeat(60);
    for i in 0..5 {
        assert_eq!(
            put(&cluster.levee, &format!("b{i}"), &value).await.0,
            StatusCode::OK
        );
    }
    let hints = wait_node_hints(&cluster.levee, "r0", "4 dropped hints", |n| {
        n["dropped_budget_records"] == 4
    })
    .await;
    assert_eq!(hints["dropped_bytes"], 240, "{hints}");

    restart_replica(&mut cluster.replicas[0]);
    wait_node_hints(&cluster.levee, "r0", "an empty backlog", |n| {
        n["backlog_from"].is_null()
    })
    .await;
    let hints = write_support::node_hints(&cluster.levee, "r0").await;
    assert_eq!(
        hints["delivered_records"], 1,
        "only the newest hint fit the budget: {hints}"
    );
    // The dropped ones reach r0 through the repair pass.
    wait_converged(&cluster, 5).await;
}
