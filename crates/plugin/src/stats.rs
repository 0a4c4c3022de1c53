//! Per-bound-plugin counters and their serializable snapshot, [`Stats`].
//!
//! The request path only does relaxed atomic increments here (no locks, no
//! allocation on success: two increments per valid answer, its latency
//! bucket and the latency sum; the call and ok counts are derived at
//! snapshot time from the buckets); the admin API and the metrics
//! exporter read a
//! [`Stats`] snapshot. Latency is kept as a fixed set of power-of-two
//! microsecond buckets so memory stays constant however many calls run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::error::Failure;
use crate::plan_cache::{PlanCacheStats, RouteTraits};

/// Latency buckets: `<= 1 µs, <= 2 µs, ..., <= 2^(N-2) µs, more`.
pub const LATENCY_BUCKETS: usize = 18;

/// Upper bounds, in µs, of all but the last bucket.
pub fn latency_bucket_bounds_us() -> [u64; LATENCY_BUCKETS - 1] {
    std::array::from_fn(|i| 1u64 << i)
}

/// Live counters of one [`crate::BoundPlugin`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    fallbacks: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_limits: AtomicU64,
    invalid_outputs: AtomicU64,
    pool_exhausted: AtomicU64,
    host_capacity: AtomicU64,
    instantiate_failures: AtomicU64,
    quarantined_calls: AtomicU64,
    cached: AtomicU64,
    instantiations: AtomicU64,
    discarded_instances: AtomicU64,
    logs_dropped: AtomicU64,
    node_tables_given: AtomicU64,
    consecutive_failures: AtomicU32,
    latency_ns_total: AtomicU64,
    latency_ns_max: AtomicU64,
    /// Every call (ok or failed) lands in exactly one bucket: their sum
    /// is the call count.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS],
    last_failure: Mutex<Option<Failure>>,
}

impl Counters {
    /// A call that the plugin answered validly. Resets the failure streak.
    pub(crate) fn record_ok(&self, latency: Duration) {
        // Counted by its latency bucket (`ok` = calls - fallbacks). Written only when there is a streak to end: the common case
        // leaves the cache line shared.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        self.record_latency(latency);
    }

    /// A call whose plugin answer was not used. A guest fault extends the
    /// failure streak and returns it, this one included; a host capacity
    /// failure ([`Failure::is_guest_fault`] false) leaves the streak as it
    /// is and returns `None`.
    pub(crate) fn record_failure(&self, failure: &Failure, latency: Duration) -> Option<u32> {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let counter = match failure {
            Failure::Trap(_) => &self.traps,
            Failure::Timeout => &self.timeouts,
            Failure::MemoryLimit => &self.memory_limits,
            Failure::InvalidOutput(_) => &self.invalid_outputs,
            Failure::PoolExhausted => &self.pool_exhausted,
            Failure::HostCapacity(_) => &self.host_capacity,
            Failure::Instantiate(_) => &self.instantiate_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.record_latency(latency);
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(failure.clone());
        }
        failure.is_guest_fault().then(|| {
            self.consecutive_failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        })
    }

    /// A call served natively because the version is quarantined.
    pub(crate) fn record_quarantined_call(&self) {
        self.quarantined_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A route plan answered from the plan cache, without a call.
    pub(crate) fn record_cached(&self) {
        self.cached.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_instantiation(&self) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_discard(&self) {
        self.discarded_instances.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_log_dropped(&self) {
        self.logs_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_node_table_given(&self) {
        self.node_tables_given.fetch_add(1, Ordering::Relaxed);
    }

    fn record_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns_total.fetch_add(ns, Ordering::Relaxed);
        if ns > self.latency_ns_max.load(Ordering::Relaxed) {
            self.latency_ns_max.fetch_max(ns, Ordering::Relaxed);
        }
        self.latency_buckets[latency_bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let latency_buckets: Vec<u64> = self.latency_buckets.iter().map(load).collect();
        let calls = latency_buckets.iter().sum::<u64>();
        // A failure counts its fallback just before its bucket: a racing
        // snapshot may see one more fallback than failed calls.
        let fallbacks = load(&self.fallbacks).min(calls);
        CounterSnapshot {
            calls,
            ok: calls - fallbacks,
            fallbacks,
            traps: load(&self.traps),
            timeouts: load(&self.timeouts),
            memory_limits: load(&self.memory_limits),
            invalid_outputs: load(&self.invalid_outputs),
            pool_exhausted: load(&self.pool_exhausted),
            host_capacity: load(&self.host_capacity),
            instantiate_failures: load(&self.instantiate_failures),
            quarantined_calls: load(&self.quarantined_calls),
            cached: load(&self.cached),
            instantiations: load(&self.instantiations),
            discarded_instances: load(&self.discarded_instances),
            logs_dropped: load(&self.logs_dropped),
            node_tables_given: load(&self.node_tables_given),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            latency_ns_total: load(&self.latency_ns_total),
            latency_ns_max: load(&self.latency_ns_max),
            latency_buckets,
            last_failure: self.last_failure.lock().ok().and_then(|last| last.clone()),
        }
    }
}

/// The bucket index of a latency in nanoseconds.
fn latency_bucket(ns: u64) -> usize {
    let us = ns.div_ceil(1_000).max(1);
    // ceil(log2(us)): 1 -> 0, 2 -> 1, 3..=4 -> 2, ...
    let index = (u64::BITS - (us - 1).leading_zeros()) as usize;
    index.min(LATENCY_BUCKETS - 1)
}

/// The counters of one bound plugin at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Calls that reached the plugin (not counting quarantined ones):
    /// `ok + fallbacks`.
    pub calls: u64,
    /// Calls answered validly by the plugin.
    pub ok: u64,
    /// Calls answered by the native policy after a plugin failure
    /// (= traps + timeouts + memory_limits + invalid_outputs +
    /// pool_exhausted + host_capacity + instantiate_failures).
    pub fallbacks: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub memory_limits: u64,
    pub invalid_outputs: u64,
    /// Calls that found the binding's pool full (not counted toward
    /// quarantine).
    pub pool_exhausted: u64,
    /// Calls for which the engine had no room for a fresh instance (not
    /// counted toward quarantine).
    pub host_capacity: u64,
    pub instantiate_failures: u64,
    /// Calls served natively, without calling the plugin, while quarantined.
    pub quarantined_calls: u64,
    /// Route plans answered from the plan cache without calling the plugin
    /// (a routing plugin that declared `cacheable-by-health-flags`). Not
    /// part of `calls`: no plugin code ran, so they have no latency sample
    /// and neither end nor extend a failure streak.
    pub cached: u64,
    /// Fresh instances created (the first one at bind included).
    pub instantiations: u64,
    /// Instances thrown away after a failure (never reused).
    pub discarded_instances: u64,
    /// `host.log` calls over the per-call quota.
    pub logs_dropped: u64,
    /// `set-nodes` calls made: one per instance per node table, so in the
    /// steady state this stops growing.
    pub node_tables_given: u64,
    /// Guest faults in a row since the last valid answer (host capacity
    /// failures neither count nor end a streak).
    pub consecutive_failures: u32,
    /// Sum of call latencies (successful and failed), in ns.
    pub latency_ns_total: u64,
    pub latency_ns_max: u64,
    /// Call counts per latency bucket; see [`latency_bucket_bounds_us`].
    pub latency_buckets: Vec<u64>,
    pub last_failure: Option<Failure>,
}

/// A serializable snapshot of a bound plugin, for the admin API and
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub name: String,
    pub version: String,
    pub kind: crate::PolicyKind,
    pub quarantined: bool,
    /// Why it was quarantined, when it is.
    pub quarantine_reason: Option<String>,
    /// Instances ready in the pool.
    pub pool_idle: u32,
    /// Instances alive (idle + in a call).
    pub pool_live: u32,
    /// What the plugin's `configure` declared.
    pub route_traits: RouteTraits,
    /// The route-plan cache, for a routing plugin that declared
    /// `cacheable-by-health-flags`.
    pub plan_cache: Option<PlanCacheStats>,
    #[serde(flatten)]
    pub counters: CounterSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1_000), 0);
        assert_eq!(latency_bucket(1_001), 1);
        assert_eq!(latency_bucket(2_000), 1);
        assert_eq!(latency_bucket(3_000), 2);
        assert_eq!(latency_bucket(4_000), 2);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        let bounds = latency_bucket_bounds_us();
        assert_eq!(bounds[0], 1);
        assert_eq!(bounds[2], 4);
    }

    #[test]
    fn streak_resets_on_success_and_counts_by_kind() {
        let counters = Counters::default();
        let tick = Duration::from_micros(3);
        assert_eq!(counters.record_failure(&Failure::Timeout, tick), Some(1));
        assert_eq!(
            counters.record_failure(&Failure::Trap("unreachable".into()), tick),
            Some(2)
        );
        counters.record_ok(tick);
        assert_eq!(
            counters.record_failure(&Failure::MemoryLimit, tick),
            Some(1)
        );
        // The host's capacity is not the plugin's fault: the streak stays.
        assert_eq!(counters.record_failure(&Failure::PoolExhausted, tick), None);
        let full = Failure::HostCapacity("engine full".into());
        assert_eq!(counters.record_failure(&full, tick), None);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.calls, snapshot.ok, snapshot.fallbacks), (6, 1, 5));
        assert_eq!((snapshot.pool_exhausted, snapshot.host_capacity), (1, 1));
        assert_eq!(
            (snapshot.traps, snapshot.timeouts, snapshot.memory_limits),
            (1, 1, 1)
        );
        assert_eq!(snapshot.consecutive_failures, 1);
        assert_eq!(snapshot.latency_buckets.iter().sum::<u64>(), 6);
        assert_eq!(snapshot.last_failure, Some(full));
    }
}
