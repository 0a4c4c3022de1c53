//! Conversions between the `wit-bindgen` types of the retry world and the
//! plain-Rust types of `levee-policy`. Kept apart from the glue so that any
//! crate generating the `retry-policy` world can include this file (the zoo's
//! `flaky` plugin does) instead of copying it.
//!
//! Everything converted per call is a scalar or borrowed: the only
//! allocations of a `decide` are the ones the bindings make (the
//! candidates list in, a give-up reason out).

#[path = "../../common/facts.rs"]
mod facts;

use crate::exports::levee::policy::retry::{Decision, RetryPlan, Target};
use crate::levee::policy::types as wit;
use levee_policy as policy;

pub use facts::facts;

pub fn attempt_outcome(outcome: wit::AttemptOutcome) -> policy::AttemptOutcome {
    policy::AttemptOutcome {
        node: outcome.node,
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

/// Borrows the candidates the bindings already copied in.
pub fn retry_context(context: &wit::RetryContext) -> policy::RetryContext<'_> {
    policy::RetryContext {
        budget_remaining: context.budget_remaining,
        deadline_remaining_ms: context.deadline_remaining_ms,
        max_attempts: context.max_attempts,
        candidates: &context.candidates,
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
        policy::Target::Node(node) => Target::Node(node),
    }
}
