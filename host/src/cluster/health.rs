//! Node health: passive outlier ejection and optional active checks.
//!
//! **Passive ejection** (Envoy's outlier detection, simplified): every
//! attempt reports success or failure (connect/timeout/reset/protocol error
//! or a 5xx). `consecutive_failures` failures in a row eject the node for
//! `base_ejection_ms × 2^(k-1)` (capped at `max_ejection_ms`), where `k`
//! counts ejections that followed each other within `max_ejection_ms`, so a
//! flapping node stays out longer each time while a node that recovered
//! for a while starts again from the base. When the ejection expires the
//! node is **half-open**: exactly one request (whoever wins
//! [`NodeHealth::try_acquire`]) probes it; success closes it, failure
//! re-ejects it at once with the next longer duration.
//!
//! **Active checks** (optional): a background task per node
//! ([`crate::cluster::probe::spawn_active_checks`]) probes it with the
//! configured `health_check` under the one probe rule (the hinted handoff
//! asks the same function); [`CheckStreak`] turns the results into health:
//! `unhealthy_threshold` failures in a row mark it down,
//! `healthy_threshold` successes mark it up again. The task lives with the
//! probe, not here, because it needs the built `Service`, which holds a
//! [`NodeHealth`] per node: this module stays below both.
//!
//! Everything is atomics: the request path reads and updates health without
//! locks. The `failure_rate_permille` and `latency_ms` fed to routing
//! policies are exponentially weighted moving averages (weight 1/16).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{HealthCheckSpec, OutlierSpec};

/// Weight of a new sample in the moving averages, as a shift (1/16).
const EWMA_SHIFT: u32 = 4;

/// The health of one node, shared by every request.
#[derive(Debug)]
pub struct NodeHealth {
    outlier: OutlierSpec,
    consecutive_failures: AtomicU32,
    /// 0 when not ejected; otherwise the `clock::now_ms` the ejection ends.
    ejected_until_ms: AtomicU64,
    /// When the last ejection started (for the doubling rule).
    last_ejection_ms: AtomicU64,
    /// Ejections in the current streak (k in the module doc).
    ejection_streak: AtomicU32,
    /// Set while the half-open probe is in flight.
    probe_in_flight: AtomicBool,
    /// False when active health checks say the node is down.
    actively_healthy: AtomicBool,
    failure_rate_permille: AtomicU32,
    latency_ms: AtomicU32,
    ejections_total: AtomicU64,
    /// Attempts (reads and writes) sent to the node and not finished: the
    /// load the read balance factor bounds ([`NodeHealth::start_attempt`]).
    in_flight: AtomicU32,
}

/// One attempt in flight on a node; the count drops with it (also when a
/// hedge or a timeout cancels the attempt's future).
#[derive(Debug)]
pub struct AttemptInFlight<'a> {
    health: &'a NodeHealth,
}

impl Drop for AttemptInFlight<'_> {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What happened to an attempt, from the node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
}

impl NodeHealth {
    pub fn new(outlier: OutlierSpec) -> NodeHealth {
        NodeHealth {
            outlier,
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            last_ejection_ms: AtomicU64::new(0),
            ejection_streak: AtomicU32::new(0),
            probe_in_flight: AtomicBool::new(false),
            actively_healthy: AtomicBool::new(true),
            failure_rate_permille: AtomicU32::new(0),
            latency_ms: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Counts an attempt in flight on the node until the guard drops.
    pub fn start_attempt(&self) -> AttemptInFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        AttemptInFlight { health: self }
    }

    /// Attempts in flight on the node now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Healthy as shown to routing policies: not ejected (a half-open node
    /// counts as healthy) and not marked down by active checks.
    pub fn is_healthy(&self, now_ms: u64) -> bool {
        self.actively_healthy.load(Ordering::Acquire) && !self.is_ejected(now_ms)
    }

    /// True while an ejection is running (not yet half-open).
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Acquire)
    }

    /// May a request be sent now? Ejected: no. Half-open: only the one
    /// request that takes the probe token. Closed: yes.
    pub fn try_acquire(&self, now_ms: u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now_ms < until {
            return false;
        }
        self.probe_in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records the outcome of one attempt.
    pub fn record(&self, verdict: Verdict, elapsed_ms: u64, now_ms: u64) {
        let elapsed = u32::try_from(elapsed_ms).unwrap_or(u32::MAX);
        ewma(&self.latency_ms, elapsed);
        match verdict {
            Verdict::Success => {
                ewma(&self.failure_rate_permille, 0);
                self.consecutive_failures.store(0, Ordering::Release);
                if self.ejected_until_ms.load(Ordering::Acquire) != 0 {
                    self.ejected_until_ms.store(0, Ordering::Release);
                    self.probe_in_flight.store(false, Ordering::Release);
                }
            }
            Verdict::Failure => {
                ewma(&self.failure_rate_permille, 1000);
                let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                let until = self.ejected_until_ms.load(Ordering::Acquire);
                let half_open = until != 0 && now_ms >= until;
                let threshold_hit = until == 0 && failures >= self.outlier.consecutive_failures;
                if half_open || threshold_hit {
                    self.eject(now_ms);
                }
            }
        }
    }

    fn eject(&self, now_ms: u64) {
        let last = self.last_ejection_ms.swap(now_ms, Ordering::AcqRel);
        let streak = if self.ejections_total.load(Ordering::Acquire) > 0
            && now_ms.saturating_sub(last) <= self.outlier.max_ejection_ms.saturating_mul(2)
        {
            self.ejection_streak.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.ejection_streak.store(1, Ordering::Release);
            1
        };
        let duration_ms = ejection_ms(&self.outlier, streak);
        self.ejected_until_ms
            .store(now_ms + duration_ms, Ordering::Release);
        self.probe_in_flight.store(false, Ordering::Release);
        self.ejections_total.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(duration_ms, streak, "node ejected");
    }

    /// Active check result: flips health after the configured streaks.
    pub fn set_actively_healthy(&self, healthy: bool) {
        self.actively_healthy.store(healthy, Ordering::Release);
    }

    pub fn actively_healthy(&self) -> bool {
        self.actively_healthy.load(Ordering::Acquire)
    }

    pub fn failure_rate_permille(&self) -> u32 {
        self.failure_rate_permille.load(Ordering::Acquire).min(1000)
    }

    pub fn latency_ms(&self) -> u32 {
        self.latency_ms.load(Ordering::Acquire)
    }

    /// How many times this node has been ejected since start.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Acquire)
    }

    /// Milliseconds of ejection left (0 when not ejected).
    pub fn ejected_for_ms(&self, now_ms: u64) -> u64 {
        self.ejected_until_ms
            .load(Ordering::Acquire)
            .saturating_sub(now_ms)
    }
}

/// `base × 2^(streak-1)`, capped at `max`.
pub fn ejection_ms(outlier: &OutlierSpec, streak: u32) -> u64 {
    let doublings = streak.saturating_sub(1).min(32);
    outlier
        .base_ejection_ms
        .saturating_mul(1u64 << doublings)
        .min(outlier.max_ejection_ms)
}

/// Moves an EWMA 1/16 of the way towards `sample`. Racy updates may lose a
/// sample, which an average tolerates.
fn ewma(average: &AtomicU32, sample: u32) {
    let old = average.load(Ordering::Relaxed);
    let new = if sample >= old {
        old + ((sample - old) >> EWMA_SHIFT).max(u32::from(sample != old))
    } else {
        old - ((old - sample) >> EWMA_SHIFT).max(1)
    };
    average.store(new, Ordering::Relaxed);
}

/// Tracks the success/failure streaks of active checks for one node.
#[derive(Debug, Default)]
pub struct CheckStreak {
    successes: u32,
    failures: u32,
}

impl CheckStreak {
    /// Feeds one check result; returns the new health if it flipped.
    pub fn observe(
        &mut self,
        ok: bool,
        currently_healthy: bool,
        spec: &HealthCheckSpec,
    ) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (!currently_healthy && self.successes >= spec.healthy_threshold).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (currently_healthy && self.failures >= spec.unhealthy_threshold).then_some(false)
        }
    }
}

/// The interval between two checks of one node.
pub fn check_interval(spec: &HealthCheckSpec) -> Duration {
    Duration::from_millis(spec.interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierSpec {
        OutlierSpec {
            consecutive_failures: 3,
            base_ejection_ms: 100,
            max_ejection_ms: 1_000,
        }
    }

    #[test]
    fn consecutive_failures_eject_then_half_open_admits_one_probe() {
        let health = NodeHealth::new(outlier());
        health.record(Verdict::Failure, 1, 10);
        health.record(Verdict::Failure, 1, 10);
        assert!(health.try_acquire(10));
        health.record(Verdict::Failure, 1, 10);
        assert!(!health.try_acquire(10));
        assert!(!health.is_healthy(50));
        assert_eq!(health.ejected_for_ms(10), 100);
        // Expired: one probe only.
        assert!(health.is_healthy(110));
        assert!(health.try_acquire(110));
        assert!(!health.try_acquire(110));
        health.record(Verdict::Success, 1, 111);
        assert!(health.try_acquire(111));
        assert!(health.try_acquire(111));
    }

    #[test]
    fn a_failed_probe_doubles_the_ejection() {
        let health = NodeHealth::new(outlier());
        for _ in 0..3 {
            health.record(Verdict::Failure, 1, 0);
        }
        assert_eq!(health.ejected_for_ms(0), 100);
        assert!(health.try_acquire(100));
        health.record(Verdict::Failure, 1, 100);
        assert_eq!(health.ejected_for_ms(100), 200);
        assert!(health.try_acquire(300));
        health.record(Verdict::Failure, 1, 300);
        assert_eq!(health.ejected_for_ms(300), 400);
        assert_eq!(health.ejections_total(), 3);
    }

    #[test]
    fn ejection_is_capped() {
        let spec = outlier();
        assert_eq!(ejection_ms(&spec, 1), 100);
        assert_eq!(ejection_ms(&spec, 4), 800);
        assert_eq!(ejection_ms(&spec, 5), 1_000);
        assert_eq!(ejection_ms(&spec, 99), 1_000);
    }

    #[test]
    fn a_long_healthy_spell_resets_the_streak() {
        let health = NodeHealth::new(outlier());
        for _ in 0..3 {
            health.record(Verdict::Failure, 1, 0);
        }
        assert!(health.try_acquire(100));
        health.record(Verdict::Success, 1, 100);
        for _ in 0..3 {
            health.record(Verdict::Failure, 1, 10_000);
        }
        assert_eq!(health.ejected_for_ms(10_000), 100);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let health = NodeHealth::new(outlier());
        for _ in 0..10 {
            health.record(Verdict::Failure, 1, 0);
            health.record(Verdict::Failure, 1, 0);
            health.record(Verdict::Success, 1, 0);
        }
        assert_eq!(health.ejections_total(), 0);
        assert!(health.failure_rate_permille() > 0);
    }

    #[test]
    fn moving_averages_converge() {
        let health = NodeHealth::new(outlier());
        for _ in 0..200 {
            health.record(Verdict::Failure, 40, 0);
            health.record(Verdict::Success, 40, 0);
        }
        assert!((400..=600).contains(&health.failure_rate_permille()));
        assert!(
            (38..=40).contains(&health.latency_ms()),
            "{}",
            health.latency_ms()
        );
    }

    #[test]
    fn check_streaks_flip_after_thresholds() {
        let spec = HealthCheckSpec {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..Default::default()
        };
        let mut streak = CheckStreak::default();
        assert_eq!(streak.observe(false, true, &spec), None);
        assert_eq!(streak.observe(false, true, &spec), None);
        assert_eq!(streak.observe(false, true, &spec), Some(false));
        assert_eq!(streak.observe(true, false, &spec), None);
        assert_eq!(streak.observe(true, false, &spec), Some(true));
    }
}
