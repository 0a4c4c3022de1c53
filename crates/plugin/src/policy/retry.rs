//! [`RetryPolicy`]: whether, when and where to retry a failed attempt.

use std::sync::Arc;

use levee_policy::{
    AttemptOutcome, AttemptResult, NodeIndex, RequestFacts, RequestView, RetryBackoff,
    RetryContext, RetryDecision, Target,
};
use serde_json::{Value, json};

use super::Decided;
use super::guarded::Guarded;
use super::recorded_request::RecordedRequest;
use super::spec::{PolicyKindSpec, replay_with};
use super::tables::TableCache;
use crate::bound::{BoundPlugin, Called};
use crate::env::HostEnv;
use crate::headers::HeaderAllowlist;
use crate::kind::PolicyKind;
use crate::nodes::NodeTable;
use crate::runtime::Runtime;
use crate::sanitize;

/// The retry kind of [`Guarded`].
pub enum RetryKind {}

/// The guarded retry policy: a bound `retry-policy` plugin, or the native
/// [`RetryBackoff`].
pub type RetryPolicy = Guarded<RetryKind>;

/// The inputs of one retry decision.
pub struct RetryInput<'a> {
    request: &'a dyn RequestView,
    facts: RequestFacts,
    nodes: &'a NodeTable,
    outcome: &'a AttemptOutcome,
    context: &'a RetryContext<'a>,
}

/// The inputs of one retry decision, recorded.
pub struct RetryRecord {
    request: RecordedRequest,
    facts: RequestFacts,
    nodes: Arc<NodeTable>,
    outcome: AttemptOutcome,
    budget_remaining: u32,
    deadline_remaining_ms: u32,
    max_attempts: u32,
    candidates: Vec<NodeIndex>,
}

impl PolicyKindSpec for RetryKind {
    type Native = RetryBackoff;
    /// Native jitter draws from the same [`HostEnv`] plugins see.
    type NativeEnv = HostEnv;
    type Input<'a> = RetryInput<'a>;
    type Answer = RetryDecision;
    type Owned = RetryRecord;
    const KIND: PolicyKind = PolicyKind::Retry;
    /// Asked only when something happened: every call is kept.
    const RECORD_ONE_IN: u64 = 1;

    fn ask_plugin(plugin: &BoundPlugin, input: &RetryInput<'_>) -> Called<RetryDecision> {
        plugin.call_retry(
            input.request,
            input.facts,
            input.nodes,
            input.outcome,
            input.context,
        )
    }

    fn ask_native(native: &RetryBackoff, env: &HostEnv, input: &RetryInput<'_>) -> RetryDecision {
        native.decide(input.facts, input.outcome, input.context, env.random_u64())
    }

    fn sanitize(decision: RetryDecision, input: &RetryInput<'_>) -> RetryDecision {
        sanitize::retry_decision(decision, input.context)
    }

    fn own(input: &RetryInput<'_>, headers: &HeaderAllowlist, tables: &TableCache) -> RetryRecord {
        RetryRecord {
            request: RecordedRequest::of(input.request, headers),
            facts: input.facts,
            nodes: tables.owned(input.nodes),
            outcome: *input.outcome,
            budget_remaining: input.context.budget_remaining,
            deadline_remaining_ms: input.context.deadline_remaining_ms,
            max_attempts: input.context.max_attempts,
            candidates: input.context.candidates.to_vec(),
        }
    }

    fn replay(plugin: &BoundPlugin, record: &RetryRecord) -> Called<RetryDecision> {
        let context = RetryContext {
            budget_remaining: record.budget_remaining,
            deadline_remaining_ms: record.deadline_remaining_ms,
            max_attempts: record.max_attempts,
            candidates: &record.candidates,
        };
        let input = RetryInput {
            request: &record.request,
            facts: record.facts,
            nodes: &record.nodes,
            outcome: &record.outcome,
            context: &context,
        };
        replay_with::<RetryKind>(plugin, &input)
    }

    fn input_json(record: &RetryRecord) -> Value {
        let outcome = &record.outcome;
        json!({
            "request": record.request.to_json(),
            "facts": super::facts_json(record.facts),
            "outcome": {
                "node": super::node_json(&record.nodes, outcome.node),
                "attempt": outcome.attempt,
                "result": attempt_result_json(outcome.result),
                "elapsed_ms": outcome.elapsed_ms,
                "retry_after_ms": outcome.retry_after_ms,
            },
            "context": {
                "budget_remaining": record.budget_remaining,
                "deadline_remaining_ms": record.deadline_remaining_ms,
                "max_attempts": record.max_attempts,
                "candidates": record.candidates.iter()
                    .map(|node| super::node_json(&record.nodes, *node)).collect::<Vec<_>>(),
            },
        })
    }

    fn answer_json(decision: &RetryDecision) -> Value {
        match decision {
            RetryDecision::Retry { delay_ms, target } => {
                json!({ "retry": { "delay_ms": delay_ms, "target": target_json(*target) } })
            }
            RetryDecision::GiveUp(reason) => json!({ "give_up": reason }),
        }
    }

    fn decision_kind(decision: &RetryDecision) -> &'static str {
        match decision {
            RetryDecision::Retry { .. } => "retry",
            RetryDecision::GiveUp(_) => "give-up",
        }
    }

    /// Same kind and, for a retry, the same target; delays differ by
    /// jitter and reasons by wording.
    fn agree(live: &RetryDecision, other: &RetryDecision) -> bool {
        match (live, other) {
            (RetryDecision::Retry { target: a, .. }, RetryDecision::Retry { target: b, .. }) => {
                a == b
            }
            (RetryDecision::GiveUp(_), RetryDecision::GiveUp(_)) => true,
            _ => false,
        }
    }
}

/// An attempt's result as the admin API shows it.
pub(super) fn attempt_result_json(result: AttemptResult) -> Value {
    match result {
        AttemptResult::Status(status) => json!({ "status": status }),
        AttemptResult::Error(kind) => json!({ "error": format!("{kind:?}").to_lowercase() }),
    }
}

fn target_json(target: Target) -> Value {
    match target {
        Target::Same => json!("same"),
        Target::Next => json!("next"),
        Target::Node(node) => json!({ "node": node }),
    }
}

impl RetryPolicy {
    /// Native `native` until a plugin is bound; jitter comes from the
    /// runtime's [`HostEnv`], as for plugins.
    pub fn new(runtime: &Runtime, native: RetryBackoff) -> RetryPolicy {
        RetryPolicy::with_env(runtime.env().clone(), native)
    }

    /// Like [`RetryPolicy::new`] with an explicit random source.
    pub fn with_env(env: HostEnv, native: RetryBackoff) -> RetryPolicy {
        Guarded::with_native(native, env)
    }

    /// Decides after a failed attempt. Never fails; see [`Decided::source`].
    ///
    /// `request` is lent to the plugin for this call only (it reads what it
    /// needs through the WIT `request` functions); `nodes` is the service's
    /// node table, which `outcome.node` and `context.candidates` index
    /// (given to a pooled instance only when it has another table). A
    /// target node that is not a candidate comes back as `next`.
    pub fn decide(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
    ) -> Decided<RetryDecision> {
        self.ask(RetryInput {
            request,
            facts,
            nodes,
            outcome,
            context,
        })
    }
}
