//! [`RetryPolicy`]: whether, when and where to retry a failed attempt.

use levee_policy::{AttemptOutcome, RequestInfo, RetryBackoff, RetryContext, RetryDecision};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::BoundPlugin;
use crate::env::HostEnv;
use crate::error::Failure;
use crate::kind::PolicyKind;
use crate::runtime::Runtime;
use crate::sanitize;

/// The retry kind of [`Guarded`].
pub enum RetryKind {}

/// The guarded retry policy: a bound `retry-policy` plugin, or the native
/// [`RetryBackoff`].
pub type RetryPolicy = Guarded<RetryKind>;

impl PolicyKindSpec for RetryKind {
    type Native = RetryBackoff;
    /// Native jitter draws from the same [`HostEnv`] plugins see.
    type NativeEnv = HostEnv;
    type Input<'a> = (&'a RequestInfo, &'a AttemptOutcome, &'a RetryContext);
    type Answer = RetryDecision;
    const KIND: PolicyKind = PolicyKind::Retry;

    fn ask_plugin(
        plugin: &BoundPlugin,
        &(request, outcome, context): &Self::Input<'_>,
    ) -> Result<RetryDecision, Failure> {
        plugin.call_retry(request, outcome, context)
    }

    fn ask_native(
        native: &RetryBackoff,
        env: &HostEnv,
        &(request, outcome, context): &Self::Input<'_>,
    ) -> RetryDecision {
        native.decide(request, outcome, context, env.random_u64())
    }

    fn sanitize(decision: RetryDecision, &(_, _, context): &Self::Input<'_>) -> RetryDecision {
        sanitize::retry_decision(decision, context)
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
    pub fn decide(
        &self,
        request: &RequestInfo,
        outcome: &AttemptOutcome,
        context: &RetryContext,
    ) -> Decided<RetryDecision> {
        let request = sanitize::bounded_request(request);
        self.ask((&request, outcome, context))
    }
}
