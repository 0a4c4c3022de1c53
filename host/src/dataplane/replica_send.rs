//! One replica's part of a write: the record sent to that replica through
//! the shared attempt path ([`crate::dataplane::attempt`]), retried on the
//! same replica as the shared retry gate allows, and its outcome recorded
//! in the hint ledger (acked, rejected for good, or missed and kept as a
//! hint for the handoff).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use levee_policy::{AttemptResult, ErrorKind, RequestInfo};

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::config::ATTEMPTS_MAX;
use crate::dataplane::attempt::{self, Failed, RetryGate};
use crate::replication::WritePlane;
use crate::replication::deliver::{self, Answer, SendOutcome};
use crate::replication::hints::{DropReason, Lsn, NodeRef};
use crate::replication::record::WriteHeader;
use crate::upstream::UpstreamClient;

/// One replica's part of a write: send (and maybe retry), then record the
/// outcome in the ledger.
pub(super) struct ReplicaSend {
    pub(super) plane: Arc<WritePlane>,
    pub(super) client: UpstreamClient,
    pub(super) service: Arc<Service>,
    pub(super) node: usize,
    pub(super) lsn: Lsn,
    pub(super) header: Arc<WriteHeader>,
    pub(super) body: Bytes,
    pub(super) deadline_ms: u64,
}

/// A replica's outcome as the tally sees it.
#[derive(Debug)]
pub(super) enum ReplicaOutcome {
    Acked(Answer),
    Rejected(Answer),
    Failed(String),
}

impl ReplicaSend {
    pub(super) async fn run(self) -> ReplicaOutcome {
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
        // Bounded by gate.max_attempts (<= ATTEMPTS_MAX): each iteration
        // starts an attempt, and the gate refuses a retry past the last.
        for attempts in 1..=gate.max_attempts {
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
        ReplicaOutcome::Failed("out of attempts".into())
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
