//! The `write-policy` world end to end: a real `levee serve` in front of
//! three real `levee kv-replica` processes in two zones (r0, r1 in zone
//! `a`; r2 in zone `b`), N=3, W=2, with the example `zone-quorum` plugin
//! bound as the service's write policy. W-of-N alone would acknowledge a
//! write stored only in zone `a`; the policy waits for zone `b` and, with
//! zone `b` down, fails the write, saying why. No assertion depends on
//! timing.

mod control;
mod support;

use control::{TOKEN, plugin_bytes};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use support::{Levee, Replica, call};

/// Three replicas in two zones and levee with `zone-quorum` bound.
async fn start() -> (Vec<Replica>, Levee, tempfile::TempDir) {
    let replicas: Vec<Replica> = (0..3).map(|i| Replica::spawn(&format!("r{i}"))).collect();
    let plugin_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        plugin_dir.path().join("zone-quorum.wasm"),
        plugin_bytes("zone-quorum.wasm"),
    )
    .unwrap();
    let zones = ["a", "a", "b"];
    let config = json!({
        "admin_token": TOKEN,
        "plugin_dir": plugin_dir.path(),
        "services": [{
            "name": "kv",
            "nodes": replicas.iter().zip(zones).map(|(r, zone)| json!({"id": r.id, "url": r.url(), "zone": zone})).collect::<Vec<_>>(),
            "replicas": 3,
            "write_quorum": 2,
            "key": {"path_segment": 1},
            "timeouts": {"per_try_ms": 2000, "total_ms": 10000},
            "outlier": {"consecutive_failures": 1000, "base_ejection_ms": 1, "max_ejection_ms": 1},
            "policies": {"write": {"plugin": "zone-quorum", "config": {"zones_min": 2}, "limits": {
                "call_timeout_ms": 1000,
                "configure_timeout_ms": 10000,
            }}},
        }],
    });
    let levee = Levee::start(config).await;
    (replicas, levee, plugin_dir)
}

async fn put(levee: &Levee, key: &str, value: &str) -> (StatusCode, HeaderMap, String) {
    call(
        Method::PUT,
        &levee.url(&format!("/kv/kv/{key}")),
        &[],
        value.to_owned(),
    )
    .await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_quorum_acknowledges_with_both_zones_and_fails_with_one_zone_down() {
    let (mut replicas, levee, _plugins) = start().await;

    // Both zones up: acknowledged once zone b (r2) has it, by the plugin.
    for i in 0..3 {
        let (status, headers, body) = put(&levee, &format!("up-{i}"), "v").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "x-levee-write-policy"), "zone-quorum");
        let acks = header(&headers, "x-levee-acks");
        assert!(acks == "2/3" || acks == "3/3", "{acks}");
        let dump = replicas[2].dump().await;
        assert!(
            dump["keys"][format!("up-{i}")].is_object(),
            "acknowledged before zone b stored it: {dump}"
        );
    }

    // Zone b down: W=2 is reached in zone a, but the policy fails the write.
    replicas[2].proc.kill();
    let (status, headers, body) = put(&levee, "down", "v").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(header(&headers, "x-levee-write-policy"), "zone-quorum");
    assert_eq!(header(&headers, "x-levee-acks"), "2/3", "{body}");
    assert_eq!(header(&headers, "x-levee-outcome"), "unknown");
    let error: Value = serde_json::from_str(&body).unwrap();
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.starts_with("write policy zone-quorum: "), "{reason}");
    assert!(reason.contains("1 zone(s) [a]"), "{reason}");

    // The plugin answered every write itself (no fallback).
    let (status, _, body) = control::admin(&levee, Method::GET, "/admin/plugins", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("zone-quorum"), "{body}");
    assert!(body.contains("write-policy"), "{body}");
}
