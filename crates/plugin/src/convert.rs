//! Conversions between `levee_policy`'s plain types and the `bindgen!`
//! types, with the size checks that belong at the boundary.
//!
//! Inbound (host → plugin) is infallible and, on the request path,
//! allocation-free: facts and outcomes are scalars, and the two lists a
//! call carries (route candidates, retry candidates) are written into
//! buffers the instance keeps between calls ([`Scratch`]). The node table's
//! strings are converted once per table ([`crate::NodeTable`]).
//!
//! Outbound (plugin → host) is where untrusted data enters: a route plan
//! longer than [`crate::Limits::route_order_max`] is refused as
//! [`Failure::InvalidOutput`]; a give-up reason longer than
//! [`crate::Limits::returned_string_bytes_max`] is truncated (it is only
//! text for logs). A route plan's order is moved, not copied. The semantic
//! checks that apply to native answers too (nodes that are not candidates,
//! duplicates, clamping) live in [`crate::sanitize`].

use levee_policy::{
    AttemptOutcome, AttemptResult, Candidate, CheckpointAction, ErrorKind, LogStats, Method,
    NodeInfo, ReplicaResult, RequestFacts, RetryContext, RetryDecision, RoutePlan, Target,
    WriteContext, WriteDecision, WriteResult,
};

use crate::bindings::{wit_checkpoint, wit_retry, wit_routing, wit_types, wit_write};
use crate::error::Failure;
use crate::host::truncate_to_char_boundary;
use crate::limits::Limits;
use crate::plan_cache::RouteTraits;

/// Buffers an instance keeps between calls, so that lowering a call's
/// lists allocates only while they grow.
pub(crate) struct Scratch {
    candidates: Vec<wit_types::Candidate>,
    retry_context: wit_types::RetryContext,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            candidates: Vec::new(),
            retry_context: wit_types::RetryContext {
                budget_remaining: 0,
                deadline_remaining_ms: 0,
                max_attempts: 0,
                candidates: Vec::new(),
            },
        }
    }

    /// `candidates` in their WIT form, in the reused buffer; with
    /// `health_flags_only`, `failure-rate-permille` and `latency-ms` are
    /// passed as 0 (a plugin that declared `cacheable-by-health-flags`).
    pub(crate) fn candidates(
        &mut self,
        candidates: &[Candidate],
        health_flags_only: bool,
    ) -> &[wit_types::Candidate] {
        self.candidates.clear();
        self.candidates.extend(candidates.iter().map(candidate));
        if health_flags_only {
            for candidate in &mut self.candidates {
                candidate.failure_rate_permille = 0;
                candidate.latency_ms = 0;
            }
        }
        &self.candidates
    }

    /// `context` in its WIT form, in the reused buffer.
    pub(crate) fn retry_context(&mut self, context: &RetryContext<'_>) -> &wit_types::RetryContext {
        let wit = &mut self.retry_context;
        wit.budget_remaining = context.budget_remaining;
        wit.deadline_remaining_ms = context.deadline_remaining_ms;
        wit.max_attempts = context.max_attempts;
        wit.candidates.clear();
        wit.candidates.extend_from_slice(context.candidates);
        wit
    }
}

pub(crate) fn node_info(node: &NodeInfo) -> wit_types::NodeInfo {
    wit_types::NodeInfo {
        id: node.id.clone(),
        address: node.address.clone(),
        zone: node.zone.clone(),
        weight: node.weight,
    }
}

pub(crate) fn candidate(candidate: &Candidate) -> wit_types::Candidate {
    wit_types::Candidate {
        node: candidate.node,
        healthy: candidate.healthy,
        failure_rate_permille: candidate.failure_rate_permille,
        latency_ms: candidate.latency_ms,
    }
}

fn method(method: Method) -> wit_types::Method {
    match method {
        Method::Get => wit_types::Method::Get,
        Method::Head => wit_types::Method::Head,
        Method::Post => wit_types::Method::Post,
        Method::Put => wit_types::Method::Put,
        Method::Delete => wit_types::Method::Delete,
        Method::Patch => wit_types::Method::Patch,
        Method::Options => wit_types::Method::Options,
        Method::Other => wit_types::Method::Other,
    }
}

pub(crate) fn facts(facts: RequestFacts) -> wit_types::RequestFacts {
    wit_types::RequestFacts {
        method: method(facts.method),
        idempotent: facts.idempotent,
    }
}

fn error_kind(kind: ErrorKind) -> wit_types::ErrorKind {
    match kind {
        ErrorKind::Connect => wit_types::ErrorKind::Connect,
        ErrorKind::Timeout => wit_types::ErrorKind::Timeout,
        ErrorKind::Reset => wit_types::ErrorKind::Reset,
        ErrorKind::Protocol => wit_types::ErrorKind::Protocol,
        ErrorKind::Other => wit_types::ErrorKind::Other,
    }
}

fn attempt_result(result: AttemptResult) -> wit_types::AttemptResult {
    match result {
        AttemptResult::Status(status) => wit_types::AttemptResult::Status(status),
        AttemptResult::Error(kind) => wit_types::AttemptResult::Error(error_kind(kind)),
    }
}

pub(crate) fn outcome(outcome: &AttemptOutcome) -> wit_types::AttemptOutcome {
    wit_types::AttemptOutcome {
        node: outcome.node,
        attempt: outcome.attempt,
        result: attempt_result(outcome.result),
        elapsed_ms: outcome.elapsed_ms,
        retry_after_ms: outcome.retry_after_ms,
    }
}

pub(crate) fn log_stats(stats: &LogStats) -> wit_types::LogStats {
    wit_types::LogStats {
        records_since_checkpoint: stats.records_since_checkpoint,
        bytes_since_checkpoint: stats.bytes_since_checkpoint,
        ms_since_checkpoint: stats.ms_since_checkpoint,
        total_bytes: stats.total_bytes,
        oldest_needed_lsn: stats.oldest_needed_lsn,
        reclaimable_bytes: stats.reclaimable_bytes,
    }
}

/// A plugin's retry decision; an over-long reason is truncated.
pub(crate) fn retry_decision(decision: wit_retry::Decision, limits: &Limits) -> RetryDecision {
    match decision {
        wit_retry::Decision::Retry(plan) => RetryDecision::Retry {
            delay_ms: plan.delay_ms,
            target: match plan.target {
                wit_retry::Target::Same => Target::Same,
                wit_retry::Target::Next => Target::Next,
                wit_retry::Target::Node(node) => Target::Node(node),
            },
        },
        wit_retry::Decision::GiveUp(mut reason) => {
            let kept =
                truncate_to_char_boundary(&reason, limits.returned_string_bytes_max as usize).len();
            reason.truncate(kept);
            RetryDecision::GiveUp(reason)
        }
    }
}

/// A plugin's route plan; refused when it lists more nodes than allowed.
pub(crate) fn route_plan(
    plan: wit_routing::RoutePlan,
    limits: &Limits,
) -> Result<RoutePlan, Failure> {
    let order_max = limits.route_order_max as usize;
    if plan.order.len() > order_max {
        return Err(Failure::InvalidOutput(format!(
            "route plan lists {} nodes, more than the {order_max} allowed",
            plan.order.len()
        )));
    }
    Ok(RoutePlan {
        order: plan.order,
        hedge_delay_ms: plan.hedge_delay_ms,
    })
}

/// What a routing plugin's `configure` declared.
pub(crate) fn route_traits(traits: wit_routing::RouteTraits) -> RouteTraits {
    RouteTraits {
        cacheable_by_health_flags: traits.cacheable_by_health_flags,
    }
}

/// A write's replica results so far, in their WIT form.
pub(crate) fn replica_results(results: &[ReplicaResult]) -> Vec<wit_write::ReplicaResult> {
    let result = |result: WriteResult| match result {
        WriteResult::Acked(status) => wit_write::WriteResult::Acked(status),
        WriteResult::Superseded => wit_write::WriteResult::Superseded,
        WriteResult::Rejected(status) => wit_write::WriteResult::Rejected(status),
        WriteResult::Failed(failed) => wit_write::WriteResult::Failed(attempt_result(failed)),
    };
    results
        .iter()
        .map(|r| wit_write::ReplicaResult {
            node: r.node,
            result: result(r.result),
            elapsed_ms: r.elapsed_ms,
        })
        .collect()
}

pub(crate) fn write_context(context: &WriteContext<'_>) -> wit_write::WriteContext {
    wit_write::WriteContext {
        replicas: context.replicas.to_vec(),
        write_quorum: context.write_quorum,
        write_quorum_min: context.write_quorum_min,
        deadline_remaining_ms: context.deadline_remaining_ms,
    }
}

/// A plugin's write decision, its reason cut to the string cap.
pub(crate) fn write_decision(decision: wit_write::WriteDecision, limits: &Limits) -> WriteDecision {
    match decision {
        wit_write::WriteDecision::Wait => WriteDecision::Wait,
        wit_write::WriteDecision::Acknowledge => WriteDecision::Acknowledge,
        wit_write::WriteDecision::Fail(mut reason) => {
            let kept =
                truncate_to_char_boundary(&reason, limits.returned_string_bytes_max as usize).len();
            reason.truncate(kept);
            WriteDecision::Fail(reason)
        }
    }
}

pub(crate) fn checkpoint_action(action: wit_checkpoint::Action) -> CheckpointAction {
    match action {
        wit_checkpoint::Action::None => CheckpointAction::None,
        wit_checkpoint::Action::Checkpoint => CheckpointAction::Checkpoint,
        wit_checkpoint::Action::CheckpointAndCompact => CheckpointAction::CheckpointAndCompact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_buffers_are_reused() {
        let mut scratch = Scratch::new();
        let many: Vec<Candidate> = (0..16)
            .map(|node| Candidate {
                node,
                healthy: node % 2 == 0,
                failure_rate_permille: node * 10,
                latency_ms: 3,
            })
            .collect();
        assert_eq!(scratch.candidates(&many, false).len(), 16);
        let capacity = scratch.candidates.capacity();
        let few = scratch.candidates(&many[..3], false);
        assert_eq!(few.len(), 3);
        assert_eq!(
            (few[2].node, few[2].healthy, few[2].failure_rate_permille),
            (2, true, 20)
        );
        let masked = scratch.candidates(&many[..3], true);
        assert_eq!(
            (
                masked[2].node,
                masked[2].healthy,
                masked[2].failure_rate_permille,
                masked[2].latency_ms
            ),
            (2, true, 0, 0)
        );
        assert_eq!(scratch.candidates.capacity(), capacity);

        let nodes = [4, 1, 7];
        let context = RetryContext {
            budget_remaining: 3,
            deadline_remaining_ms: 900,
            max_attempts: 4,
            candidates: &nodes,
        };
        let wit = scratch.retry_context(&context);
        assert_eq!(wit.candidates, vec![4, 1, 7]);
        assert_eq!(
            (
                wit.budget_remaining,
                wit.deadline_remaining_ms,
                wit.max_attempts
            ),
            (3, 900, 4)
        );
        let wit = scratch.retry_context(&RetryContext {
            candidates: &nodes[..1],
            ..context
        });
        assert_eq!(wit.candidates, vec![4]);
    }

    #[test]
    fn over_long_answers_are_refused_or_cut() {
        let limits = Limits {
            route_order_max: 2,
            returned_string_bytes_max: 3,
            ..Limits::default()
        };
        let long = wit_routing::RoutePlan {
            order: vec![0, 1, 2],
            hedge_delay_ms: None,
        };
        let error = route_plan(long, &limits).unwrap_err();
        assert_eq!(
            error,
            Failure::InvalidOutput("route plan lists 3 nodes, more than the 2 allowed".into())
        );
        let reason = retry_decision(wit_retry::Decision::GiveUp("aéb".into()), &limits);
        assert_eq!(reason, RetryDecision::GiveUp("aé".into()));
        let reason = retry_decision(wit_retry::Decision::GiveUp("abcd".into()), &limits);
        assert_eq!(reason, RetryDecision::GiveUp("abc".into()));
    }
}
