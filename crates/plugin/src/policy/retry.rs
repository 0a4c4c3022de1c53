//! [`RetryPolicy`]: whether, when and where to retry a failed attempt.

use levee_policy::{
    AttemptOutcome, RequestFacts, RequestView, RetryBackoff, RetryContext, RetryDecision,
};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::{BoundPlugin, Called};
use crate::env::HostEnv;
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

impl PolicyKindSpec for RetryKind {
    type Native = RetryBackoff;
    /// Native jitter draws from the same [`HostEnv`] plugins see.
    type NativeEnv = HostEnv;
    type Input<'a> = RetryInput<'a>;
    type Answer = RetryDecision;
    const KIND: PolicyKind = PolicyKind::Retry;

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
