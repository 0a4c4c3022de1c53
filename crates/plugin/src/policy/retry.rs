//! [`RetryPolicy`]: whether, when and where to retry a failed attempt.

use std::sync::Arc;

use arc_swap::ArcSwap;
use levee_policy::{AttemptOutcome, RequestInfo, RetryBackoff, RetryContext, RetryDecision};

use super::{Decided, Slot};
use crate::bound::BoundPlugin;
use crate::env::HostEnv;
use crate::error::LoadError;
use crate::kind::PolicyKind;
use crate::runtime::Runtime;
use crate::sanitize;
use crate::stats::Stats;

/// The guarded retry policy: a bound `retry-policy` plugin, or the native
/// [`RetryBackoff`].
pub struct RetryPolicy {
    slot: Slot,
    native: ArcSwap<RetryBackoff>,
    env: HostEnv,
}

impl RetryPolicy {
    /// Native `native` until a plugin is bound; jitter comes from the
    /// runtime's [`HostEnv`], as for plugins.
    pub fn new(runtime: &Runtime, native: RetryBackoff) -> RetryPolicy {
        RetryPolicy::with_env(runtime.env().clone(), native)
    }

    /// Like [`RetryPolicy::new`] with an explicit random source.
    pub fn with_env(env: HostEnv, native: RetryBackoff) -> RetryPolicy {
        RetryPolicy {
            slot: Slot::new(PolicyKind::Retry),
            native: ArcSwap::from_pointee(native),
            env,
        }
    }

    /// Atomically replaces the bound plugin (`None`: native only). Refuses
    /// a plugin of another kind. Returns the previous one.
    pub fn bind(
        &self,
        plugin: Option<Arc<BoundPlugin>>,
    ) -> Result<Option<Arc<BoundPlugin>>, LoadError> {
        self.slot.bind(plugin)
    }

    pub fn plugin(&self) -> Option<Arc<BoundPlugin>> {
        self.slot.plugin()
    }

    /// Replaces the native fallback (e.g. after a config change).
    pub fn set_native(&self, native: RetryBackoff) {
        self.native.store(Arc::new(native));
    }

    pub fn native(&self) -> Arc<RetryBackoff> {
        self.native.load_full()
    }

    /// Decides after a failed attempt. Never fails; see [`Decided::source`].
    pub fn decide(
        &self,
        request: &RequestInfo,
        outcome: &AttemptOutcome,
        context: &RetryContext,
    ) -> Decided<RetryDecision> {
        let request = sanitize::bounded_request(request);
        let mut decided = self.slot.decide(
            |plugin| plugin.call_retry(&request, outcome, context),
            || {
                self.native
                    .load()
                    .decide(&request, outcome, context, self.env.random_u64())
            },
        );
        decided.value = sanitize::retry_decision(decided.value, context);
        decided
    }

    /// The bound plugin's counters, if one is bound.
    pub fn stats(&self) -> Option<Stats> {
        self.slot.stats()
    }

    /// Calls answered natively because no plugin was bound.
    pub fn native_calls(&self) -> u64 {
        self.slot.native_calls()
    }
}
