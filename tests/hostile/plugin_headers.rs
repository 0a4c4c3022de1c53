//! Request headers against a plugin: a client sends credentials and
//! made-up headers; the retry plugin bound to the service reads only the
//! headers its binding lists, never a credential, and a binding that lists
//! a credential is refused with the entry named.
//!
//! The plugin is `zoo/echo-request`: on every decision it writes what it
//! read to levee's log at `warn`, `echo-request saw
//! {service}|{method}|{path}|{key}|{x-echo}|{authorization}|nodes={N}`
//! then `|name=value` for `x-tenant`, `idempotency-key`, `cookie`,
//! `set-cookie` and `proxy-authorization` (`-` for what the host answered
//! `none`), which the test reads back from the real process's stderr.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::control::{self, admin, plugin_bytes, version_of};
use crate::support::{Levee, Replica, call};

/// The value every credential the client sends carries: it must appear
/// nowhere in what levee logs.
const SECRET: &str = "s3cret-0f-the-client";
/// Polls of levee's stderr for the plugin's line, and their spacing.
const LOG_POLLS: u32 = 600;
const LOG_POLL_PAUSE: Duration = Duration::from_millis(50);

/// The service `kv` over `replicas`, its retry policy the echo plugin
/// (named `retry`) bound with `headers`.
fn service_spec(replicas: &[Replica], headers: Value) -> Value {
    let mut config = control::retrying_config(replicas, std::path::Path::new(""));
    let mut service = config["services"][0].take();
    service["policies"]["retry"]["headers"] = headers;
    service
}

/// One GET of `key` carrying credentials and made-up headers; every
/// replica answers 503, so the retry plugin is asked and gives up.
async fn hostile_get(levee: &Levee, key: &str) {
    let cookie = format!("session={SECRET}");
    let bearer = format!("Bearer {SECRET}");
    let basic = format!("Basic {SECRET}");
    let headers = [
        ("x-tenant", "tenant-7"),
        ("x-echo", "hello"),
        ("idempotency-key", "k-1"),
        ("authorization", bearer.as_str()),
        ("cookie", cookie.as_str()),
        ("set-cookie", cookie.as_str()),
        ("proxy-authorization", basic.as_str()),
    ];
    let url = levee.url(&format!("/kv/kv/{key}"));
    let (status, response, body) = call(Method::GET, &url, &headers, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let decided = response["x-levee-policy-version"].to_str().unwrap();
    let version = version_of(&plugin_bytes("zoo/echo-request.wasm"));
    assert_eq!(decided, version, "the plugin itself decided");
}

/// What echo-request saw of the request to `key`, from levee's stderr:
/// the fields after the path and key (waits, bounded, for the line).
async fn echo_of(levee: &Levee, key: &str) -> String {
    let start = format!("echo-request saw kv|GET|/kv/{key}|{key}|");
    for _ in 0..LOG_POLLS {
        let stderr = levee.proc.stderr();
        if let Some(at) = stderr.find(&start) {
            let line = &stderr[at + start.len()..];
            let end = line.find('"').expect("the message is quoted");
            assert!(!stderr.contains(SECRET), "a credential reached the log");
            return line[..end].to_string();
        }
        tokio::time::sleep(LOG_POLL_PAUSE).await;
    }
    panic!(
        "no plugin log line for {key}; stderr:\n{}",
        levee.proc.stderr()
    );
}

#[tokio::test]
async fn a_plugin_reads_only_listed_headers_and_never_credentials() {
    let replicas = [Replica::spawn("r0"), Replica::spawn("r1")];
    for replica in &replicas {
        replica.fault(json!({"fail_status": 503})).await;
    }
    let plugin_dir = control::plugin_dir_with_retry(&plugin_bytes("zoo/echo-request.wasm"));
    let mut config = control::retrying_config(&replicas, plugin_dir.path());
    config["services"][0] = service_spec(&replicas, json!(["x-tenant"]));
    let levee = Levee::start(config).await;

    // Listed: x-tenant. Not listed: x-echo, idempotency-key (the list
    // replaces the default). Credentials: never.
    hostile_get(&levee, "alpha").await;
    assert_eq!(
        echo_of(&levee, "alpha").await,
        "-|-|nodes=2|x-tenant=tenant-7|idempotency-key=-|cookie=-|set-cookie=-\
         |proxy-authorization=-"
    );

    // A binding listing a credential is refused, naming the entry; the
    // service keeps its binding.
    let mut listing = service_spec(&replicas, json!(["x-tenant", "cookie", "authorization"]));
    listing.as_object_mut().unwrap().remove("name");
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/kv",
        listing.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Value = serde_json::from_str::<Value>(&body).unwrap()["fields"].clone();
    let refused: Vec<(&str, &str)> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(refused.len(), 2, "{body}");
    assert!(
        refused[0].0.ends_with("policies.retry.headers[1]"),
        "{body}"
    );
    assert!(
        refused[0].1.contains("\"cookie\" is a credential"),
        "{body}"
    );
    assert!(
        refused[1].0.ends_with("policies.retry.headers[2]"),
        "{body}"
    );
    assert!(refused[1].1.contains("plugins never read"), "{body}");

    // Without a `headers` list: the default, the idempotency key only.
    let mut default = service_spec(&replicas, Value::Null);
    let object = default.as_object_mut().unwrap();
    object.remove("name");
    object["policies"]["retry"]
        .as_object_mut()
        .unwrap()
        .remove("headers");
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/services/kv",
        default.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    hostile_get(&levee, "beta").await;
    assert_eq!(
        echo_of(&levee, "beta").await,
        "-|-|nodes=2|x-tenant=-|idempotency-key=k-1|cookie=-|set-cookie=-\
         |proxy-authorization=-"
    );
}
