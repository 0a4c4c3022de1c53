//! [`BoundPlugin`]: a component version bound to a config and [`Limits`],
//! with its instance pool and counters. This is what a guarded policy
//! holds and swaps.
//!
//! Every call goes through [`BoundPlugin::with_instance`]: lease an
//! instance, arm the CPU deadline, call, validate the answer, then either
//! recycle the instance (valid answer) or discard it (anything else), and
//! count the outcome. A routing plugin that declared
//! `cacheable-by-health-flags` also keeps a bounded plan cache
//! ([`crate::plan_cache`]) consulted before the call. Guest faults in a row
//! ([`Failure::is_guest_fault`]) beyond [`Limits::consecutive_failures_max`]
//! quarantine the version ([`Component::quarantine`]); a call the host had
//! no room for (pool exhausted, engine full) falls back natively without
//! extending or ending the streak.

use std::sync::Arc;
use std::time::{Duration, Instant};

use levee_policy::limits::CONFIG_BYTES_MAX;
use levee_policy::{
    AttemptOutcome, Candidate, CheckpointAction, LogStats, ReplicaResult, RequestFacts,
    RequestView, RetryContext, RetryDecision, RoutePlan, WriteContext, WriteDecision,
};

use crate::component::Component;
use crate::convert;
use crate::engine::deadline_ticks;
use crate::error::{Failure, LoadError};
use crate::headers::HeaderAllowlist;
use crate::host::{PluginTag, short_version, with_request};
use crate::instance::{Instance, WorldInstance, classify};
use crate::kind::PolicyKind;
use crate::limits::{Limits, ValidateLimits};
use crate::nodes::NodeTable;
use crate::plan_cache::{self, PlanCache, RouteTraits};
use crate::pool::{InstantiateError, Pool, Recipe};
use crate::runtime::Runtime;
use crate::sanitize;
use crate::stats::{Counters, Stats};

/// What one plugin call gave, and what it cost (public only to the
/// sealed `PolicyKindSpec`; not nameable outside the crate).
pub struct Called<T> {
    pub(crate) result: Result<T, Failure>,
    /// From lease to validated answer; `None` when no plugin code ran.
    pub(crate) elapsed: Option<Duration>,
}

impl<T> Called<T> {
    pub(crate) fn map<U>(self, answer: impl FnOnce(T) -> U) -> Called<U> {
        Called {
            result: self.result.map(answer),
            elapsed: self.elapsed,
        }
    }
}

/// A component version + config + limits + instance pool + counters.
pub struct BoundPlugin {
    component: Arc<Component>,
    pool: Pool,
    counters: Arc<Counters>,
    call_deadline_ticks: u64,
    /// What `configure` declared (routing plugins only).
    traits: RouteTraits,
    /// Present when `traits.cacheable_by_health_flags` and
    /// `Limits::route_plan_cache`; starts empty with every binding.
    plan_cache: Option<PlanCache>,
}

impl Component {
    /// Binds this version to a config (the JSON handed to `configure`) and
    /// limits, with the default header allowlist (`idempotency-key` only);
    /// see [`Component::bind_with_headers`]. **Blocking** (instantiation).
    pub fn bind(
        self: &Arc<Self>,
        runtime: &Runtime,
        config_json: &str,
        limits: Limits,
    ) -> Result<Arc<BoundPlugin>, LoadError> {
        self.bind_with_headers(runtime, config_json, limits, HeaderAllowlist::default())
    }

    /// Binds this version to a config (the JSON handed to `configure`),
    /// limits and the request headers its `request.header` may read:
    /// validates the limits, creates the pool and one configured instance,
    /// so a config the plugin rejects fails here, with the plugin's reason.
    /// **Blocking** (instantiation).
    pub fn bind_with_headers(
        self: &Arc<Self>,
        runtime: &Runtime,
        config_json: &str,
        limits: Limits,
        headers: HeaderAllowlist,
    ) -> Result<Arc<BoundPlugin>, LoadError> {
        limits.validate(runtime.caps())?;
        if config_json.len() > CONFIG_BYTES_MAX {
            return Err(LoadError::ConfigTooLarge {
                size_bytes: config_json.len(),
                max_bytes: CONFIG_BYTES_MAX,
            });
        }
        let counters = Arc::new(Counters::default());
        let tag = Arc::new(PluginTag {
            name: self.name_tag(),
            version: self.version_tag(),
        });
        let call_deadline_ticks = deadline_ticks(limits.call_timeout_ms, runtime.epoch_tick_ms());
        let recipe = Recipe {
            runtime: runtime.clone(),
            compiled: self.compiled().clone(),
            tag,
            counters: counters.clone(),
            limits,
            headers,
            config: config_json.to_string(),
        };
        let pool = Pool::new(recipe);
        let traits = pool.prime().map_err(|e| match e {
            InstantiateError::ConfigRejected(reason) => LoadError::ConfigRejected(reason),
            InstantiateError::Failed(failure) => LoadError::Instantiate(failure.to_string()),
        })?;
        let plan_cache = (self.kind() == PolicyKind::Routing
            && traits.cacheable_by_health_flags
            && pool.recipe().limits.route_plan_cache)
            .then(PlanCache::new);
        Ok(Arc::new(BoundPlugin {
            component: self.clone(),
            pool,
            counters,
            call_deadline_ticks,
            traits,
            plan_cache,
        }))
    }
}

impl BoundPlugin {
    pub fn component(&self) -> &Arc<Component> {
        &self.component
    }

    pub fn name(&self) -> &str {
        self.component.name()
    }

    pub fn version(&self) -> &str {
        self.component.version()
    }

    pub fn kind(&self) -> PolicyKind {
        self.component.kind()
    }

    /// The JSON handed to `configure`.
    pub fn config(&self) -> &str {
        &self.pool.recipe().config
    }

    pub fn limits(&self) -> &Limits {
        &self.pool.recipe().limits
    }

    /// The request headers the plugin may read.
    pub fn headers(&self) -> &HeaderAllowlist {
        &self.pool.recipe().headers
    }

    /// What the plugin's `configure` declared (all false but for a routing
    /// plugin that promised something).
    pub fn route_traits(&self) -> RouteTraits {
        self.traits
    }

    /// Whether the version is quarantined (calls are not made).
    pub fn is_quarantined(&self) -> bool {
        self.component.is_quarantined()
    }

    /// A snapshot of the counters and pool.
    pub fn stats(&self) -> Stats {
        let (pool_idle, pool_live) = self.pool.occupancy();
        Stats {
            name: self.name().to_string(),
            version: self.version().to_string(),
            kind: self.kind(),
            quarantined: self.is_quarantined(),
            quarantine_reason: self.component.quarantine_reason(),
            pool_idle,
            pool_live,
            route_traits: self.traits,
            plan_cache: self.plan_cache.as_ref().map(PlanCache::stats),
            counters: self.counters.snapshot(),
        }
    }

    pub(crate) fn record_quarantined_call(&self) {
        self.counters.record_quarantined_call();
    }

    /// The plugin's retry decision, before host sanitization. The
    /// instance gets `nodes` first if it has another table.
    pub(crate) fn call_retry(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
    ) -> Called<RetryDecision> {
        let (facts, outcome) = (convert::facts(facts), convert::outcome(outcome));
        let limits = self.limits();
        self.with_instance(|instance| {
            instance.give_nodes(nodes)?;
            let Instance {
                store,
                world: WorldInstance::Retry(world),
                scratch,
                ..
            } = instance
            else {
                return Err(kind_mismatch(PolicyKind::Retry));
            };
            let context = scratch.retry_context(context);
            let answer = with_request(store, request, |store| {
                world
                    .levee_policy_retry()
                    .call_decide(store, facts, outcome, context)
            });
            let decision = answer.map_err(|e| classify(store, &e))?;
            Ok(convert::retry_decision(decision, limits))
        })
    }

    /// The plugin's route plan, before host sanitization. The instance
    /// gets `nodes` first if it has another table.
    ///
    /// A plugin that declared `cacheable-by-health-flags` is first looked
    /// up in the plan cache: a hit answers without a call (counted as
    /// `cached`, not as a call: no latency sample, and the failure streak
    /// is neither reset nor extended). A miss calls the plugin with the
    /// candidates' health scalars as 0, and caches the (sanitized) plan
    /// unless the call read the request, the clock or the random source.
    pub(crate) fn call_route(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        candidates: &[Candidate],
    ) -> Called<RoutePlan> {
        let plan_only = |(plan, _cacheable)| plan;
        let Some(cache) = &self.plan_cache else {
            // A declared plugin sees its health scalars as 0 whether or
            // not this binding caches (`route_plan_cache`): what it is
            // passed does not depend on the operator's setting.
            let declared = self.traits.cacheable_by_health_flags;
            return self
                .call_route_uncached(request, facts, nodes, candidates, declared)
                .map(plan_only);
        };
        let Some(key) = plan_cache::Key::of(nodes.epoch(), facts, candidates) else {
            return self
                .call_route_uncached(request, facts, nodes, candidates, true)
                .map(plan_only);
        };
        if let Some(plan) = cache.get(&key) {
            self.counters.record_cached();
            return Called {
                result: Ok(plan),
                elapsed: None,
            };
        }
        let mut called = self.call_route_uncached(request, facts, nodes, candidates, true);
        if let Ok((plan, cacheable)) = &mut called.result
            && *cacheable
        {
            // The same cleaning the guarded policy applies (it is
            // idempotent): the cache keeps only what a caller may get.
            *plan = sanitize::route_plan(std::mem::take(plan), candidates);
            cache.insert(&key, plan);
        }
        called.map(plan_only)
    }

    /// One `route` call; with whether its plan may be cached (it read
    /// neither the request, nor the clock, nor the random source).
    fn call_route_uncached(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        candidates: &[Candidate],
        health_flags_only: bool,
    ) -> Called<(RoutePlan, bool)> {
        let facts = convert::facts(facts);
        let limits = self.limits();
        self.with_instance(|instance| {
            instance.give_nodes(nodes)?;
            let Instance {
                store,
                world: WorldInstance::Routing(world),
                scratch,
                ..
            } = instance
            else {
                return Err(kind_mismatch(PolicyKind::Routing));
            };
            let candidates = scratch.candidates(candidates, health_flags_only);
            let answer = with_request(store, request, |store| {
                world
                    .levee_policy_routing()
                    .call_route(store, facts, candidates)
            });
            let plan = answer.map_err(|e| classify(store, &e))?;
            let cacheable = !store.data().read_ambient();
            Ok((convert::route_plan(plan, limits)?, cacheable))
        })
    }

    /// The plugin's checkpoint action.
    pub(crate) fn call_checkpoint(&self, stats: &LogStats) -> Called<CheckpointAction> {
        let stats = convert::log_stats(stats);
        self.with_instance(|instance| {
            let Instance {
                store,
                world: WorldInstance::Checkpoint(world),
                ..
            } = instance
            else {
                return Err(kind_mismatch(PolicyKind::Checkpoint));
            };
            let answer = world
                .levee_policy_checkpoint()
                .call_decide(&mut *store, stats);
            let action = answer.map_err(|e| classify(store, &e))?;
            Ok(convert::checkpoint_action(action))
        })
    }

    /// The plugin's write decision. An `acknowledge` below the context's
    /// `write_quorum_min` acks is an invalid answer (the host never
    /// acknowledges below its floor, whatever the plugin says). The
    /// instance gets `nodes` first if it has another table.
    pub(crate) fn call_write(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        results: &[ReplicaResult],
        context: &WriteContext<'_>,
    ) -> Called<WriteDecision> {
        let facts = convert::facts(facts);
        let (wit_results, wit_context) = (
            convert::replica_results(results),
            convert::write_context(context),
        );
        let limits = self.limits();
        self.with_instance(|instance| {
            instance.give_nodes(nodes)?;
            let Instance {
                store,
                world: WorldInstance::Write(world),
                ..
            } = instance
            else {
                return Err(kind_mismatch(PolicyKind::Write));
            };
            let answer = with_request(store, request, |store| {
                world
                    .levee_policy_write()
                    .call_decide(store, facts, &wit_results, &wit_context)
            });
            let decision = answer.map_err(|e| classify(store, &e))?;
            let decision = convert::write_decision(decision, limits);
            check_write_floor(&decision, results, context)?;
            Ok(decision)
        })
    }

    /// Runs one call on a leased instance and accounts for it. The one
    /// clock pair of the call: its latency feeds the stats and is handed
    /// back for the caller's metrics.
    fn with_instance<T>(
        &self,
        call: impl FnOnce(&mut Instance) -> Result<T, Failure>,
    ) -> Called<T> {
        let started = Instant::now();
        let result = self.pool.acquire().and_then(|mut lease| {
            let instance = lease.instance();
            instance.begin_call(self.call_deadline_ticks);
            let result = call(instance);
            if result.is_ok() {
                lease.recycle();
            }
            // Otherwise the lease drops here and the instance is discarded.
            result
        });
        let latency = started.elapsed();
        match &result {
            Ok(_) => self.counters.record_ok(latency),
            Err(failure) => self.on_failure(failure, latency),
        }
        Called {
            result,
            elapsed: Some(latency),
        }
    }

    /// Counts a failed call; a guest fault extends the failure streak and
    /// may quarantine the version, a host capacity failure does neither.
    fn on_failure(&self, failure: &Failure, latency: Duration) {
        let streak = self.counters.record_failure(failure, latency);
        tracing::debug!(plugin = self.name(), version = short_version(self.version()), %failure, ?streak, "plugin call failed; native policy answers");
        let Some(streak) = streak else {
            return;
        };
        if streak >= self.limits().consecutive_failures_max {
            let reason = format!("{streak} consecutive failures, the last: {failure}");
            if self.component.quarantine(&reason) {
                tracing::warn!(
                    plugin = self.name(),
                    version = short_version(self.version()),
                    %reason,
                    "plugin version quarantined; the native policy serves until a new version is bound"
                );
            }
        }
    }
}

fn kind_mismatch(expected: PolicyKind) -> Failure {
    // Guarded policies check the kind at bind time, so this is a bug; fail
    // the call (native answers) rather than the process.
    debug_assert!(false, "a {expected} call reached a plugin of another kind");
    Failure::InvalidOutput(format!("internal: the bound plugin is not a {expected}"))
}

impl std::fmt::Debug for BoundPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundPlugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("kind", &self.kind())
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "bound_tests.rs"]
mod tests;

/// Refuses an `acknowledge` with fewer acks than the host's floor.
fn check_write_floor(
    decision: &WriteDecision,
    results: &[ReplicaResult],
    context: &WriteContext<'_>,
) -> Result<(), Failure> {
    if *decision != WriteDecision::Acknowledge {
        return Ok(());
    }
    let acks = levee_policy::write::acks(results);
    let floor = context.write_quorum_min.max(1);
    if acks < floor {
        return Err(Failure::InvalidOutput(format!(
            "acknowledged a write with {acks} acks, below the service's write_quorum_min of {floor}"
        )));
    }
    Ok(())
}
