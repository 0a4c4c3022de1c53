//! The write path: log append → the key's N replicas in parallel → answer
//! at W acks.
//!
//! One write, step by step:
//! 1. **Durable first.** The write (method, upstream path, replicated
//!    headers, body, key, target replicas, request id, time) is encoded as a
//!    [`WriteRecord`] and appended to the log. `append` returns once the
//!    record is on stable storage. If the log refuses (full, poisoned,
//!    closing), the client gets 503 with the reason and *nothing* is sent.
//! 2. **Fan-out.** The record's LSN is registered in the hint ledger with
//!    its targets (the key's preference list from the ring), then one task
//!    per replica sends it. A send that fails (no answer, 5xx, 429, 408) is
//!    retried against the *same* replica (each replica needs its own copy)
//!    only if the write is idempotent (PUT, DELETE, or an
//!    `Idempotency-Key`), as the retry policy, the retry budget, the attempt
//!    cap and the deadline allow. An ejected replica is not sent to at all.
//! 3. **Answer at W.** The client is answered as soon as W replicas
//!    acknowledged (2xx), with the first acknowledging replica's response
//!    and `x-levee-acks: k/N` (k = acks when answering) and `x-levee-lsn`.
//!    If W acks become impossible (or the deadline passes), the client gets
//!    the first definitive replica rejection (a 4xx) if there was one, else
//!    503 with every replica's outcome (JSON).
//! 4. **The rest in the background.** Sends still running when the client
//!    is answered carry on (bounded by the request's deadline; the service's
//!    in-flight slot is held until the last one ends, so `concurrency_max`
//!    bounds background work too). Every replica that did not ack keeps the
//!    write as a hint ([`crate::replication::hints`]); the handoff delivers it later.
//!
//! A 503 does not un-write anything: the record is in the log, some replicas
//! may have it, and the handoff will bring it to the others. A client that
//! got 503 learns "not confirmed", as with any quorum store.
//!
//! The whole sequence runs in its own task, so a client that disconnects
//! mid-write cannot cancel it between the append and the registration.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};
use levee_policy::{AttemptResult, ErrorKind, RequestInfo};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::config::ATTEMPTS_MAX;
use crate::dataplane::attempt::{self, Failed, RetryGate};
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::Inbound;
use crate::replication::WritePlane;
use crate::replication::deliver::{self, Answer, SendOutcome};
use crate::replication::hints::{DropReason, Lsn, NodeRef};
use crate::replication::record::{KIND_CLIENT_WRITE, REPLICATED_HEADERS, WriteHeader, WriteRecord};
use crate::upstream::UpstreamClient;

/// The response header with acknowledgements at answer time: `k/N`.
pub static X_LEVEE_ACKS: HeaderName = HeaderName::from_static("x-levee-acks");
/// The response header with the write's LSN.
pub static X_LEVEE_LSN: HeaderName = HeaderName::from_static("x-levee-lsn");

/// Replicates `inbound` (a PUT, POST, PATCH or DELETE) to its key's
/// replicas and answers at W acks.
pub async fn write(
    plane: Arc<WritePlane>,
    client: UpstreamClient,
    inbound: Inbound,
) -> Result<Response, AppError> {
    let service = inbound.service().clone();
    let targets: Vec<usize> = service
        .preference(inbound.routing_key().as_bytes())
        .iter()
        .collect();
    let quorum = service.spec.write_quorum() as usize;
    if targets.len() < quorum {
        // Validation makes W <= N <= nodes, so only a ring bug lands here.
        return Err(AppError::internal(format!(
            "{} targets for W = {quorum}",
            targets.len()
        )));
    }
    let record = WriteRecord {
        header: write_header(&service, &inbound, &targets),
        body: inbound.body.clone(),
    };
    let payload = record
        .encode()
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let (answer_sender, answer) = oneshot::channel();
    let job = WriteJob {
        plane,
        client,
        service,
        inbound,
        header: Arc::new(record.header),
        targets,
        quorum,
    };
    tokio::spawn(job.run(payload, answer_sender));
    answer
        .await
        .unwrap_or_else(|_| Err(AppError::internal("the write task ended without an answer")))
}

/// Everything one write needs, owned by its task.
struct WriteJob {
    plane: Arc<WritePlane>,
    client: UpstreamClient,
    service: Arc<Service>,
    /// Kept until the last send ends: it holds the service's in-flight slot.
    inbound: Inbound,
    header: Arc<WriteHeader>,
    /// Node indices of the key's replicas, in ring order.
    targets: Vec<usize>,
    quorum: usize,
}

impl WriteJob {
    async fn run(self, payload: Vec<u8>, answer: oneshot::Sender<Result<Response, AppError>>) {
        let lsn = match self.append(payload).await {
            Ok(lsn) => lsn,
            Err(error) => {
                let _ = answer.send(Err(error));
                return;
            }
        };
        let deadline_ms = self.inbound.started_ms + self.service.spec.timeouts.total_ms;
        // One client write is one request for the retry budget, however many
        // replicas it goes to.
        self.service.budget.record_request(clock::now_ms());
        let (outcomes, mut receiver) = mpsc::channel(self.targets.len());
        for (slot, &node) in self.targets.iter().enumerate() {
            let send = ReplicaSend {
                plane: self.plane.clone(),
                client: self.client.clone(),
                service: self.service.clone(),
                node,
                lsn,
                header: self.header.clone(),
                body: self.inbound.body.clone(),
                deadline_ms,
            };
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let outcome = send.run().await;
                let _ = outcomes.send((slot, outcome)).await;
            });
        }
        drop(outcomes);
        let nodes = self
            .targets
            .iter()
            .map(|&node| self.service.nodes[node].spec.id.clone())
            .collect();
        let mut tally = Tally::new(nodes, self.quorum);
        let mut answer = Some(answer);
        // Bounded: every send task ends by the deadline and reports once.
        while let Some((slot, outcome)) = receiver.recv().await {
            tally.record(slot, outcome);
            if let Some(verdict) = tally.verdict()
                && let Some(answer) = answer.take()
            {
                let _ = answer.send(Ok(verdict.into_response(lsn)));
            }
        }
        if let Some(answer) = answer.take() {
            let verdict = tally.verdict().unwrap_or_else(|| tally.give_up());
            let _ = answer.send(Ok(verdict.into_response(lsn)));
        }
        drop(self.inbound);
    }

    /// Appends the record and registers it with its targets.
    async fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppError> {
        let ticket = self.plane.ledger.begin_append();
        let started = std::time::Instant::now();
        match self.plane.log.append(KIND_CLIENT_WRITE, payload).await {
            Ok(lsn) => {
                crate::base::metrics::log_append(started.elapsed());
                let targets: Vec<NodeRef> = self
                    .targets
                    .iter()
                    .map(|&node| {
                        NodeRef::new(self.service.name(), &self.service.nodes[node].spec.id)
                    })
                    .collect();
                ticket.register(lsn, &targets);
                self.plane.appended();
                Ok(lsn)
            }
            Err(error) => {
                drop(ticket);
                tracing::warn!(service = self.service.name(), %error, "write refused by the log; nothing was sent");
                Err(log_error_to_app(&error))
            }
        }
    }
}

/// The client's view of a log error: 503 with a reason for the conditions
/// that pass (full, poisoned, closing), 413 for a record over the size
/// limit, and a generic 500 (details logged) for the rest.
fn log_error_to_app(error: &levee_log::LogError) -> AppError {
    use levee_log::LogError;
    match error {
        LogError::Full { used_bytes, max_bytes, .. } => AppError::Unavailable(format!(
            "levee's write log is full ({used_bytes} of {max_bytes} bytes): nothing was sent; writes resume \
             once replicas catch up on hints and the log is compacted"
        )),
        LogError::Poisoned(_) => AppError::Unavailable(
            "levee's write log failed to reach the disk and refuses writes until levee restarts: nothing was sent"
                .into(),
        ),
        LogError::Closed => AppError::Unavailable("levee is shutting down: nothing was sent".into()),
        LogError::RecordTooLarge { max, .. } => AppError::PayloadTooLarge { limit_bytes: u64::from(*max) },
        other => AppError::internal(format!("log append failed: {other}")),
    }
}

/// The header of the log record for `inbound`.
fn write_header(service: &Service, inbound: &Inbound, targets: &[usize]) -> WriteHeader {
    let headers = REPLICATED_HEADERS
        .iter()
        .filter_map(|&name| {
            let value = inbound.headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    WriteHeader {
        service: service.name().to_owned(),
        method: inbound.method.as_str().to_owned(),
        path: inbound.path_and_query.clone(),
        key: inbound.routing_key().to_owned(),
        targets: targets
            .iter()
            .map(|&node| service.nodes[node].spec.id.clone())
            .collect(),
        headers,
        request_id: inbound.request_id.to_str().unwrap_or_default().to_owned(),
        accepted_unix_ms: clock::unix_ms(),
    }
}

/// One replica's part of a write: send (and maybe retry), then record the
/// outcome in the ledger.
struct ReplicaSend {
    plane: Arc<WritePlane>,
    client: UpstreamClient,
    service: Arc<Service>,
    node: usize,
    lsn: Lsn,
    header: Arc<WriteHeader>,
    body: Bytes,
    deadline_ms: u64,
}

/// A replica's outcome as the tally sees it.
#[derive(Debug)]
enum ReplicaOutcome {
    Acked(Answer),
    Rejected(Answer),
    Failed(String),
}

impl ReplicaSend {
    async fn run(self) -> ReplicaOutcome {
        let node_ref = NodeRef::new(self.service.name(), &self.service.nodes[self.node].spec.id);
        let outcome = self.attempts().await;
        let ledger = &self.plane.ledger;
        let bytes = self.body.len() as u64;
        match &outcome {
            ReplicaOutcome::Acked(_) => ledger.acked(&node_ref, self.lsn),
            ReplicaOutcome::Rejected(answer) => {
                tracing::warn!(lsn = self.lsn, node = %node_ref, status = answer.status.as_u16(),
                    "replica rejected a write for good; it is not hinted and the replicas may differ");
                ledger.rejected(&node_ref, self.lsn, bytes);
                crate::base::metrics::hints_dropped(
                    &node_ref.service,
                    &node_ref.node,
                    DropReason::Rejected.label(),
                    1,
                );
            }
            ReplicaOutcome::Failed(reason) => {
                tracing::debug!(lsn = self.lsn, node = %node_ref, %reason, "write missed; kept as a hint");
                ledger.missed(&node_ref, self.lsn, bytes);
            }
        }
        outcome
    }

    /// Sends until an ack, a rejection, or a failure the shared retry gate
    /// will not retry (the same gate as reads: limits, idempotency, budget,
    /// then the retry policy; its choice of target is moot, this send is
    /// for one replica).
    async fn attempts(&self) -> ReplicaOutcome {
        let service = &*self.service;
        let health = &service.nodes[self.node].health;
        let gate = RetryGate {
            service,
            deadline_ms: self.deadline_ms,
            max_attempts: service.spec.max_attempts.min(ATTEMPTS_MAX),
            idempotent: self.header.is_idempotent(),
        };
        service.budget.record_request(clock::now_ms());
        // Bounded: each iteration starts an attempt, and the gate stops at
        // max_attempts (<= ATTEMPTS_MAX).
        for attempts in 1.. {
            let now_ms = clock::now_ms();
            if !health.try_acquire(now_ms) {
                return ReplicaOutcome::Failed("ejected by outlier detection; not sent".into());
            }
            if attempt::per_try_timeout_ms(service, self.deadline_ms, now_ms) == 0 {
                // try_acquire may have taken the half-open probe token.
                attempt::record(service, self.node, Verdict::Failure, 0, now_ms);
                return ReplicaOutcome::Failed(deliver::describe_failure(AttemptResult::Error(
                    ErrorKind::Timeout,
                )));
            }
            let sent = self.send_once().await;
            let result = match sent.result {
                SendOutcome::Acked(answer) => return ReplicaOutcome::Acked(answer),
                SendOutcome::Rejected(answer) => return ReplicaOutcome::Rejected(answer),
                SendOutcome::Failed(result) => result,
            };
            let failed = Failed {
                node: self.node,
                result,
                elapsed_ms: sent.elapsed_ms,
                retry_after_ms: None,
            };
            let decided = gate.decide(
                &failed,
                attempts,
                &[self.node],
                || self.request_info(),
                None,
            );
            let Some((delay_ms, _target)) = decided else {
                return ReplicaOutcome::Failed(deliver::describe_failure(result));
            };
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        unreachable!("the retry gate stops at max_attempts")
    }

    /// One send of the record through the shared attempt path.
    async fn send_once(&self) -> attempt::Attempted<SendOutcome> {
        let node = &self.service.nodes[self.node];
        attempt::attempt(
            &self.service,
            self.node,
            self.deadline_ms,
            |timeout| {
                deliver::send_write(
                    &self.client,
                    node,
                    self.lsn,
                    &self.header,
                    &self.body,
                    timeout,
                )
            },
            |outcome| match outcome {
                SendOutcome::Acked(_) | SendOutcome::Rejected(_) => Verdict::Success,
                SendOutcome::Failed(AttemptResult::Status(status)) => {
                    attempt::verdict_of_status(*status)
                }
                SendOutcome::Failed(AttemptResult::Error(_)) => Verdict::Failure,
            },
        )
        .await
    }

    fn request_info(&self) -> RequestInfo {
        let mut headers: Vec<(String, String)> = self.header.headers.clone();
        headers.truncate(levee_policy::limits::HEADERS_MAX);
        RequestInfo {
            service: self.header.service.clone(),
            method: self.header.method.clone(),
            path: self.header.path.clone(),
            routing_key: self.header.key.clone(),
            idempotent: self.header.is_idempotent(),
            headers,
        }
    }
}

/// Counts outcomes and decides when the client can be answered.
struct Tally {
    /// Node ids, by slot (ring order).
    nodes: Vec<String>,
    replicas: usize,
    quorum: usize,
    first_ack: Option<Answer>,
    first_rejection: Option<Answer>,
    acks: usize,
    /// Each slot's outcome as text, once it reported.
    outcomes: Vec<Option<String>>,
}

/// What the client is told.
enum Decision {
    Answer {
        answer: Answer,
        acks: usize,
        replicas: usize,
    },
    QuorumFailed(QuorumFailure),
}

/// The JSON body of a failed write.
#[derive(Debug, Serialize)]
struct QuorumFailure {
    error: &'static str,
    reason: String,
    acks: usize,
    required: usize,
    replicas: usize,
    /// Every replica's outcome, in ring order (`pending` if it had not
    /// answered by the deadline).
    outcomes: Vec<ReplicaReport>,
}

#[derive(Debug, Serialize)]
struct ReplicaReport {
    node: String,
    outcome: String,
}

impl Tally {
    fn new(nodes: Vec<String>, quorum: usize) -> Tally {
        let replicas = nodes.len();
        debug_assert!(quorum >= 1 && quorum <= replicas);
        let outcomes = vec![None; replicas];
        Tally {
            nodes,
            replicas,
            quorum,
            first_ack: None,
            first_rejection: None,
            acks: 0,
            outcomes,
        }
    }

    fn record(&mut self, slot: usize, outcome: ReplicaOutcome) {
        debug_assert!(self.outcomes[slot].is_none(), "slot {slot} reported twice");
        let description = match outcome {
            ReplicaOutcome::Acked(answer) => {
                self.acks += 1;
                let text = format!("acknowledged ({})", answer.status.as_u16());
                self.first_ack.get_or_insert(answer);
                text
            }
            ReplicaOutcome::Rejected(answer) => {
                let text = format!("rejected with {}", answer.status.as_u16());
                self.first_rejection.get_or_insert(answer);
                text
            }
            ReplicaOutcome::Failed(reason) => reason,
        };
        self.outcomes[slot] = Some(description);
    }

    fn pending(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.is_none())
            .count()
    }

    /// The answer, once it is decided: W acks, or W out of reach.
    fn verdict(&mut self) -> Option<Decision> {
        if self.acks >= self.quorum {
            let answer = self.first_ack.take()?;
            return Some(Decision::Answer {
                answer,
                acks: self.acks,
                replicas: self.replicas,
            });
        }
        if self.acks + self.pending() < self.quorum {
            return Some(self.give_up());
        }
        None
    }

    /// The answer when W acks cannot be had.
    fn give_up(&mut self) -> Decision {
        if let Some(answer) = self.first_rejection.take() {
            return Decision::Answer {
                answer,
                acks: self.acks,
                replicas: self.replicas,
            };
        }
        let failed: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.outcomes)
            .filter_map(|(node, outcome)| Some((node, outcome.as_ref()?)))
            .filter(|(_, description)| !description.starts_with("acknowledged"))
            .map(|(node, description)| format!("{node}: {description}"))
            .collect();
        let reason = format!(
            "write quorum not reached: {} of {} required acknowledgements from {} replicas; failed: {}. \
             The write is logged and not confirmed; replicas that missed it will get it by hinted handoff.",
            self.acks,
            self.quorum,
            self.replicas,
            if failed.is_empty() {
                "none answered in time".to_owned()
            } else {
                failed.join("; ")
            },
        );
        let outcomes = self
            .nodes
            .iter()
            .zip(&self.outcomes)
            .map(|(node, outcome)| ReplicaReport {
                node: node.clone(),
                outcome: outcome.clone().unwrap_or_else(|| "pending".into()),
            })
            .collect();
        Decision::QuorumFailed(QuorumFailure {
            error: "write_quorum_failed",
            reason,
            acks: self.acks,
            required: self.quorum,
            replicas: self.replicas,
            outcomes,
        })
    }
}

impl Decision {
    fn into_response(self, lsn: Lsn) -> Response {
        let (mut response, acks, replicas) = match self {
            Decision::Answer {
                answer,
                acks,
                replicas,
            } => {
                let mut response = Response::new(Body::from(answer.body));
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers;
                (response, acks, replicas)
            }
            Decision::QuorumFailed(failure) => {
                let (acks, replicas) = (failure.acks, failure.replicas);
                let body = serde_json::to_string(&failure).unwrap_or_default();
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                (response, acks, replicas)
            }
        };
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&format!("{acks}/{replicas}")) {
            headers.insert(X_LEVEE_ACKS.clone(), value);
        }
        headers.insert(X_LEVEE_LSN.clone(), HeaderValue::from(lsn));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Bytes::from_static(b"ok"),
        }
    }

    #[test]
    fn answers_at_w_acks_with_the_first_ack() {
        let mut tally = Tally::new(vec!["a".into(), "b".into(), "c".into()], 2);
        tally.record(1, ReplicaOutcome::Acked(answer(201)));
        assert!(tally.verdict().is_none());
        tally.record(0, ReplicaOutcome::Acked(answer(200)));
        match tally.verdict() {
            Some(Decision::Answer {
                answer,
                acks,
                replicas,
            }) => {
                assert_eq!(answer.status.as_u16(), 201);
                assert_eq!((acks, replicas), (2, 3));
            }
            _ => panic!("expected an answer"),
        }
    }

    #[test]
    fn fails_as_soon_as_w_is_out_of_reach_naming_the_failures() {
        let mut tally = Tally::new(vec!["a".into(), "b".into(), "c".into()], 2);
        tally.record(
            0,
            ReplicaOutcome::Failed("connection refused or unreachable".into()),
        );
        assert!(tally.verdict().is_none());
        tally.record(2, ReplicaOutcome::Failed("timed out".into()));
        match tally.verdict() {
            Some(Decision::QuorumFailed(failure)) => {
                assert_eq!(failure.acks, 0);
                assert!(
                    failure.reason.contains("a: connection refused"),
                    "{}",
                    failure.reason
                );
                assert!(
                    failure.reason.contains("c: timed out"),
                    "{}",
                    failure.reason
                );
                assert_eq!(failure.outcomes[1].node, "b");
                assert_eq!(failure.outcomes[1].outcome, "pending");
            }
            _ => panic!("expected a quorum failure"),
        }
    }

    #[test]
    fn a_definitive_rejection_is_relayed_when_quorum_fails() {
        let mut tally = Tally::new(vec!["a".into(), "b".into(), "c".into()], 2);
        tally.record(0, ReplicaOutcome::Rejected(answer(400)));
        tally.record(1, ReplicaOutcome::Rejected(answer(400)));
        match tally.verdict() {
            Some(Decision::Answer { answer, acks, .. }) => {
                assert_eq!(answer.status.as_u16(), 400);
                assert_eq!(acks, 0);
            }
            _ => panic!("expected the rejection"),
        }
    }

    #[tokio::test]
    async fn responses_carry_acks_and_lsn() {
        let verdict = Decision::Answer {
            answer: answer(200),
            acks: 2,
            replicas: 3,
        };
        let response = verdict.into_response(42);
        assert_eq!(response.headers()[&X_LEVEE_ACKS], "2/3");
        assert_eq!(response.headers()[&X_LEVEE_LSN], "42");
    }
}

/// The write path against a real log and a real replica (in-process, on a
/// loopback socket): what the client sees when the log refuses a write.
#[cfg(test)]
mod log_refusal_tests {
    use super::*;
    use crate::config::Config;
    use crate::replication::WritePlane;
    use http_body_util::BodyExt;
    use levee_log::{Log, LogOptions};

    /// A replica server on a free loopback port; returns its base URL.
    async fn spawn_replica(dir: &std::path::Path) -> String {
        let replica = levee_kv_replica::Replica::open(dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, levee_kv_replica::router(replica)).await });
        format!("http://{address}")
    }

    async fn replica_kv_requests(client: &UpstreamClient, url: &str) -> u64 {
        let request = hyper::Request::get(format!("{url}/_stats"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client.send(request, Duration::from_secs(10)).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        stats["kv_requests"].as_u64().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_log_refuses_the_write_with_503_and_nothing_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let url = spawn_replica(&dir.path().join("replica")).await;
        let config = Config::from_json(
            &serde_json::json!({"data_dir": dir.path(), "services": [{
                "name": "kv", "nodes": [{"id": "a", "url": url}],
                "replicas": 1, "write_quorum": 1, "key": {"path_segment": 1},
            }]})
            .to_string(),
        )
        .unwrap();
        let runtime =
            levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::for_data_dir(dir.path()))
                .unwrap();
        let service = Arc::new(Service::build(config.services[0].clone(), &runtime).unwrap());
        // A log of two 64 KiB segments: full after a dozen 8 KiB writes.
        let options = LogOptions {
            segment_bytes_max: 64 << 10,
            record_bytes_max: 16 << 10,
            log_bytes_max: 128 << 10,
            pending_bytes_max: 64 << 10,
            ..LogOptions::default()
        };
        let (log, _) = Log::open(&dir.path().join("log"), options).unwrap();
        let plane = Arc::new(WritePlane::open(log, &config, Default::default()).unwrap());
        let client = UpstreamClient::new();
        let mut acknowledged = 0u64;
        let mut refusal = None;
        // Bounded: 128 KiB of log holds at most 16 writes of 8 KiB.
        for i in 0..64 {
            let path = format!("/kv/k{i}");
            let request = hyper::Request::put(&path)
                .body(Body::from(vec![b'x'; 8 << 10]))
                .unwrap();
            let inbound = Inbound::read(&service, request, &path, clock::now_ms())
                .await
                .unwrap();
            match write(plane.clone(), client.clone(), inbound).await {
                Ok(response) => {
                    assert_eq!(response.status(), StatusCode::OK);
                    acknowledged += 1;
                }
                Err(error) => {
                    refusal = Some(error);
                    break;
                }
            }
        }
        let error = refusal.expect("the log fills up");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.to_string().contains("log is full"), "{error}");
        assert!(error.to_string().contains("nothing was sent"), "{error}");
        assert!(acknowledged > 0);
        // Every acknowledged write reached the replica; the refused one did not.
        assert_eq!(replica_kv_requests(&client, &url).await, acknowledged);
    }
}
