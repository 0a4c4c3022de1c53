//! `levee-policy` inputs to WIT values, WIT answers back to `levee-policy`,
//! so plugin and native answers compare with `==`.

use crate::harness::checkpoint::exports::levee::policy::checkpoint::Action;
use crate::harness::retry::exports::levee::policy::retry::{Decision, Target};
use crate::harness::routing::exports::levee::policy::routing::RoutePlan;
use crate::harness::wit;
use levee_policy as policy;

pub fn request_info(request: &policy::RequestInfo) -> wit::RequestInfo {
    wit::RequestInfo {
        service: request.service.clone(),
        method: request.method.clone(),
        path: request.path.clone(),
        routing_key: request.routing_key.clone(),
        idempotent: request.idempotent,
        headers: request.headers.clone(),
    }
}

pub fn attempt_outcome(outcome: &policy::AttemptOutcome) -> wit::AttemptOutcome {
    wit::AttemptOutcome {
        node_id: outcome.node_id.clone(),
        attempt: outcome.attempt,
        result: match outcome.result {
            policy::AttemptResult::Status(status) => wit::AttemptResult::Status(status),
            policy::AttemptResult::Error(kind) => wit::AttemptResult::Error(error_kind(kind)),
        },
        elapsed_ms: outcome.elapsed_ms,
        retry_after_ms: outcome.retry_after_ms,
    }
}

fn error_kind(kind: policy::ErrorKind) -> wit::ErrorKind {
    match kind {
        policy::ErrorKind::Connect => wit::ErrorKind::Connect,
        policy::ErrorKind::Timeout => wit::ErrorKind::Timeout,
        policy::ErrorKind::Reset => wit::ErrorKind::Reset,
        policy::ErrorKind::Protocol => wit::ErrorKind::Protocol,
        policy::ErrorKind::Other => wit::ErrorKind::Other,
    }
}

pub fn retry_context(context: &policy::RetryContext) -> wit::RetryContext {
    wit::RetryContext {
        budget_remaining: context.budget_remaining,
        deadline_remaining_ms: context.deadline_remaining_ms,
        max_attempts: context.max_attempts,
        candidates: context.candidates.clone(),
    }
}

pub fn node(node: &policy::Node) -> wit::Node {
    wit::Node {
        id: node.id.clone(),
        address: node.address.clone(),
        zone: node.zone.clone(),
        weight: node.weight,
        healthy: node.healthy,
        failure_rate_permille: node.failure_rate_permille,
        latency_ms: node.latency_ms,
    }
}

pub fn log_stats(stats: &policy::LogStats) -> wit::LogStats {
    wit::LogStats {
        records_since_checkpoint: stats.records_since_checkpoint,
        bytes_since_checkpoint: stats.bytes_since_checkpoint,
        ms_since_checkpoint: stats.ms_since_checkpoint,
        total_bytes: stats.total_bytes,
        oldest_needed_lsn: stats.oldest_needed_lsn,
        reclaimable_bytes: stats.reclaimable_bytes,
    }
}

pub fn decision(decision: Decision) -> policy::RetryDecision {
    match decision {
        Decision::Retry(plan) => policy::RetryDecision::Retry {
            delay_ms: plan.delay_ms,
            target: match plan.target {
                Target::Same => policy::Target::Same,
                Target::Next => policy::Target::Next,
                Target::Node(id) => policy::Target::Node(id),
            },
        },
        Decision::GiveUp(reason) => policy::RetryDecision::GiveUp(reason),
    }
}

pub fn route_plan(plan: RoutePlan) -> policy::RoutePlan {
    policy::RoutePlan {
        order: plan.order,
        hedge_delay_ms: plan.hedge_delay_ms,
    }
}

pub fn action(action: Action) -> policy::CheckpointAction {
    match action {
        Action::None => policy::CheckpointAction::None,
        Action::Checkpoint => policy::CheckpointAction::Checkpoint,
        Action::CheckpointAndCompact => policy::CheckpointAction::CheckpointAndCompact,
    }
}
