//! Conversions between the `wit-bindgen` types of the retry world and the
//! plain-Rust types of `levee-policy`. Kept apart from the glue so that any
//! crate generating the `retry-policy` world can include this file (the zoo's
//! `flaky` plugin does) instead of copying it.

use crate::exports::levee::policy::retry::{Decision, RetryPlan, Target};
use crate::levee::policy::types as wit;
use levee_policy as policy;

pub fn request_info(request: wit::RequestInfo) -> policy::RequestInfo {
    policy::RequestInfo {
        service: request.service,
        method: request.method,
        path: request.path,
        routing_key: request.routing_key,
        idempotent: request.idempotent,
        headers: request.headers,
    }
}

pub fn attempt_outcome(outcome: wit::AttemptOutcome) -> policy::AttemptOutcome {
    policy::AttemptOutcome {
        node_id: outcome.node_id,
        attempt: outcome.attempt,
        result: attempt_result(outcome.result),
        elapsed_ms: outcome.elapsed_ms,
        retry_after_ms: outcome.retry_after_ms,
    }
}

fn attempt_result(result: wit::AttemptResult) -> policy::AttemptResult {
    match result {
        wit::AttemptResult::Status(status) => policy::AttemptResult::Status(status),
        wit::AttemptResult::Error(kind) => policy::AttemptResult::Error(error_kind(kind)),
    }
}

fn error_kind(kind: wit::ErrorKind) -> policy::ErrorKind {
    match kind {
        wit::ErrorKind::Connect => policy::ErrorKind::Connect,
        wit::ErrorKind::Timeout => policy::ErrorKind::Timeout,
        wit::ErrorKind::Reset => policy::ErrorKind::Reset,
        wit::ErrorKind::Protocol => policy::ErrorKind::Protocol,
        wit::ErrorKind::Other => policy::ErrorKind::Other,
    }
}

pub fn retry_context(context: wit::RetryContext) -> policy::RetryContext {
    policy::RetryContext {
        budget_remaining: context.budget_remaining,
        deadline_remaining_ms: context.deadline_remaining_ms,
        max_attempts: context.max_attempts,
        candidates: context.candidates,
    }
}

pub fn decision(decision: policy::RetryDecision) -> Decision {
    match decision {
        policy::RetryDecision::Retry {
            delay_ms,
            target: next,
        } => Decision::Retry(RetryPlan {
            delay_ms,
            target: target(next),
        }),
        policy::RetryDecision::GiveUp(reason) => Decision::GiveUp(reason),
    }
}

fn target(target: policy::Target) -> Target {
    match target {
        policy::Target::Same => Target::Same,
        policy::Target::Next => Target::Next,
        policy::Target::Node(id) => Target::Node(id),
    }
}
