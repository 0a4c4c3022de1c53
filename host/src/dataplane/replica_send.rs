//! One replica's part of a write: the record sent to that replica through
//! the shared attempt path ([`crate::dataplane::attempt`]), retried on the
//! same replica as the shared retry gate allows, and its outcome recorded
//! in the hint ledger (acked, superseded, rejected for good, or missed and
//! kept as a hint for the handoff).
//!
//! Superseded (the replica holds a newer version of the key) settles the
//! record for that replica in the ledger exactly as an ack does, since there
//! is nothing left to deliver and a hint would only be refused again, but
//! the tally never counts it as an ack. The held version is observed on the
//! write clock before the outcome is reported, so by the time the client
//! hears "superseded" its retry gets a newer version.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use levee_policy::limits::is_credential_header;
use levee_policy::{AttemptResult, ErrorKind, Method, RequestFacts, RequestView};

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::{Service, policy_index};
use crate::config::ATTEMPTS_MAX;
use crate::dataplane::attempt::{self, Failed, RetryGate};
use crate::replication::deliver::{self, Answer, SendOutcome};
use crate::replication::hints::{DropReason, Lsn, NodeRef};
use crate::replication::record::WriteHeader;
use crate::replication::{WritePlane, clock as write_clock};
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

/// What a failed send is, for a write policy, when nothing better is
/// known (a replica never tried: ejected; out of attempts).
pub(super) const NOT_SENT: AttemptResult = AttemptResult::Error(ErrorKind::Other);

/// A replica's outcome as the tally sees it.
#[derive(Debug)]
pub(super) enum ReplicaOutcome {
    Acked(Answer),
    /// The replica holds this newer version of the key.
    Superseded(levee_version::Version),
    Rejected(Answer),
    /// No lasting answer: the last attempt's result, and its description.
    Failed(AttemptResult, String),
}

impl ReplicaSend {
    pub(super) async fn run(self) -> ReplicaOutcome {
        let node_ref = NodeRef::new(self.service.name(), &self.service.nodes[self.node].spec.id);
        let outcome = self.attempts().await;
        let ledger = &self.plane.ledger;
        let bytes = self.body.len() as u64;
        match &outcome {
            ReplicaOutcome::Acked(_) => ledger.acked(&node_ref, self.lsn),
            ReplicaOutcome::Superseded(held) => {
                write_clock::observe(&self.plane.hlc, *held);
                tracing::debug!(lsn = self.lsn, node = %node_ref, %held,
                    "write superseded by a newer version on the replica");
                // Settled for the ledger (no hint), never an ack for the tally.
                ledger.acked(&node_ref, self.lsn);
            }
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
            ReplicaOutcome::Failed(_, reason) => {
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
            facts: write_facts(&self.header),
        };
        service.budget.record_request(clock::now_ms());
        // Bounded by gate.max_attempts (<= ATTEMPTS_MAX): each iteration
        // starts an attempt, and the gate refuses a retry past the last.
        for attempts in 1..=gate.max_attempts {
            let now_ms = clock::now_ms();
            if !health.try_acquire(now_ms) {
                return ReplicaOutcome::Failed(
                    NOT_SENT,
                    "ejected by outlier detection; not sent".into(),
                );
            }
            if attempt::per_try_timeout_ms(service, self.deadline_ms, now_ms) == 0 {
                // try_acquire may have taken the half-open probe token.
                attempt::record(service, self.node, Verdict::Failure, 0, now_ms);
                let timeout = AttemptResult::Error(ErrorKind::Timeout);
                return ReplicaOutcome::Failed(timeout, deliver::describe_failure(timeout));
            }
            let sent = self.send_once().await;
            let result = match sent.result {
                SendOutcome::Acked(answer) => return ReplicaOutcome::Acked(answer),
                SendOutcome::Superseded(held) => return ReplicaOutcome::Superseded(held),
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
                &[policy_index(self.node)],
                &*self.header,
                None,
            );
            let Some((delay_ms, _target)) = decided else {
                return ReplicaOutcome::Failed(result, deliver::describe_failure(result));
            };
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        ReplicaOutcome::Failed(NOT_SENT, "out of attempts".into())
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
                SendOutcome::Acked(_) | SendOutcome::Superseded(_) | SendOutcome::Rejected(_) => {
                    Verdict::Success
                }
                SendOutcome::Failed(AttemptResult::Status(status)) => {
                    attempt::verdict_of_status(*status)
                }
                SendOutcome::Failed(AttemptResult::Error(_)) => Verdict::Failure,
            },
        )
        .await
    }
}

/// What the retry policy learns about a write, as scalars: its method's
/// class, and whether a retry is harmless (PUT and DELETE, or a non-empty
/// `Idempotency-Key`).
fn write_facts(header: &WriteHeader) -> RequestFacts {
    RequestFacts {
        method: Method::from_name(&header.method),
        idempotent: header.is_idempotent(),
    }
}

/// A write as the retry policy reads it: the logged record's header,
/// without copying (it carries only the replicated headers). Credentials
/// are never shown.
impl RequestView for WriteHeader {
    fn service(&self) -> &str {
        &self.service
    }

    fn method(&self) -> &str {
        &self.method
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn routing_key(&self) -> &str {
        &self.key
    }

    fn header(&self, name: &str) -> Option<&str> {
        if is_credential_header(name) {
            return None;
        }
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}
