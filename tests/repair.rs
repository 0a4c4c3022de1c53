//! End-to-end test of repair (real processes): hints a replica never got
//! (dropped by age while the replica failed every write) leave their keys
//! in the durable repair set, the set survives a levee restart, and once
//! the replica is healthy the repair pass brings it the newest version of
//! each key (values and a tombstone), after which the figure is back to 0.

mod support;
mod write_support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use write_support::{
    CONVERGE_POLL_PAUSE, CONVERGE_POLLS, acks, admin_get, put, restart_levee, try_dump,
    wait_converged, write,
};

use crate::support::{Cluster, Levee};

/// The repair figures of `GET /admin/state`: (`log.keys_awaiting_repair`,
/// `repair`).
async fn repair_figures(levee: &Levee) -> (u64, Value) {
    let state = admin_get(levee, "/admin/state").await;
    let pending = state["log"]["keys_awaiting_repair"]
        .as_u64()
        .unwrap_or_else(|| panic!("no log.keys_awaiting_repair in {state}"));
    (pending, state["repair"].clone())
}

/// Polls until the keys awaiting repair are `expected`.
async fn wait_awaiting_repair(levee: &Levee, expected: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..CONVERGE_POLLS {
        let (pending, repair) = repair_figures(levee).await;
        if pending == expected {
            assert_eq!(repair["keys_pending"], expected, "{repair}");
            return repair;
        }
        last = repair;
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    panic!(
        "keys awaiting repair never reached {expected}: {last}\nlevee stderr:\n{}",
        levee.proc.stderr()
    )
}

/// The `levee_repair_keys_pending` sample of `/metrics`.
async fn pending_gauge(levee: &Levee) -> Option<f64> {
    let (_, _, body) = support::call(Method::GET, &levee.admin_url("/metrics"), &[], "").await;
    body.lines()
        .find_map(|line| line.strip_prefix("levee_repair_keys_pending "))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_hints_are_repaired_after_the_replica_heals_even_across_a_restart() {
    // Every hint is older than 1 ms when the handoff looks at it: dropped
    // at once. No ejection, so r2 keeps being sent (and failing) writes.
    let service = json!({"hints": {"age_ms_max": 1}, "outlier": {"consecutive_failures": 1000}});
    let mut cluster: Cluster = write_support::start(3, service).await;
    // On every replica first: a key to delete, one to overwrite.
    for key in ["doomed", "k0"] {
        assert_eq!(put(&cluster.levee, key, "first").await.0, StatusCode::OK);
    }
    wait_converged(&cluster, 2).await;

    // r2 fails every /kv request (writes and the repair's reads alike).
    cluster.replicas[2].fault(json!({"fail_status": 503})).await;
    for (key, value) in [("k0", "second"), ("k1", "one"), ("k2", "two")] {
        let (status, headers, body) = put(&cluster.levee, key, value).await;
        assert_eq!(
            (status, acks(&headers)),
            (StatusCode::OK, "2/3".into()),
            "{body}"
        );
    }
    let (status, _, body) = write(&cluster.levee, Method::DELETE, "doomed", "", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Four keys r2 lacks: their hints are dropped and recorded for repair,
    // which cannot finish while r2 fails.
    let repair = wait_awaiting_repair(&cluster.levee, 4).await;
    assert_eq!(repair["durable_keys"], 4, "{repair}");
    assert_eq!(pending_gauge(&cluster.levee).await, Some(4.0));

    // The set is durable: a killed and restarted levee still has it.
    restart_levee(&mut cluster.levee).await;
    let (pending, repair) = repair_figures(&cluster.levee).await;
    assert_eq!(pending, 4, "after the restart: {repair}");

    // r2 heals: the pass copies the newest version of each key to it.
    cluster.replicas[2].clear_fault().await;
    let dump = wait_converged(&cluster, 3).await;
    assert_eq!(
        write_support::dump_sha(&dump, "k0"),
        Some(write_support::sha256_hex(b"second"))
    );
    assert!(dump["tombstones"]["doomed"].is_string(), "{dump}");
    for replica in &cluster.replicas {
        let own = try_dump(replica).await.expect("replica answers");
        assert_eq!(own, dump, "{} has the same versions", replica.id);
    }
    // It was the repair pass (hints dropped at 1 ms are never delivered).
    let repaired: Vec<String> = cluster.replicas[2]
        .request_log()
        .await
        .iter()
        .filter(|entry| entry["request_id"] == "levee-repair" && entry["status"] == 200)
        .map(|entry| format!("{} {}", entry["method"], entry["path"]))
        .collect();
    for expected in ["PUT", "DELETE"] {
        assert!(
            repaired.iter().any(|entry| entry.contains(expected)),
            "no repair {expected} in r2's log: {repaired:?}"
        );
    }
    let repair = wait_awaiting_repair(&cluster.levee, 0).await;
    assert!(repair["repaired_total"].as_u64() >= Some(4), "{repair}");
    assert_eq!(repair["overflow_total"], 0, "{repair}");
}
