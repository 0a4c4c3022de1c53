//! `levee-policy` inputs to WIT values, WIT answers back to `levee-policy`,
//! so plugin and native answers compare with `==`.

use crate::harness::checkpoint::exports::levee::policy::checkpoint::Action;
use crate::harness::retry::exports::levee::policy::retry::{Decision, Target};
use crate::harness::routing::exports::levee::policy::routing::RoutePlan;
use crate::harness::wit;
use levee_policy as policy;

pub fn facts(facts: policy::RequestFacts) -> wit::RequestFacts {
    wit::RequestFacts {
        method: method(facts.method),
        idempotent: facts.idempotent,
    }
}

fn method(method: policy::Method) -> wit::Method {
    match method {
        policy::Method::Get => wit::Method::Get,
        policy::Method::Head => wit::Method::Head,
        policy::Method::Post => wit::Method::Post,
        policy::Method::Put => wit::Method::Put,
        policy::Method::Delete => wit::Method::Delete,
        policy::Method::Patch => wit::Method::Patch,
        policy::Method::Options => wit::Method::Options,
        policy::Method::Other => wit::Method::Other,
    }
}

pub fn attempt_outcome(outcome: &policy::AttemptOutcome) -> wit::AttemptOutcome {
    wit::AttemptOutcome {
        node: outcome.node,
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

pub fn retry_context(context: &policy::RetryContext<'_>) -> wit::RetryContext {
    wit::RetryContext {
        budget_remaining: context.budget_remaining,
        deadline_remaining_ms: context.deadline_remaining_ms,
        max_attempts: context.max_attempts,
        candidates: context.candidates.to_vec(),
    }
}

pub fn node_info(node: &policy::NodeInfo) -> wit::NodeInfo {
    wit::NodeInfo {
        id: node.id.clone(),
        address: node.address.clone(),
        zone: node.zone.clone(),
        weight: node.weight,
    }
}

pub fn candidate(candidate: &policy::Candidate) -> wit::Candidate {
    wit::Candidate {
        node: candidate.node,
        healthy: candidate.healthy,
        failure_rate_permille: candidate.failure_rate_permille,
        latency_ms: candidate.latency_ms,
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
                Target::Node(node) => policy::Target::Node(node),
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
