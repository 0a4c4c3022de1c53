//! Read quorum: a GET or HEAD to a service with `read_quorum: R` (R > 1)
//! asks R replicas of the key at once and answers with the newest version
//! among their answers, so a read sees every write acknowledged by W
//! replicas when R + W > N, whatever the lag index knows.
//!
//! Which replicas: the read's plan (replicas that still owe the key left
//! out, in the routing policy's order, see [`crate::dataplane::plan`]),
//! then the replicas left out, in ring order, asked only if the others
//! cannot make R. R attempts start together through the shared attempt
//! path (per-try timeout, deadline, health); each one that fails (no
//! answer, 5xx, 429) is replaced by the next replica, if the retry budget
//! allows, so a read makes at most N attempts.
//!
//! Which answer: the newest `x-levee-version` wins, whatever its status
//! (a tombstone's 404 with a newer version beats an older value); an
//! answer without a version ranks below every versioned one, and a 404
//! without a version lowest of all (see [`proxy::freshness_rank`]). Ties go
//! to the replica first in the plan. When the answers disagree, a
//! background repair of the key is requested (the laggards get the newest
//! version). Versions seen advance the write clock.
//!
//! The answer carries `x-levee-read-quorum: k/R` (k: replicas that
//! answered) besides `x-levee-attempts`. Fewer than R answers (every
//! replica tried, the budget or the deadline spent): 503 with each
//! replica's outcome in the reason.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::header::{HeaderName, HeaderValue};
use levee_policy::ErrorKind;
use levee_version::Version;
use tokio::task::JoinSet;

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::dataplane::attempt;
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::{Inbound, X_REQUEST_ID};
use crate::dataplane::plan::request_facts;
use crate::dataplane::proxy::{self, Attempt, X_LEVEE_ATTEMPTS, attempts_header, freshness_rank};
use crate::replication::WritePlane;
use crate::upstream::{self, AttemptError, RESPONSE_BODY_BYTES_MAX, UpstreamClient};

/// The response header saying how many of the R replicas asked answered.
pub static X_LEVEE_READ_QUORUM: HeaderName = HeaderName::from_static("x-levee-read-quorum");

/// Whether `inbound` is a read its service wants answered by a quorum.
pub fn applies(inbound: &Inbound) -> bool {
    inbound.is_read() && inbound.service().spec.read_quorum > 1
}

/// Answers the read `inbound` from `read_quorum` replicas (see the module
/// doc).
pub async fn read(
    client: &UpstreamClient,
    plane: &WritePlane,
    inbound: Inbound,
) -> Result<Response, AppError> {
    let service = inbound.service().clone();
    let now_ms = clock::now_ms();
    service.budget.record_request(now_ms);
    let quorum = service.spec.read_quorum as usize;
    let candidates = candidates(&service, &inbound, plane, now_ms);
    let deadline_ms = inbound.started_ms + service.spec.timeouts.total_ms;
    let gathered = gather(client, &service, &inbound, &candidates, quorum, deadline_ms).await;
    let attempts = attempts_header(gathered.attempts);
    let quorum_header = HeaderValue::from_str(&format!("{}/{quorum}", gathered.answers.len()))
        .expect("digits and a slash");
    let mut response = if gathered.answers.len() < quorum {
        not_reached(&service, &gathered, quorum)
    } else {
        answer(plane, &service, &inbound, gathered.answers)?
    };
    let headers = response.headers_mut();
    headers.insert(X_LEVEE_ATTEMPTS.clone(), attempts);
    headers.insert(X_LEVEE_READ_QUORUM.clone(), quorum_header);
    headers.insert(X_REQUEST_ID.clone(), inbound.request_id.clone());
    Ok(response)
}

/// The replicas to ask, in order: the read's plan, then the key's replicas
/// the plan left out (they owe it a write), in ring order.
fn candidates(service: &Service, inbound: &Inbound, plane: &WritePlane, now_ms: u64) -> Vec<usize> {
    let plan = proxy::read_plan(service, inbound, request_facts(inbound), now_ms, plane);
    let mut nodes: Vec<usize> = plan.indexes().iter().map(|&n| n as usize).collect();
    for node in service.preference(inbound.routing_key().as_bytes()).iter() {
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    nodes
}

/// A replica's final answer (not 5xx or 429).
struct Answered {
    node: usize,
    status: u16,
    version: Option<Version>,
    response: hyper::Response<hyper::body::Incoming>,
}

/// What the replicas said.
struct Gathered {
    /// Final answers, in the order of `candidates`.
    answers: Vec<Answered>,
    /// `(node, what went wrong)` for every replica that did not answer.
    failures: Vec<(usize, String)>,
    attempts: u32,
}

/// Asks `quorum` replicas of `candidates` at once, replacing each that
/// fails with the next, until `quorum` answered or none is left.
async fn gather(
    client: &UpstreamClient,
    service: &Arc<Service>,
    inbound: &Inbound,
    candidates: &[usize],
    quorum: usize,
    deadline_ms: u64,
) -> Gathered {
    let mut running = JoinSet::new();
    let mut gathered = Gathered {
        answers: Vec::with_capacity(quorum),
        failures: Vec::new(),
        attempts: 0,
    };
    let mut next = 0;
    // Bounded: each pass starts at most the attempts missing, each
    // candidate once, and waits for one of them to end.
    loop {
        while running.len() + gathered.answers.len() < quorum && next < candidates.len() {
            let node = candidates[next];
            next += 1;
            let replacing = gathered.attempts as usize >= quorum;
            match start(client, service, inbound, node, deadline_ms, replacing) {
                Ok(attempt) => {
                    running.spawn(attempt);
                    gathered.attempts += 1;
                }
                Err(reason) => gathered.failures.push((node, reason)),
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok(attempt) => gathered.record(attempt),
            Err(error) => tracing::warn!(%error, "a read quorum attempt task failed"),
        }
        if gathered.answers.len() >= quorum {
            break;
        }
    }
    let order = |node: usize| candidates.iter().position(|&n| n == node);
    gathered.answers.sort_by_key(|answer| order(answer.node));
    gathered
}

impl Gathered {
    /// Keeps a final answer, or notes why there was none.
    fn record(&mut self, attempt: Attempt) {
        let answer = attempt.answer();
        match (answer, attempt.result) {
            (Some((status, version)), Ok(response)) => self.answers.push(Answered {
                node: attempt.node,
                status,
                version,
                response,
            }),
            (_, result) => self.failures.push((attempt.node, describe(&result))),
        }
    }
}

/// One attempt on `node` as a task of its own, or why it is not sent: the
/// node is ejected, the deadline has passed, or (for a replacement) the
/// retry budget is empty.
fn start(
    client: &UpstreamClient,
    service: &Arc<Service>,
    inbound: &Inbound,
    node: usize,
    deadline_ms: u64,
    replacing: bool,
) -> Result<impl Future<Output = Attempt> + Send + 'static, String> {
    let now_ms = clock::now_ms();
    if now_ms >= deadline_ms {
        return Err("not asked: the deadline passed".into());
    }
    if replacing && !attempt::spend_budget(service, now_ms) {
        return Err("not asked: the retry budget is empty".into());
    }
    if !service.nodes[node].health.try_acquire(now_ms) {
        return Err("not asked: ejected by outlier detection".into());
    }
    let target = &service.nodes[node];
    let request = inbound
        .upstream_request(&target.scheme, &target.authority, &target.host)
        .map_err(|error| format!("not asked: {error}"))?;
    let (client, service) = (client.clone(), service.clone());
    Ok(async move {
        attempt::attempt(
            &service,
            node,
            deadline_ms,
            |timeout| async move { client.send(request, timeout).await },
            |result: &Result<hyper::Response<hyper::body::Incoming>, AttemptError>| match result {
                Ok(response) => attempt::verdict_of_status(response.status().as_u16()),
                Err(_) => Verdict::Failure,
            },
        )
        .await
    })
}

fn describe(result: &Result<hyper::Response<hyper::body::Incoming>, AttemptError>) -> String {
    match result {
        Ok(response) => format!("answered {}", response.status().as_u16()),
        Err(error) => match error.kind {
            ErrorKind::Connect => "connection failed".into(),
            ErrorKind::Timeout => "timed out".into(),
            ErrorKind::Reset => "connection reset".into(),
            ErrorKind::Protocol => "malformed HTTP response".into(),
            ErrorKind::Other => "request failed".into(),
        },
    }
}

/// The index in `answers` (`(status, version)` each) of the newest, the
/// first of equals; and whether they all agree.
pub(super) fn newest(answers: &[(u16, Option<Version>)]) -> (usize, bool) {
    let mut best = 0;
    for (index, &(status, version)) in answers.iter().enumerate() {
        let (best_status, best_version) = answers[best];
        if freshness_rank(status, version) > freshness_rank(best_status, best_version) {
            best = index;
        }
    }
    let (status, version) = answers[best];
    let agree = answers
        .iter()
        .all(|&(s, v)| freshness_rank(s, v) == freshness_rank(status, version));
    (best, agree)
}

/// The client's answer from the newest of `answers`; a repair of the key
/// if they disagree.
fn answer(
    plane: &WritePlane,
    service: &Service,
    inbound: &Inbound,
    mut answers: Vec<Answered>,
) -> Result<Response, AppError> {
    let seen: Vec<(u16, Option<Version>)> = answers
        .iter()
        .map(|answer| (answer.status, answer.version))
        .collect();
    for version in seen.iter().filter_map(|&(_, version)| version) {
        crate::replication::clock::observe(&plane.hlc, version);
    }
    let (best, agree) = newest(&seen);
    if !agree {
        plane.repairs.request(
            service.name(),
            inbound.routing_key(),
            inbound.path_and_query.path(),
        );
    }
    let winner = answers.swap_remove(best).response;
    let response =
        upstream::relay_response(winner, RESPONSE_BODY_BYTES_MAX).map_err(AppError::BadGateway)?;
    Ok(response.map(Body::new))
}

/// The 503 when fewer than `quorum` replicas answered.
fn not_reached(service: &Service, gathered: &Gathered, quorum: usize) -> Response {
    let outcomes: Vec<String> = gathered
        .failures
        .iter()
        .map(|(node, what)| format!("{}: {what}", service.nodes[*node].spec.id))
        .collect();
    let reason = format!(
        "read quorum not reached: {} of {quorum} replicas of {} answered ({})",
        gathered.answers.len(),
        service.name(),
        if outcomes.is_empty() {
            "no replica to ask".to_owned()
        } else {
            outcomes.join("; ")
        }
    );
    AppError::Unavailable(reason).into_response()
}

#[cfg(test)]
mod tests {
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
                "read_quorum": 2,
                "outlier": {"consecutive_failures": 1000},
            });
            let spec: ServiceSpec = serde_json::from_value(spec).unwrap();
            spec.validate().unwrap();
            let runtime =
                levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
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
            let response = read(&UpstreamClient::new(), &live.plane, inbound)
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
    }
}
