//! The retry budget: how a retry storm is kept from amplifying an outage.
//!
//! When every replica is failing, per-request retry limits multiply load by
//! `max_attempts` exactly when the service can least take it. A budget caps
//! retries *across* requests instead: over a trailing window, retries may be
//! at most `ratio × requests + min_per_s × window_s` (Linkerd's rule; Envoy's
//! retry budgets are the same idea). With the defaults (20%, 10/s, 10 s) an
//! outage costs at most 1.2× the offered load plus 100 retries, instead of
//! 3×. Hedged attempts draw from the same budget.
//!
//! The window is a ring of [`BUCKETS`] time buckets of atomic counters, so
//! the request path never takes a lock. A bucket is recycled by the first
//! request that finds it stale; two requests racing on that recycle can
//! lose a count or two, which only makes the budget a hair looser or
//! tighter for one bucket and is accepted for lock-freedom.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::RetryBudgetSpec;

/// Buckets per window: the granularity at which old traffic ages out.
pub const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// Which bucket-sized slice of time (now_ms / bucket_ms) the counts are for.
    epoch: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// A lock-free sliding-window retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    buckets: [Bucket; BUCKETS],
    bucket_ms: u64,
    ratio: f64,
    /// `min_per_s × window_s`: retries allowed even with no traffic.
    floor: f64,
}

impl RetryBudget {
    pub fn new(spec: &RetryBudgetSpec) -> RetryBudget {
        assert!(
            spec.window_ms >= BUCKETS as u64,
            "window too small for the bucket ring"
        );
        RetryBudget {
            buckets: Default::default(),
            bucket_ms: spec.window_ms / BUCKETS as u64,
            ratio: spec.ratio,
            floor: f64::from(spec.min_per_s) * spec.window_ms as f64 / 1000.0,
        }
    }

    /// The current bucket, recycled if it holds counts from an old epoch.
    fn bucket(&self, now_ms: u64) -> &Bucket {
        let epoch = now_ms / self.bucket_ms;
        let bucket = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.requests.store(0, Ordering::Release);
            bucket.retries.store(0, Ordering::Release);
        }
        bucket
    }

    /// Counts one incoming request (which earns `ratio` retries).
    pub fn record_request(&self, now_ms: u64) {
        self.bucket(now_ms).requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Sums the live buckets: (requests, retries) over the trailing window.
    fn totals(&self, now_ms: u64) -> (u64, u64) {
        let current = now_ms / self.bucket_ms;
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let mut totals = (0u64, 0u64);
        for bucket in &self.buckets {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            if (oldest..=current).contains(&epoch) {
                totals.0 += u64::from(bucket.requests.load(Ordering::Acquire));
                totals.1 += u64::from(bucket.retries.load(Ordering::Acquire));
            }
        }
        totals
    }

    /// Retries the budget allows right now.
    pub fn remaining(&self, now_ms: u64) -> u32 {
        let (requests, retries) = self.totals(now_ms);
        let allowed = (self.ratio * requests as f64 + self.floor).floor();
        let remaining = allowed - retries as f64;
        if remaining <= 0.0 {
            0
        } else {
            remaining.min(f64::from(u32::MAX)) as u32
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_withdraw(&self, now_ms: u64) -> bool {
        if self.remaining(now_ms) == 0 {
            return false;
        }
        self.bucket(now_ms).retries.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_s: u32, window_ms: u64) -> RetryBudget {
        RetryBudget::new(&RetryBudgetSpec {
            ratio,
            min_per_s,
            window_ms,
        })
    }

    #[test]
    fn floor_allows_retries_without_traffic() {
        let budget = budget(0.2, 10, 10_000);
        assert_eq!(budget.remaining(0), 100);
        let granted = (0..1_000).filter(|_| budget.try_withdraw(5)).count();
        assert_eq!(granted, 100);
    }

    #[test]
    fn ratio_of_requests_is_added() {
        let budget = budget(0.2, 0, 10_000);
        for _ in 0..500 {
            budget.record_request(1);
        }
        let granted = (0..1_000).filter(|_| budget.try_withdraw(2)).count();
        assert_eq!(granted, 100);
    }

    #[test]
    fn old_traffic_ages_out_of_the_window() {
        let budget = budget(1.0, 0, 1_000);
        for _ in 0..50 {
            budget.record_request(0);
        }
        assert_eq!(budget.remaining(0), 50);
        assert!(budget.try_withdraw(0));
        assert_eq!(budget.remaining(900), 49);
        // One full window later, every bucket is stale.
        assert_eq!(budget.remaining(1_100), 0);
        budget.record_request(1_100);
        assert_eq!(budget.remaining(1_100), 1);
    }

    #[test]
    fn storm_is_capped() {
        // 1000 requests each wanting 2 retries: only 20% + floor get them.
        let budget = budget(0.2, 1, 10_000);
        let mut retries = 0;
        for i in 0..1_000u64 {
            budget.record_request(i);
            retries += (0..2).filter(|_| budget.try_withdraw(i)).count();
        }
        assert!(retries <= 200 + 10, "granted {retries}");
        assert!(retries >= 190, "granted {retries}");
    }
}
