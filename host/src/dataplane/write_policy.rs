//! The write policy's part of a write: when a `write-policy` plugin is
//! bound to the service, each replica's result goes to it, and it says
//! when the client is answered (wait, acknowledge, fail); with no plugin,
//! or on any failure of the plugin, plain W-of-N decides
//! ([`Tally::verdict`]), exactly as without a write policy.
//!
//! What the host keeps whatever the plugin says:
//! - an `acknowledge` below the service's `write_quorum_min` acks is an
//!   invalid answer (refused in `levee_plugin`, counted as the plugin's
//!   failure), so W-of-N answers that result;
//! - a `wait` once every replica has answered, or past the deadline, is
//!   answered by W-of-N (the fan-out ends at the deadline, so waiting past
//!   it is impossible);
//! - `fail` is answered like a W-of-N failure (409 `superseded`, the
//!   replicas' 4xx, or 503 `x-levee-outcome: unknown`), with the plugin's
//!   reason in the body.
//!
//! Every answer names who decided in `x-levee-write-policy`: the plugin's
//! name, `native`, or `native; <plugin> failed` / `quarantined`.

use hyper::header::{HeaderName, HeaderValue};
use levee_plugin::Source;
use levee_policy::{NodeIndex, ReplicaResult, WriteContext, WriteDecision, WriteResult};

use crate::base::clock;
use crate::cluster::service::{Service, policy_index};
use crate::dataplane::inbound::Inbound;
use crate::dataplane::plan::request_facts;
use crate::dataplane::replica_send::ReplicaOutcome;
use crate::dataplane::tally::{Decision, Tally};

/// The response header naming who decided when the write was answered.
pub static X_LEVEE_WRITE_POLICY: HeaderName = HeaderName::from_static("x-levee-write-policy");

/// One write's results as its policy sees them.
pub(super) struct WriteDecider {
    /// The write's replicas as policy node indexes, ring order.
    replicas: Vec<NodeIndex>,
    /// Every result so far, arrival order (at most `replicas.len()`).
    results: Vec<ReplicaResult>,
    /// Who decided the answer, once answered.
    decided_by: Option<String>,
}

impl WriteDecider {
    /// `None` when no write plugin is bound: W-of-N alone, nothing kept.
    pub(super) fn new(service: &Service, targets: &[usize]) -> Option<WriteDecider> {
        service.policies.write.plugin()?;
        Some(WriteDecider {
            replicas: targets.iter().map(|&node| policy_index(node)).collect(),
            results: Vec::with_capacity(targets.len()),
            decided_by: None,
        })
    }

    /// Notes `slot`'s outcome (call before the tally takes it).
    pub(super) fn record(&mut self, slot: usize, outcome: &ReplicaOutcome, started_ms: u64) {
        debug_assert!(self.results.len() < self.replicas.len());
        let result = match outcome {
            ReplicaOutcome::Acked(answer) => WriteResult::Acked(answer.status.as_u16()),
            ReplicaOutcome::Superseded(_) => WriteResult::Superseded,
            ReplicaOutcome::Rejected(answer) => WriteResult::Rejected(answer.status.as_u16()),
            ReplicaOutcome::Failed(result, _) => WriteResult::Failed(*result),
        };
        self.results.push(ReplicaResult {
            node: self.replicas[slot],
            result,
            elapsed_ms: u32::try_from(clock::now_ms().saturating_sub(started_ms))
                .unwrap_or(u32::MAX),
        });
    }

    /// The answer after the latest result, if it is time to answer.
    pub(super) fn verdict(
        &mut self,
        service: &Service,
        inbound: &Inbound,
        tally: &mut Tally<'_>,
        deadline_ms: u64,
    ) -> Option<Decision> {
        let now_ms = clock::now_ms();
        let context = WriteContext {
            replicas: &self.replicas,
            write_quorum: service.spec.write_quorum(),
            write_quorum_min: service.spec.write_quorum_min(),
            deadline_remaining_ms: u32::try_from(deadline_ms.saturating_sub(now_ms))
                .unwrap_or(u32::MAX),
        };
        let decided = service.policies.decide_write(
            inbound,
            request_facts(inbound),
            &service.node_table,
            &self.results,
            &context,
        );
        let Source::Plugin { name, .. } = &decided.source else {
            let verdict = tally.verdict();
            if verdict.is_some() {
                self.decided_by = Some(native_label(&decided.source));
            }
            return verdict;
        };
        let verdict = match decided.value {
            WriteDecision::Wait if self.results.len() < self.replicas.len() => return None,
            // Nothing left to wait for: W-of-N answers.
            WriteDecision::Wait => {
                self.decided_by =
                    Some("native; the plugin waited with every replica answered".into());
                return tally.verdict();
            }
            WriteDecision::Acknowledge => tally.acknowledge(),
            WriteDecision::Fail(reason) => {
                Some(tally.fail(&format!("write policy {name}: {reason}")))
            }
        };
        if verdict.is_some() {
            self.decided_by = Some(name.to_string());
        }
        verdict
    }

    /// The `x-levee-write-policy` value for the answer.
    pub(super) fn header(&self) -> HeaderValue {
        let label = self.decided_by.as_deref().unwrap_or("native");
        HeaderValue::from_str(label).unwrap_or_else(|_| HeaderValue::from_static("native"))
    }
}

/// Who answered when the plugin did not.
fn native_label(source: &Source) -> String {
    match source {
        Source::Fallback { name, .. } => format!("native; {name} failed"),
        Source::Quarantined { name, .. } => format!("native; {name} quarantined"),
        Source::Native | Source::Plugin { .. } => "native".into(),
    }
}
