//! The admin API against a real `levee serve` and real replicas: auth,
//! plugin upload / refusal / rollback / delete, service changes with
//! field-level errors, the ring lookup, metrics, readiness, graceful
//! shutdown and what survives a restart.

mod control;
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use control::{
    TOKEN, admin, admin_json, keys_with_primary, plugin_bytes, plugin_view, retrying_config,
    version_of,
};
use support::{LEVEE, Levee, Replica, call};

async fn retrying_levee(replicas: &[Replica], plugin_dir: &tempfile::TempDir) -> Levee {
    Levee::start(retrying_config(replicas, plugin_dir.path())).await
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn admin_requests_need_the_token_and_the_data_listener_serves_no_admin_route() {
    let replicas = vec![Replica::spawn("r0")];
    let plugin_dir = control::plugin_dir_with_retry(&plugin_bytes("retry-backoff.wasm"));
    let levee = retrying_levee(&replicas, &plugin_dir).await;

    let (status, headers, body) =
        call(Method::GET, &levee.admin_url("/admin/plugins"), &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"levee-admin\"");
    assert!(
        json_of(&body)["reason"]
            .as_str()
            .unwrap()
            .contains("missing Authorization"),
        "{body}"
    );

    let wrong = [("authorization", "Bearer not-the-token-at-all")];
    let (status, _, body) = call(Method::GET, &levee.admin_url("/admin/plugins"), &wrong, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body)["reason"], "wrong admin token");
    let (status, _, _) = call(
        Method::PUT,
        &levee.admin_url("/admin/plugins/evil"),
        &wrong,
        "x",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a refused upload never reaches the handler"
    );

    let (status, headers, _) = admin(&levee, Method::GET, "/admin/plugins", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.contains_key("x-request-id"),
        "admin responses carry a request id"
    );
    let id = [
        ("authorization", &*format!("Bearer {TOKEN}")),
        ("x-request-id", "trace-me-42"),
    ];
    let (_, headers, _) = call(Method::GET, &levee.admin_url("/admin/log"), &id, "").await;
    assert_eq!(headers["x-request-id"], "trace-me-42");

    // Loopback admin listener: probes, metrics and the page shell are open.
    for path in ["/healthz", "/readyz", "/metrics", "/admin/"] {
        let (status, _, body) = call(Method::GET, &levee.admin_url(path), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, _, _) = call(Method::GET, &levee.admin_url("/admin/state"), &[], "").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the page's data needs the token"
    );

    // The data listener has no admin routes: `/admin/...` is just an unknown service.
    for (method, path) in [
        (Method::GET, "/admin/plugins"),
        (Method::PUT, "/admin/plugins/retry"),
        (Method::GET, "/admin/state"),
        (Method::POST, "/admin/checkpoint"),
        (Method::GET, "/metrics"),
        (Method::GET, "/readyz"),
    ] {
        let (status, _, body) = call(
            method.clone(),
            &levee.url(path),
            &[("authorization", &*format!("Bearer {TOKEN}"))],
            "x",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} on the data listener: {body}"
        );
    }
}

#[tokio::test]
async fn an_exposed_admin_listener_without_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("levee.json");
    let body = json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "0.0.0.0:0"},
        "data_dir": dir.path().join("data"),
    });
    std::fs::write(&config, body.to_string()).unwrap();
    let mut child = Command::new(LEVEE)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("LEVEE_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..600 {
        if let Some(exit) = child.try_wait().unwrap() {
            status = Some(exit);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = status else {
        child.kill().unwrap();
        panic!("levee kept running with an exposed admin listener and no token");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(
        stderr.contains("0.0.0.0"),
        "the message names the address: {stderr}"
    );
    assert!(
        !dir.path().join("data").join("log").exists(),
        "nothing was written"
    );
}

#[tokio::test]
async fn plugins_upload_refuse_bad_components_roll_back_and_delete() {
    let backoff = plugin_bytes("retry-backoff.wasm");
    let fixed = plugin_bytes("zoo/retry-fixed.wasm");
    let replicas = vec![Replica::spawn("r0"), Replica::spawn("r1")];
    replicas[0]
        .fault(json!({"fail_status": 503, "methods": ["GET"]}))
        .await;
    let key = &keys_with_primary(&["r0", "r1"], 0, 1)[0];
    replicas[1].put(key, "v").await;
    let plugin_dir = control::plugin_dir_with_retry(&backoff);
    let levee = retrying_levee(&replicas, &plugin_dir).await;
    let decided_by = || async {
        let (status, headers, body) =
            call(Method::GET, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        headers["x-levee-policy-version"]
            .to_str()
            .unwrap()
            .to_string()
    };

    let view = plugin_view(&levee, "retry").await;
    assert_eq!(view["world"], "retry-policy");
    assert_eq!(view["version"], version_of(&backoff));
    assert_eq!(view["status"], "active");
    assert_eq!(view["services"], json!(["kv"]));
    assert!(view["loaded_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(decided_by().await, version_of(&backoff));
    let view = plugin_view(&levee, "retry").await;
    assert!(
        view["calls"].as_u64().unwrap() >= 1,
        "calls are counted: {view}"
    );
    assert_eq!(
        (view["fallbacks"].as_u64(), view["traps"].as_u64()),
        (Some(0), Some(0))
    );

    let (status, _, body) = admin(&levee, Method::PUT, "/admin/plugins/retry", fixed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let installed = json_of(&body);
    assert_eq!(installed["version"], version_of(&fixed));
    assert_eq!(installed["services"], json!(["kv"]));
    assert_eq!(decided_by().await, version_of(&fixed));

    // Refusals: each names its reason, the serving version does not change.
    let bad_uploads: [(&str, Vec<u8>, StatusCode, &str); 4] = [
        (
            "garbage",
            b"\0asm but not really".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "WebAssembly",
        ),
        (
            "wrong world",
            plugin_bytes("zoo/wrong-world.wasm"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "retry-policy",
        ),
        (
            "configure rejects the service's config",
            plugin_bytes("zoo/bad-config.wasm"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "zoo/bad-config rejects every config",
        ),
        ("empty", Vec::new(), StatusCode::BAD_REQUEST, "empty body"),
    ];
    for (what, bytes, expected, reason) in bad_uploads {
        let (status, _, body) = admin(&levee, Method::PUT, "/admin/plugins/retry", bytes).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            json_of(&body)["reason"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
        assert_eq!(
            decided_by().await,
            version_of(&fixed),
            "{what}: the previous version keeps serving"
        );
    }
    let view = plugin_view(&levee, "retry").await;
    assert_eq!(
        view["status"], "failed",
        "the last refused load shows: {view}"
    );
    assert!(
        view["last_error"]
            .as_str()
            .unwrap()
            .contains("zoo/bad-config"),
        "{view}"
    );
    assert_eq!(view["version"], version_of(&fixed));

    // Oversize: refused by the declared length, before any byte is read.
    let address = levee.admin;
    let status = tokio::task::spawn_blocking(move || {
        control::status_for_declared_length(address, "/admin/plugins/retry", 32 * 1024 * 1024 + 1)
    })
    .await
    .unwrap();
    assert_eq!(status, 413);
    for bad_name in ["Retry", "a.b", "..", &"x".repeat(65)] {
        let (status, _, body) = admin(
            &levee,
            Method::PUT,
            &format!("/admin/plugins/{bad_name}"),
            fixed.clone(),
        )
        .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "name {bad_name:?}: {status} {body}"
        );
    }

    let (status, _, body) = admin(&levee, Method::POST, "/admin/plugins/retry/rollback", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json_of(&body)["version"], version_of(&backoff));
    assert_eq!(decided_by().await, version_of(&backoff));
    let (status, _, _) = admin(&levee, Method::POST, "/admin/plugins/retry/rollback", "").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing older to roll back to"
    );

    let (status, _, body) = admin(&levee, Method::DELETE, "/admin/plugins/retry", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        json_of(&body)["reason"].as_str().unwrap().contains("kv"),
        "names the user: {body}"
    );

    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/plugins/spare",
        plugin_bytes("route-affinity.wasm"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json_of(&body)["world"], "routing-policy");
    let (status, _, _) = admin(&levee, Method::DELETE, "/admin/plugins/spare", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = admin(&levee, Method::GET, "/admin/plugins/spare", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn services_are_validated_changed_looked_up_and_survive_a_restart_with_plugins() {
    let backoff = plugin_bytes("retry-backoff.wasm");
    let fixed = plugin_bytes("zoo/retry-fixed.wasm");
    let replicas = [
        Replica::spawn("r0"),
        Replica::spawn("r1"),
        Replica::spawn("r2"),
    ];
    let plugin_dir = control::plugin_dir_with_retry(&backoff);
    let levee = retrying_levee(&replicas[..2], &plugin_dir).await;

    // Field-level validation.
    let invalid = json!({
        "nodes": [{"id": "a", "url": replicas[0].url()}],
        "key": {"path_segment": 1},
        "write_quorum": 5,
        "timeouts": {"per_try_ms": 10, "total_ms": 5},
    });
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/users",
        invalid.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: Vec<String> = json_of(&body)["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("write_quorum")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("timeouts.per_try_ms")),
        "{paths:?}"
    );
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/users",
        r#"{"nodes": "many"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json_of(&body)["fields"][0]["path"], "nodes");
    let unbound = json!({
        "nodes": [{"id": "a", "url": replicas[0].url()}],
        "key": {"path_segment": 1},
        "policies": {"retry": {"plugin": "nope"}},
    });
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/users",
        unbound.to_string(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a missing plugin is refused: {body}"
    );
    // A binding's `config` is the plugin's, `fallback` the native
    // policy's: each refusal says which one refused.
    let refused_by = |policy: Value| {
        let mut spec = unbound.clone();
        spec["policies"] = json!({"retry": policy});
        let levee = &levee;
        async move {
            let (status, _, body) = admin(
                levee,
                Method::PUT,
                "/admin/services/users",
                spec.to_string(),
            )
            .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            body
        }
    };
    let body = refused_by(json!({"plugin": "retry", "config": {"max": 4}})).await;
    assert!(body.contains("plugin rejected its config"), "{body}");
    assert!(!body.contains("native"), "{body}");
    let body = refused_by(json!({"plugin": "retry", "fallback": {"max": 4}})).await;
    let field = &json_of(&body)["fields"][0];
    assert!(
        field["path"]
            .as_str()
            .unwrap()
            .ends_with("policies.retry.fallback"),
        "{body}"
    );
    assert!(
        field["message"]
            .as_str()
            .unwrap()
            .starts_with("the native retry-backoff refuses it"),
        "{body}"
    );
    let (status, _, _) = admin(&levee, Method::PUT, "/admin/services/Bad..Name", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Add a service bound to the retry plugin, use it, look a key up.
    let users = json!({
        "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
        "replicas": 2,
        "write_quorum": 2,
        "key": {"path_segment": 1},
        "max_attempts": 2,
        "retry_budget": {"ratio": 10.0, "min_per_s": 1000, "window_ms": 1000},
        "policies": {"retry": {"plugin": "retry"}},
    });
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/users",
        users.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = call(Method::PUT, &levee.url("/users/kv/alice"), &[], "hello").await;
    assert!(
        status.is_success(),
        "write through the new service: {status} {body}"
    );
    let (status, _, body) = call(Method::GET, &levee.url("/users/kv/alice"), &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    let ring = admin_json(&levee, "/admin/services/users/ring?key=alice").await;
    let expected =
        levee::cluster::ring::Ring::new(["r0", "r1", "r2"].map(|id| (id, 1)), 160).unwrap();
    let expected: Vec<String> = expected
        .preference(b"alice", 2)
        .iter()
        .map(|i| format!("r{i}"))
        .collect();
    let got: Vec<String> = ring["preference"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
    let (status, _, _) = admin(&levee, Method::GET, "/admin/services/users/ring", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the key is required");

    // A second service, deleted again: gone from the data plane.
    let temp =
        json!({"nodes": [{"id": "t", "url": replicas[2].url()}], "key": {"path_segment": 1}});
    let (status, _, _) = admin(
        &levee,
        Method::PUT,
        "/admin/services/temp",
        temp.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = admin(&levee, Method::DELETE, "/admin/services/temp", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(Method::GET, &levee.url("/temp/kv/x"), &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = admin(&levee, Method::DELETE, "/admin/services/temp", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A new plugin version, then a checkpoint and more changes after it, so
    // the restart needs both the snapshot and the log records.
    let (status, _, body) = admin(&levee, Method::PUT, "/admin/plugins/retry", fixed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = admin(&levee, Method::POST, "/admin/checkpoint", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(json_of(&body)["covers_lsn"].as_u64().is_some(), "{body}");
    let (status, _, body) = admin(&levee, Method::DELETE, "/admin/services/kv", "").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a configuration-file service can be deleted: {body}"
    );

    let levee = control::restart(levee).await;
    let services: Vec<String> = admin_json(&levee, "/admin/services")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        services,
        vec!["users".to_string()],
        "kv stays deleted, users stays added"
    );
    let view = plugin_view(&levee, "retry").await;
    assert_eq!(
        view["version"],
        version_of(&fixed),
        "the uploaded version survives, not the drop-in file"
    );
    assert_eq!(view["previous_versions"], json!([version_of(&backoff)]));
    assert_eq!(
        view["bindings"][0]["version"],
        version_of(&fixed),
        "and is bound: {view}"
    );
    let (status, _, body) = call(Method::GET, &levee.url("/users/kv/alice"), &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
}

#[tokio::test]
async fn metrics_readiness_and_graceful_shutdown() {
    let replicas = vec![Replica::spawn("r0"), Replica::spawn("r1")];
    replicas[0]
        .fault(json!({"fail_status": 503, "methods": ["GET"]}))
        .await;
    let keys = keys_with_primary(&["r0", "r1"], 0, 4);
    let plugin_dir = control::plugin_dir_with_retry(&plugin_bytes("retry-backoff.wasm"));
    let levee = retrying_levee(&replicas, &plugin_dir).await;
    for key in &keys {
        let (status, _, body) =
            call(Method::PUT, &levee.url(&format!("/kv/kv/{key}")), &[], "v").await;
        assert!(status.is_success(), "{status} {body}");
        let (status, _, body) =
            call(Method::GET, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, headers, text) = call(Method::GET, &levee.admin_url("/metrics"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for family in [
        "levee_requests_total{service=\"kv\",method=\"GET\",status=\"200\"}",
        "levee_request_duration_seconds_bucket",
        "levee_upstream_attempts_total{service=\"kv\",node=\"r0\"}",
        "levee_retries_total{service=\"kv\"}",
        "levee_plugin_calls_total{plugin=\"retry\"",
        "levee_plugin_call_duration_seconds_bucket{plugin=\"retry\"",
        "levee_plugin_quarantined{plugin=\"retry\"",
        "levee_log_append_duration_seconds_bucket",
        "levee_log_fsync_batch_records_bucket",
        "levee_log_last_lsn",
        "levee_hint_backlog{service=\"kv\",node=\"r0\"}",
        "levee_plugin_loads_total{plugin=\"retry\",source=\"drop_in\",result=\"ok\"}",
    ] {
        assert!(text.contains(family), "/metrics lacks {family}:\n{text}");
    }

    // Ready now; SIGTERM drains and exits 0 (checked by `restart`), and the
    // restarted process is ready only after recovery.
    let (status, _, _) = call(Method::GET, &levee.admin_url("/readyz"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let levee = control::restart(levee).await;
    let (status, _, body) = call(Method::GET, &levee.admin_url("/readyz"), &[], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = admin_json(&levee, "/admin/state").await;
    assert_eq!(state["ready"], true);
    assert!(
        state["log"]["latest_checkpoint"]["lsn"].as_u64().is_some(),
        "shutdown wrote a checkpoint: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let replicas = vec![Replica::spawn("r0")];
    replicas[0].put("slow", "finally").await;
    replicas[0]
        .fault(json!({"delay_ms": 1500, "methods": ["GET"]}))
        .await;
    let plugin_dir = control::plugin_dir_with_retry(&plugin_bytes("retry-backoff.wasm"));
    let mut levee = retrying_levee(&replicas, &plugin_dir).await;
    let url = levee.url("/kv/kv/slow");
    let in_flight = tokio::spawn(async move { call(Method::GET, &url, &[], "").await });
    // Wait (bounded) until levee counts the request as in flight.
    let mut seen = false;
    for _ in 0..600 {
        let state = admin_json(&levee, "/admin/state").await;
        if state["services"][0]["in_flight"].as_u64() == Some(1) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the slow request never showed as in flight");
    let exit = tokio::task::spawn_blocking(move || levee.proc.terminate())
        .await
        .unwrap();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "finally"),
        "the in-flight request was drained"
    );
    assert_eq!(exit, Some(0), "levee exits 0 after draining");
}
