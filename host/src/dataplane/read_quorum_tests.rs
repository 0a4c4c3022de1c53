//! Read quorum: the newest-answer pick, and reads against real replicas.

use super::*;
use levee_version::InstanceId;

fn v(physical_ms: u64) -> Option<Version> {
    Some(Version {
        physical_ms,
        logical: 0,
        instance: InstanceId(7),
    })
}

#[test]
fn the_newest_version_wins_whatever_its_status() {
    assert_eq!(newest(&[(200, v(5)), (200, v(5))]), (0, true));
    assert_eq!(newest(&[(200, v(4)), (200, v(5))]), (1, false));
    // A tombstone newer than the value: the delete wins.
    assert_eq!(newest(&[(200, v(4)), (404, v(6))]), (1, false));
    // A value newer than the tombstone: the value wins.
    assert_eq!(newest(&[(404, v(3)), (200, v(4))]), (1, false));
}

#[test]
fn an_answer_without_a_version_is_older_than_any_with_one() {
    assert_eq!(newest(&[(404, None), (200, v(1))]), (1, false));
    assert_eq!(newest(&[(200, None), (404, v(1))]), (1, false));
    // Neither versioned: a value beats a 404.
    assert_eq!(newest(&[(404, None), (200, None)]), (1, false));
    assert_eq!(newest(&[(404, None), (404, None)]), (0, true));
    assert_eq!(newest(&[(200, None), (200, None), (200, None)]), (0, true));
}

/// Real replicas, a service over them with `read_quorum` 2 and a write
/// plane, all in-process on loopback ports.
mod live {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper::{Request, StatusCode};
    use levee_kv_replica::{Faults, Replica};
    use levee_version::{InstanceId, VERSION_HEADER, Version};
    use serde_json::json;

    use super::super::*;
    use crate::config::ServiceSpec;

    struct Live {
        addresses: Vec<SocketAddr>,
        replicas: Vec<Arc<Replica>>,
        service: Arc<Service>,
        plane: WritePlane,
        _dirs: Vec<tempfile::TempDir>,
    }

    async fn live(nodes: usize) -> Live {
        live_reading(nodes, 2).await
    }

    async fn live_reading(nodes: usize, read_quorum: u32) -> Live {
        let mut dirs = Vec::new();
        let (mut addresses, mut replicas) = (Vec::new(), Vec::new());
        for _ in 0..nodes {
            let dir = tempfile::tempdir().unwrap();
            let replica = Replica::open(dir.path()).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.push(listener.local_addr().unwrap());
            let app = levee_kv_replica::router(Arc::clone(&replica));
            tokio::spawn(async move { axum::serve(listener, app).await });
            replicas.push(replica);
            dirs.push(dir);
        }
        let spec = json!({
            "name": "kv",
            "nodes": addresses.iter().enumerate()
                .map(|(i, a)| json!({"id": format!("r{i}"), "url": format!("http://{a}")}))
                .collect::<Vec<_>>(),
            "key": {"path_segment": 1},
            "read_quorum": read_quorum,
            "outlier": {"consecutive_failures": 1000},
        });
        let spec: ServiceSpec = serde_json::from_value(spec).unwrap();
        spec.validate().unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        let service = Arc::new(Service::build(spec, &runtime).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::from_json(
            &json!({"data_dir": dir.path(), "services": [service.spec]}).to_string(),
        )
        .unwrap();
        let options = levee_log::LogOptions::default();
        let (log, _) = levee_log::Log::open(&dir.path().join("log"), options).unwrap();
        let plane = WritePlane::open(log, &config, Default::default()).unwrap();
        dirs.push(dir);
        Live {
            addresses,
            replicas,
            service,
            plane,
            _dirs: dirs,
        }
    }

    fn version(physical_ms: u64) -> Version {
        Version {
            physical_ms,
            logical: 0,
            instance: InstanceId(3),
        }
    }

    async fn put(live: &Live, node: usize, key: &str, value: &str, version: Version) {
        let request = Request::put(format!("http://{}/kv/{key}", live.addresses[node]))
            .header(VERSION_HEADER, version.to_string())
            .body(http_body_util::Full::new(bytes::Bytes::from(
                value.to_owned(),
            )))
            .unwrap();
        let response = UpstreamClient::new()
            .send(request, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn get(live: &Live, key: &str) -> (StatusCode, String, String) {
        let request = Request::get(format!("/kv/kv/{key}"))
            .body(Body::empty())
            .unwrap();
        let inbound = Inbound::read(
            &live.service,
            request,
            &format!("/kv/{key}"),
            clock::now_ms(),
        )
        .await
        .unwrap();
        let quorum = quorum_for(&inbound, &live.plane).expect("a quorum read");
        let response = read(&UpstreamClient::new(), &live.plane, inbound, quorum)
            .await
            .unwrap();
        let status = response.status();
        let quorum = response.headers()[&X_LEVEE_READ_QUORUM]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, quorum, String::from_utf8_lossy(&body).into_owned())
    }

    fn order(live: &Live, key: &str) -> Vec<usize> {
        live.service.preference(key.as_bytes()).iter().collect()
    }

    #[tokio::test]
    async fn the_newest_of_two_answers_wins_and_the_disagreement_is_repaired() {
        let live = live(3).await;
        let order = order(&live, "k");
        put(&live, order[0], "k", "old", version(1)).await;
        put(&live, order[1], "k", "new", version(2)).await;
        put(&live, order[2], "k", "new", version(2)).await;
        assert_eq!(
            get(&live, "k").await,
            (StatusCode::OK, "2/2".into(), "new".into())
        );
        assert_eq!(live.plane.repairs.pending(), 1);
        assert_eq!(
            live.replicas[order[2]].kv_requests(),
            1,
            "only two were asked"
        );
        // A newer tombstone beats the value.
        let request = Request::delete(format!("http://{}/kv/k", live.addresses[order[0]]))
            .header(VERSION_HEADER, version(3).to_string())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = UpstreamClient::new()
            .send(request, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (status, quorum, _) = get(&live, "k").await;
        assert_eq!((status, quorum.as_str()), (StatusCode::NOT_FOUND, "2/2"));
    }

    #[tokio::test]
    async fn agreeing_answers_request_no_repair() {
        let live = live(3).await;
        for node in 0..3 {
            put(&live, node, "k", "same", version(5)).await;
        }
        assert_eq!(
            get(&live, "k").await,
            (StatusCode::OK, "2/2".into(), "same".into())
        );
        assert_eq!(live.plane.repairs.pending(), 0);
    }

    #[tokio::test]
    async fn a_failing_replica_is_replaced_and_too_few_answers_are_a_503() {
        let live = live(3).await;
        let order = order(&live, "k");
        let failing = Faults {
            fail_status: Some(503),
            ..Faults::default()
        };
        live.replicas[order[0]].set_faults(failing.clone());
        let (status, quorum, _) = get(&live, "k").await;
        assert_eq!(
            (status, quorum.as_str()),
            (StatusCode::NOT_FOUND, "2/2"),
            "the third replica stood in"
        );
        live.replicas[order[1]].set_faults(failing);
        let (status, quorum, body) = get(&live, "k").await;
        assert_eq!(
            (status, quorum.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "1/2")
        );
        assert!(
            body.contains("read quorum not reached: 1 of 2 replicas of kv answered"),
            "{body}"
        );
        assert!(body.contains("answered 503"), "{body}");
    }

    /// A dropped write of `key` (its hint given up on), as handoff records it.
    async fn drop_hint(live: &Live, key: &str) {
        let header = crate::replication::record::WriteHeader {
            service: "kv".into(),
            method: "PUT".into(),
            path: format!("/kv/{key}"),
            key: key.into(),
            targets: vec!["r0".into()],
            headers: vec![],
            request_id: String::new(),
            accepted_unix_ms: 1,
            version: version(2),
        };
        live.plane.repairs.record_dropped(&header).await;
    }

    async fn read_request(live: &Live, key: &str) -> Inbound {
        let request = Request::get(format!("/kv/kv/{key}"))
            .body(Body::empty())
            .unwrap();
        Inbound::read(
            &live.service,
            request,
            &format!("/kv/{key}"),
            clock::now_ms(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_key_awaiting_repair_is_read_from_n_minus_w_plus_1_replicas() {
        let live = live_reading(3, 1).await;
        let order = order(&live, "k");
        put(&live, order[0], "k", "old", version(1)).await;
        put(&live, order[1], "k", "new", version(2)).await;
        put(&live, order[2], "k", "new", version(2)).await;
        let inbound = read_request(&live, "k").await;
        assert_eq!(quorum_for(&inbound, &live.plane), None, "one replica reads");
        drop_hint(&live, "k").await;
        assert_eq!(
            quorum_for(&inbound, &live.plane),
            Some(ReadQuorum {
                replicas: 2,
                strict: false
            })
        );
        assert_eq!(
            get(&live, "k").await,
            (StatusCode::OK, "2/2".into(), "new".into()),
            "the lagging first replica is outvoted"
        );
        // Raised, not configured: with one answer it answers (the newest
        // there is), where a configured quorum would be a 503.
        let failing = Faults {
            fail_status: Some(503),
            ..Faults::default()
        };
        live.replicas[order[1]].set_faults(failing.clone());
        live.replicas[order[2]].set_faults(failing);
        assert_eq!(
            get(&live, "k").await,
            (StatusCode::OK, "1/2".into(), "old".into())
        );
    }
}
