//! Conversions between `levee_policy`'s plain types and the `bindgen!`
//! types, with the size checks that belong at the boundary.
//!
//! Inbound (host → plugin) is infallible. Outbound (plugin → host) is where
//! untrusted data enters: a route plan longer than
//! [`crate::Limits::route_order_max`] is refused as
//! [`Failure::InvalidOutput`]; a give-up reason longer than
//! [`crate::Limits::returned_string_bytes_max`] is truncated (it is only
//! text for logs). The semantic checks that apply to native answers too
//! (unknown ids, clamping) live in [`crate::sanitize`].

use levee_policy::{
    AttemptOutcome, AttemptResult, CheckpointAction, ErrorKind, LogStats, Node, RequestInfo,
    RetryContext, RetryDecision, RoutePlan, Target,
};

use crate::bindings::{wit_checkpoint, wit_retry, wit_routing, wit_types};
use crate::error::Failure;
use crate::host::truncate_to_char_boundary;
use crate::limits::Limits;

pub(crate) fn request(request: &RequestInfo) -> wit_types::RequestInfo {
    wit_types::RequestInfo {
        service: request.service.clone(),
        method: request.method.clone(),
        path: request.path.clone(),
        routing_key: request.routing_key.clone(),
        idempotent: request.idempotent,
        headers: request.headers.clone(),
    }
}

pub(crate) fn node(node: &Node) -> wit_types::Node {
    wit_types::Node {
        id: node.id.clone(),
        address: node.address.clone(),
        zone: node.zone.clone(),
        weight: node.weight,
        healthy: node.healthy,
        failure_rate_permille: node.failure_rate_permille,
        latency_ms: node.latency_ms,
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

pub(crate) fn outcome(outcome: &AttemptOutcome) -> wit_types::AttemptOutcome {
    wit_types::AttemptOutcome {
        node_id: outcome.node_id.clone(),
        attempt: outcome.attempt,
        result: match outcome.result {
            AttemptResult::Status(status) => wit_types::AttemptResult::Status(status),
            AttemptResult::Error(kind) => wit_types::AttemptResult::Error(error_kind(kind)),
        },
        elapsed_ms: outcome.elapsed_ms,
        retry_after_ms: outcome.retry_after_ms,
    }
}

pub(crate) fn retry_context(context: &RetryContext) -> wit_types::RetryContext {
    wit_types::RetryContext {
        budget_remaining: context.budget_remaining,
        deadline_remaining_ms: context.deadline_remaining_ms,
        max_attempts: context.max_attempts,
        candidates: context.candidates.clone(),
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
                wit_retry::Target::Node(id) => Target::Node(id),
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

/// A plugin's route plan; refused when it lists more ids than allowed.
pub(crate) fn route_plan(
    plan: wit_routing::RoutePlan,
    limits: &Limits,
) -> Result<RoutePlan, Failure> {
    let order_max = limits.route_order_max as usize;
    if plan.order.len() > order_max {
        return Err(Failure::InvalidOutput(format!(
            "route plan lists {} node ids, more than the {order_max} allowed",
            plan.order.len()
        )));
    }
    Ok(RoutePlan {
        order: plan.order,
        hedge_delay_ms: plan.hedge_delay_ms,
    })
}

pub(crate) fn checkpoint_action(action: wit_checkpoint::Action) -> CheckpointAction {
    match action {
        wit_checkpoint::Action::None => CheckpointAction::None,
        wit_checkpoint::Action::Checkpoint => CheckpointAction::Checkpoint,
        wit_checkpoint::Action::CheckpointAndCompact => CheckpointAction::CheckpointAndCompact,
    }
}
