//! Cluster mode on etcd, end to end with real processes on loopback: a
//! 3-member etcd cluster (started here), 3 `levee kv-replica`s and 3
//! `levee serve` instances in cluster mode.
//!
//! What it shows: a service change through one instance is applied by
//! all; `/admin/cluster` says who is on which revision; losing one etcd
//! member changes nothing; losing all of them leaves every instance
//! serving its last configuration while admin writes answer 503 with the
//! reason, and they catch up when etcd returns; a SIGKILLed instance
//! leaves the membership when its lease expires; two instances writing the
//! same keys converge on one value per key on every replica.
//!
//! No timed assertions: every wait polls to a generous bound and prints
//! how long it took.

#[path = "cluster/etcd.rs"]
mod etcd;
#[path = "oci/registry.rs"]
mod registry;
mod support;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use levee_version::Version;
use serde_json::{Value, json};
use support::{Levee, Replica, call, try_call};

/// Polls of a condition (bounded: 600 × 50 ms = 30 s).
const POLLS: u32 = 600;
const POLL_PAUSE: Duration = Duration::from_millis(50);

fn service(name: &str, replicas: &[Replica]) -> Value {
    json!({
        "name": name,
        "nodes": replicas.iter().map(|r| json!({"id": r.id, "url": r.url()})).collect::<Vec<_>>(),
        "key": {"path_segment": 1},
        "replicas": 3,
        "write_quorum": 2,
    })
}

async fn start_levee(index: usize, endpoints: &[String], replicas: &[Replica]) -> Levee {
    Levee::start(json!({
        "cluster": {
            "etcd": endpoints,
            "instance_id": format!("levee-{index}"),
            "lease_ttl_s": 2,
            "request_timeout_ms": 1000,
        },
        "services": [service("kv", replicas)],
    }))
    .await
}

async fn admin(levee: &Levee, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, _, text) = call(method, &levee.admin_url(path), &[], body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `check` until it holds; how long that took.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let began = Instant::now();
    for _ in 0..POLLS {
        if check().await {
            let took = began.elapsed();
            println!("{what}: {took:?}");
            return took;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("{what}: not within {:?}", POLL_PAUSE * POLLS);
}

async fn has_service(levee: &Levee, name: &str) -> bool {
    matches!(
        try_call(
            Method::GET,
            &levee.admin_url(&format!("/admin/services/{name}")),
            &[],
            ""
        )
        .await,
        Some((StatusCode::OK, _, _))
    )
}

async fn summary(levee: &Levee) -> String {
    match try_call(Method::GET, &levee.admin_url("/admin/cluster"), &[], "").await {
        Some((StatusCode::OK, _, body)) => serde_json::from_str::<Value>(&body).unwrap()["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// A service change through `via`, retried while etcd has no leader yet;
/// the revision it created.
async fn put_service(via: &Levee, spec: Value) -> i64 {
    let name = spec["name"].as_str().unwrap().to_string();
    let mut last = None;
    for _ in 0..POLLS {
        let (status, body) = admin(
            via,
            Method::PUT,
            &format!("/admin/services/{name}"),
            spec.clone(),
        )
        .await;
        if status.is_success() {
            return body["revision"].as_i64().expect("revision");
        }
        last = Some((status, body));
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("PUT {name} never succeeded: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_etcd_agrees_and_rides_out_etcd_and_instance_failures() {
    let mut etcd = etcd::Etcd::start(3);
    let endpoints = etcd.endpoints();
    let replicas: Vec<Replica> = (0..3).map(|i| Replica::spawn(&format!("r{i}"))).collect();
    let mut fleet = Vec::new();
    for index in 0..3 {
        fleet.push(start_levee(index, &endpoints, &replicas).await);
    }
    eventually("all three listed and on one revision", || async {
        summary(&fleet[0]).await.starts_with("3/3 on revision")
    })
    .await;

    // A change through instance 0 reaches all three.
    let revision = put_service(&fleet[0], service("orders", &replicas)).await;
    let applied = eventually("orders applied by all three", || async {
        let mut all = true;
        for levee in &fleet {
            all &= has_service(levee, "orders").await;
        }
        all
    })
    .await;
    println!("a service change through one instance reached all three in {applied:?}");
    let expected = format!("3/3 on revision {revision}");
    eventually("the cluster view agrees", || async {
        summary(&fleet[2]).await == expected
    })
    .await;
    let (status, _, _) = call(Method::PUT, &fleet[1].url("/orders/kv/a"), &[], "one").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(Method::GET, &fleet[2].url("/orders/kv/a"), &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "one"));
    // Everyone on the revision places keys alike (one placement epoch),
    // and writes carry it to the replicas.
    let (_, view) = admin(&fleet[2], Method::GET, "/admin/cluster", Value::Null).await;
    assert_eq!(view["epochs_agree"], json!(true), "{view}");
    let epochs: Vec<&Value> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["status"]["epochs"]["orders"])
        .collect();
    assert!(
        epochs.iter().all(|e| e.is_string() && *e == epochs[0]),
        "{view}"
    );
    let log = replicas[0].request_log().await;
    let write = log
        .iter()
        .find(|entry| entry["method"] == "PUT" && entry["path"] == "/kv/a")
        .unwrap_or_else(|| panic!("the write reached r0: {log:?}"));
    let names = write["header_names"].to_string();
    assert!(names.contains("x-levee-ring-epoch"), "{names}");

    // A plugin pushed to a registry and bound through instance 1 by digest
    // is pulled and served by all three.
    let registry = registry::Registry::start();
    registry.wait_ready().await;
    let plugin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/retry-backoff.wasm");
    let reference = registry::push(
        &plugin,
        &format!("{}/levee/retry-backoff:v1", registry.host),
    );
    let (status, bound) = admin(
        &fleet[1],
        Method::PUT,
        "/admin/plugins/retry-backoff/oci",
        json!({"reference": reference}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bound}");
    let layer = bound["layer_digest"].as_str().unwrap().to_string();
    let expected = format!("3/3 on revision {}", bound["revision"]);
    eventually("the plugin digest served by all three", || async {
        let (_, view) = admin(&fleet[0], Method::GET, "/admin/cluster", Value::Null).await;
        view["summary"] == expected.as_str()
            && view["instances"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|i| i["status"]["plugins"]["retry-backoff"] == layer.as_str())
            })
    })
    .await;

    // One etcd member SIGKILLed: writes and reads go on.
    etcd.members[0].kill();
    put_service(&fleet[1], service("invoices", &replicas)).await;
    eventually(
        "invoices applied by all three with an etcd member down",
        || async {
            let mut all = true;
            for levee in &fleet {
                all &= has_service(levee, "invoices").await;
            }
            all
        },
    )
    .await;

    // Every etcd member down: serving goes on, admin writes say why not.
    etcd.members[1].kill();
    etcd.members[2].kill();
    for levee in &fleet {
        let (status, _, body) = call(Method::GET, &levee.url("/orders/kv/a"), &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "one"),
            "serving without etcd"
        );
    }
    let (status, body) = admin(
        &fleet[0],
        Method::PUT,
        "/admin/services/refunds",
        service("refunds", &replicas),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.to_string().contains("etcd is unavailable"), "{body}");
    let (status, _) = admin(&fleet[0], Method::GET, "/admin/cluster", Value::Null).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // etcd returns: writes work again and everyone catches up.
    for member in &mut etcd.members {
        member.restart();
    }
    for member in &etcd.members {
        member.wait_healthy();
    }
    let revision = put_service(&fleet[2], service("refunds", &replicas)).await;
    let expected = format!("3/3 on revision {revision}");
    eventually(
        "all three back and on the new revision after the outage",
        || async { summary(&fleet[0]).await == expected },
    )
    .await;
    for levee in &fleet {
        assert!(has_service(levee, "refunds").await);
    }

    // A levee instance SIGKILLed: the others serve; its lease expires.
    fleet[2].proc.kill();
    eventually("the killed instance leaves the membership", || async {
        summary(&fleet[0]).await == format!("2/2 on revision {revision}")
    })
    .await;
    let (status, body) = admin(&fleet[1], Method::GET, "/admin/cluster", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert!(!listed.contains(&"levee-2"), "{body}");
    let (status, _, body) = call(Method::GET, &fleet[0].url("/orders/kv/a"), &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_writing_the_same_keys_converge_on_every_replica() {
    let etcd = etcd::Etcd::start(1);
    let endpoints = etcd.endpoints();
    let replicas: Vec<Replica> = (0..3).map(|i| Replica::spawn(&format!("r{i}"))).collect();
    let a = start_levee(0, &endpoints, &replicas).await;
    let b = start_levee(1, &endpoints, &replicas).await;
    const KEYS: usize = 8;
    const WRITES_PER_WRITER: usize = 80;
    // Each writer keeps the version of every write acknowledged to it.
    let writer = |levee: &Levee, tag: &'static str| {
        let url = levee.url("/kv/kv/");
        async move {
            let mut acked = Vec::new();
            for i in 0..WRITES_PER_WRITER {
                let key = format!("k{}", i % KEYS);
                let value = format!("{tag}-{i}");
                let answer = try_call(Method::PUT, &format!("{url}{key}"), &[], value).await;
                if let Some((StatusCode::OK, headers, _)) = answer {
                    let version = headers["x-levee-version"].to_str().unwrap();
                    acked.push((key, Version::parse(version).unwrap()));
                }
            }
            acked
        }
    };
    let (from_a, from_b) = tokio::join!(writer(&a, "a"), writer(&b, "b"));
    let mut newest = std::collections::BTreeMap::new();
    for (key, version) in from_a.into_iter().chain(from_b) {
        let entry = newest.entry(key).or_insert(version);
        *entry = (*entry).max(version);
    }
    // Quiescence: hints delivered, every replica's dump the same.
    eventually(
        "every replica holds the same version of every key",
        || async {
            let mut dumps = Vec::new();
            for replica in &replicas {
                dumps.push(replica.dump().await["keys"].clone());
            }
            dumps.windows(2).all(|pair| pair[0] == pair[1])
                && dumps[0].as_object().map_or(0, |k| k.len()) == KEYS
        },
    )
    .await;
    let dump = replicas[0].dump().await;
    for (key, held) in dump["keys"].as_object().unwrap() {
        // The newest acknowledged write of the key is what every replica holds.
        let held_version = Version::parse(held["version"].as_str().unwrap()).unwrap();
        assert_eq!(Some(&held_version), newest.get(key), "{key}");
        // The value levee reads back is the one every replica holds.
        let (status, headers, _) =
            call(Method::GET, &a.url(&format!("/kv/kv/{key}")), &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let version = headers["x-levee-version"].to_str().unwrap();
        assert_eq!(held["version"].as_str().unwrap(), version, "{key}");
    }
}
