//! Shadow evaluation, trials and promotion end to end: a real `levee
//! serve` in front of two real `levee kv-replica` processes, whose retry
//! policy is plugin `retry` (the `retry-backoff` example). Every read is
//! failed by the replicas (injected 503s), so every request asks the retry
//! policy. The shadow version is `zoo/retry-fixed`, which always retries:
//! it agrees with the live version whenever the live version retries, and
//! disagrees whenever it gives up. No assertion depends on timing: the
//! test waits (bounded) for the shadow to catch up, then checks counts.

mod control;
mod support;

use control::{admin, admin_json, plugin_bytes, plugin_dir_with_retry, version_of};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Levee, Replica, attempts, call};

const REQUESTS: usize = 12;

async fn shadow_of(levee: &Levee) -> Value {
    admin_json(levee, "/admin/plugins/retry/shadow").await
}

/// The shadow's report for the `kv` binding once it has compared every
/// call offered to it (bounded wait: it paces itself at 1 ms a call).
async fn caught_up(levee: &Levee) -> Value {
    for _ in 0..400 {
        let view = shadow_of(levee).await;
        let report = view["bindings"][0]["shadow"].clone();
        let seen = report["compared"].as_u64().unwrap_or(0)
            + report["dropped"].as_u64().unwrap_or(0)
            + report["skipped_quarantined"].as_u64().unwrap_or(0);
        if report["offered"]
            .as_u64()
            .is_some_and(|offered| offered > 0 && seen == offered)
        {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the shadow never caught up: {}", shadow_of(levee).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_counted_on_live_traffic_tried_and_promoted() {
    let replicas: Vec<Replica> = (0..2).map(|i| Replica::spawn(&format!("r{i}"))).collect();
    let live_bytes = plugin_bytes("retry-backoff.wasm");
    let shadow_bytes = plugin_bytes("zoo/retry-fixed.wasm");
    let plugin_dir = plugin_dir_with_retry(&live_bytes);
    let mut config = control::retrying_config(&replicas, plugin_dir.path());
    // The host allows 3 attempts, the live version's own config 2: after
    // the second failed attempt the live version gives up (the shadow
    // would retry), so each request asks the policy twice.
    config["services"][0]["max_attempts"] = json!(3);
    config["services"][0]["policies"]["retry"]["config"] = json!({"max_attempts": 2});
    let levee = Levee::start(config).await;
    for replica in &replicas {
        replica
            .fault(json!({"fail_status": 503, "methods": ["GET"]}))
            .await;
    }

    // No shadow yet; refusals say why.
    let view = shadow_of(&levee).await;
    assert_eq!(view["version"], Value::Null, "{view}");
    assert_eq!(view["bindings"][0]["target"], "service \"kv\"", "{view}");
    let (status, _, body) = admin(&levee, Method::POST, "/admin/plugins/retry/promote", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("has no shadow version"), "{body}");
    let (status, _, body) = admin(&levee, Method::PUT, "/admin/plugins/retry/shadow", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let wrong_world = plugin_bytes("route-affinity.wasm");
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/plugins/retry/shadow",
        wrong_world.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("service \\\"kv\\\""),
        "the refusal names the binding: {body}"
    );
    let (status, _, body) = admin(
        &levee,
        Method::POST,
        "/admin/plugins/unbound/trial",
        shadow_bytes.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Set the shadow.
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/plugins/retry/shadow",
        shadow_bytes.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let set: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(set["version"], version_of(&shadow_bytes));
    assert_eq!(set["bindings"], json!(["service \"kv\""]));

    // Live traffic: the live version decides every answer.
    let auth = ("authorization", "Bearer client-secret");
    for i in 0..REQUESTS {
        let key = format!("idem-{i}");
        let headers = [auth, ("idempotency-key", key.as_str())];
        let (status, headers, body) = call(
            Method::GET,
            &levee.url(&format!("/kv/kv/k{i}")),
            &headers,
            "",
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(attempts(&headers), 2, "{headers:?}");
        assert_eq!(decided_by(&headers), version_of(&live_bytes));
    }

    // The shadow compared every call: it agrees on every retry and
    // disagrees on every give-up.
    let report = caught_up(&levee).await;
    assert_eq!(report["version"], version_of(&shadow_bytes), "{report}");
    assert_eq!(report["dropped"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let retry = &report["by_decision"]["retry"];
    assert_eq!(retry["compared"], REQUESTS, "{report}");
    assert_eq!(retry["agreed"], REQUESTS, "{report}");
    let give_up = &report["by_decision"]["give-up"];
    assert_eq!(give_up["compared"], REQUESTS, "{report}");
    assert_eq!(give_up["agreed"], 0, "{report}");
    assert_eq!(report["compared"], 2 * REQUESTS, "{report}");
    assert_eq!(report["disagreed"], REQUESTS, "{report}");
    let kept = report["disagreements"].as_array().unwrap();
    assert_eq!(kept.len(), REQUESTS, "{report}");
    let last = &kept[REQUESTS - 1];
    assert!(last["live"]["give_up"].is_string(), "{last}");
    assert_eq!(last["other"]["retry"]["target"], "next", "{last}");
    assert_eq!(last["input"]["outcome"]["attempt"], 2, "{last}");
    assert_eq!(last["input"]["outcome"]["result"]["status"], 503, "{last}");
    let request = &last["input"]["request"];
    assert_eq!(request["service"], "kv", "{last}");
    assert_eq!(request["path"], format!("/kv/k{}", REQUESTS - 1), "{last}");
    assert_eq!(
        request["headers"]["idempotency-key"],
        format!("idem-{}", REQUESTS - 1)
    );
    assert!(request["headers"].get("authorization").is_none(), "{last}");
    assert!(!report.to_string().contains("client-secret"), "{report}");
    let status_view = control::plugin_view(&levee, "retry").await;
    assert_eq!(
        status_view["shadow"]["compared"], report["compared"],
        "{status_view}"
    );

    // A trial of the same version on the recorded calls finds the same.
    let (status, _, body) = admin(
        &levee,
        Method::POST,
        "/admin/plugins/retry/trial",
        shadow_bytes.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trial: Value = serde_json::from_str(&body).unwrap();
    let binding = &trial["bindings"][0];
    assert_eq!(trial["candidate_version"], version_of(&shadow_bytes));
    assert_eq!(binding["compared"], report["compared"], "{trial}");
    assert_eq!(binding["agreed"], report["agreed"], "{trial}");
    assert_eq!(binding["by_decision"], report["by_decision"], "{trial}");
    // ... and the live version agrees with itself everywhere.
    let (status, _, body) = admin(
        &levee,
        Method::POST,
        "/admin/plugins/retry/trial",
        live_bytes.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trial: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trial["bindings"][0]["disagreed"], 0, "{trial}");
    let (status, _, body) = admin(
        &levee,
        Method::POST,
        "/admin/plugins/retry/trial",
        wrong_world,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A trial changed nothing.
    assert_eq!(
        control::plugin_view(&levee, "retry").await["version"],
        version_of(&live_bytes)
    );

    // Promote: the shadow decides live, and the shadow ends.
    let (status, _, body) = admin(&levee, Method::POST, "/admin/plugins/retry/promote", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    control::wait_for_version(&levee, "retry", &version_of(&shadow_bytes)).await;
    assert_eq!(shadow_of(&levee).await["version"], Value::Null);
    let (status, headers, body) = call(Method::GET, &levee.url("/kv/kv/after"), &[], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(decided_by(&headers), version_of(&shadow_bytes));
}

fn decided_by(headers: &hyper::HeaderMap) -> &str {
    headers
        .get("x-levee-policy-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
