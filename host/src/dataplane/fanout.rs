//! The write path: log append → the key's N replicas in parallel → answer
//! at W acks.
//!
//! One write, step by step:
//! 0. **Versioned.** The write clock issues the write's version
//!    ([`crate::replication::clock`]): newer than every version this
//!    instance issued or saw on a replica. If the clock cannot persist its
//!    mark, the client gets 503 `not_written` and nothing is logged.
//! 1. **Durable first.** The write (method, upstream path, replicated
//!    headers, body, key, target replicas, request id, time, version) is
//!    encoded as a [`WriteRecord`] and appended to the log. `append` returns
//!    once the record is on stable storage. If the log refuses (full, disk
//!    full, closing), the client is told it was not written (503, or 507
//!    for a full disk) and *nothing* is sent; after an fsync failure the
//!    outcome is unknown (503).
//! 2. **Fan-out.** The record's LSN is registered in the hint ledger with
//!    its targets (the key's preference list from the ring), then one task
//!    per replica sends it. A send that fails (no answer, 5xx, 429, 408) is
//!    retried against the *same* replica (each replica needs its own copy)
//!    only if the write is idempotent (PUT, DELETE, or an
//!    `Idempotency-Key`), as the retry policy, the retry budget, the attempt
//!    cap and the deadline allow. An ejected replica is not sent to at all.
//! 3. **Answer at W.** The client is answered as soon as W replicas
//!    acknowledged (2xx), with the first acknowledging replica's response
//!    and `x-levee-acks: k/N` (k = acks when answering), `x-levee-lsn` and
//!    `x-levee-version`. If W acks become impossible (or the deadline
//!    passes), the client gets 409 `superseded` if replicas hold a newer
//!    version and none acked, the replicas' 4xx if every one rejected the
//!    write, else 503/504 `x-levee-outcome: unknown` with every replica's
//!    outcome (JSON); the rules are in [`crate::dataplane::tally`].
//! 4. **The rest in the background.** Sends still running when the client
//!    is answered carry on (bounded by the request's deadline; the service's
//!    in-flight slot is held until the last one ends, so `concurrency_max`
//!    bounds background work too). Every replica that did not ack keeps the
//!    write as a hint ([`crate::replication::hints`]); the handoff delivers it later.
//!
//! A 503 after the append does not un-write anything: the record is in the
//! log, some replicas may have it, and the handoff will bring it to the
//! others. A client that got `x-levee-outcome: unknown` learns "not
//! confirmed, may still appear", as with any quorum store.
//!
//! The whole sequence runs in its own task, so a client that disconnects
//! mid-write cannot cancel it between the append and the registration.

//!
//! The parts: this file runs the job (append, spawn the sends, answer);
//! [`crate::dataplane::replica_send`] is one replica's sends through the
//! shared attempt path; [`crate::dataplane::tally`] counts the outcomes and
//! decides the answer.

use std::sync::Arc;

use axum::response::Response;
use tokio::sync::{mpsc, oneshot};

use crate::base::clock;
use crate::cluster::service::Service;
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::Inbound;
use crate::dataplane::replica_send::ReplicaSend;
use crate::dataplane::tally::{Decision, Tally};
use crate::dataplane::write_policy::{WriteDecider, X_LEVEE_WRITE_POLICY};
use crate::replication::WritePlane;
use crate::replication::hints::{Lsn, NodeRef};
use crate::replication::record::{KIND_CLIENT_WRITE, REPLICATED_HEADERS, WriteHeader, WriteRecord};
use crate::upstream::UpstreamClient;

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
    let version = plane.hlc.now().map_err(|error| {
        tracing::error!(%error, "the write clock cannot issue a version");
        AppError::NotWritten(
            "levee's write clock cannot persist its high-water mark: nothing was written".into(),
        )
    })?;
    let record = WriteRecord {
        header: write_header(&service, &inbound, &targets, version),
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
            .map(|&node| self.service.nodes[node].spec.id.as_str())
            .collect();
        let mut tally = Tally::new(nodes, self.quorum);
        let mut policy = WriteDecider::new(&self.service, &self.targets);
        let mut answer = Some(answer);
        // Bounded: every send task ends by the deadline and reports once.
        while let Some((slot, outcome)) = receiver.recv().await {
            if answer.is_none() {
                tally.record(slot, outcome);
                continue;
            }
            if let Some(policy) = &mut policy {
                policy.record(slot, &outcome, self.inbound.started_ms);
            }
            tally.record(slot, outcome);
            let verdict = match &mut policy {
                Some(policy) => {
                    policy.verdict(&self.service, &self.inbound, &mut tally, deadline_ms)
                }
                None => tally.verdict(),
            };
            if let Some(verdict) = verdict
                && let Some(answer) = answer.take()
            {
                let acked = matches!(verdict, Decision::Answer { .. });
                self.plane.recent.note_write(&self.header, acked);
                let _ = answer.send(Ok(self.respond(verdict, lsn, policy.as_ref())));
            }
        }
        if let Some(answer) = answer.take() {
            let deadline_passed = clock::now_ms() >= deadline_ms;
            let verdict = tally
                .verdict()
                .unwrap_or_else(|| tally.give_up(deadline_passed));
            let _ = answer.send(Ok(self.respond(verdict, lsn, policy.as_ref())));
        }
        drop(self.inbound);
    }

    /// The client's response, naming the write policy that decided when
    /// one is bound.
    fn respond(&self, verdict: Decision, lsn: Lsn, policy: Option<&WriteDecider>) -> Response {
        let mut response = verdict.into_response(lsn, self.header.version);
        if let Some(policy) = policy {
            response
                .headers_mut()
                .insert(X_LEVEE_WRITE_POLICY.clone(), policy.header());
        }
        response
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
                ticket.register_write(lsn, &self.header.key, &targets);
                self.plane.appended();
                Ok(lsn)
            }
            Err(error) => {
                drop(ticket);
                tracing::warn!(service = self.service.name(), %error, "write refused by the log");
                Err(log_error_to_app(&error))
            }
        }
    }
}

/// The client's view of a log error. Full, closing and too large: refused
/// before the record was written, so "not written". Out of disk space
/// (ENOSPC): the log cut the batch back and gave its LSNs out again, so
/// also "not written", as 507 Insufficient Storage. Poisoned: an fsync
/// failed, and this record may be on disk all the same (its batch was
/// written before the sync failed) and be delivered after a restart, so the
/// outcome is unknown. The log does not tell a record refused by an
/// already-poisoned log from one in the failed batch; both are answered
/// "unknown", which is never false. The rest: a generic 500 (logged).
fn log_error_to_app(error: &levee_log::LogError) -> AppError {
    use levee_log::LogError;
    match error {
        LogError::Full {
            used_bytes,
            max_bytes,
            ..
        } => AppError::NotWritten(format!(
            "levee's write log is full ({used_bytes} of {max_bytes} bytes): nothing was sent; writes resume \
             once replicas catch up on hints and the log is compacted"
        )),
        LogError::Poisoned(_) => AppError::OutcomeUnknown(
            "levee's write log failed to reach the disk and refuses writes until levee restarts; \
             this write may be on disk all the same and reach the replicas after the restart"
                .into(),
        ),
        LogError::NoSpace { .. } => AppError::InsufficientStorage(
            "levee's write log is out of disk space: this write was not logged and nothing was \
             sent; writes resume once space is freed on levee's data disk"
                .into(),
        ),
        LogError::Closed => AppError::NotWritten("levee is shutting down: nothing was sent".into()),
        LogError::RecordTooLarge { max, .. } => AppError::PayloadTooLarge {
            limit_bytes: u64::from(*max),
        },
        other => AppError::internal(format!("log append failed: {other}")),
    }
}

/// The header of the log record for `inbound`, issued `version`.
fn write_header(
    service: &Service,
    inbound: &Inbound,
    targets: &[usize],
    version: levee_version::Version,
) -> WriteHeader {
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
        path: inbound.path_and_query.as_str().to_owned(),
        key: inbound.routing_key().to_owned(),
        targets: targets
            .iter()
            .map(|&node| service.nodes[node].spec.id.clone())
            .collect(),
        headers,
        request_id: inbound.request_id.to_str().unwrap_or_default().to_owned(),
        accepted_unix_ms: clock::unix_ms(),
        version,
    }
}

/// The write path against a real log and a real replica (in-process, on a
/// loopback socket): what the client sees when the log refuses a write.
#[cfg(test)]
mod log_refusal_tests {
    use std::time::Duration;

    use axum::body::Body;
    use bytes::Bytes;
    use hyper::StatusCode;

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
        assert_eq!(
            error.write_outcome(),
            Some(crate::dataplane::error::OUTCOME_NOT_WRITTEN)
        );
        assert!(error.to_string().contains("log is full"), "{error}");
        assert!(error.to_string().contains("nothing was sent"), "{error}");
        assert!(acknowledged > 0);
        // Every acknowledged write reached the replica; the refused one did not.
        assert_eq!(replica_kv_requests(&client, &url).await, acknowledged);
    }
}
