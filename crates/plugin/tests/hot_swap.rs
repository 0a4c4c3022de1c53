//! Hot swap under load: while threads keep deciding, the bound plugin is
//! swapped back and forth between two versions. Every call must be
//! answered by exactly one of them (never a fallback, never a mix), and
//! the answer must be the one that version gives.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use levee_plugin::{PolicyKind, Source};
use levee_policy::{RetryDecision, Target};
use support::*;

const CALLER_THREADS: usize = 4;
const CALLS_PER_THREAD_MAX: usize = 20_000;
const SWAPS: usize = 100;
/// Yields the swapper waits at most for callers to make progress.
const PROGRESS_WAIT_YIELDS_MAX: usize = 10_000_000;

#[test]
fn every_call_is_answered_by_exactly_one_version() {
    let runtime = seeded_runtime(SEED);
    // retry-backoff configured to retry on the *same* node; retry-fixed
    // always retries on the *next*: the target tells who answered.
    let backoff = runtime
        .compile_as("retry", &dist("retry-backoff"), PolicyKind::Retry)
        .unwrap();
    let fixed = runtime
        .compile_as("retry", &dist("zoo/retry-fixed"), PolicyKind::Retry)
        .unwrap();
    let backoff_bound = backoff
        .bind(&runtime, r#"{"target": "same"}"#, patient_limits())
        .unwrap();
    let fixed_bound = fixed.bind(&runtime, "{}", patient_limits()).unwrap();
    let (backoff_version, fixed_version) =
        (backoff.version().to_string(), fixed.version().to_string());

    let policy = Arc::new(retry_policy_with(&runtime, backoff_bound.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let calls_done = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(CALLER_THREADS + 1));

    let callers: Vec<_> = (0..CALLER_THREADS)
        .map(|_| {
            let (policy, stop, start) = (policy.clone(), stop.clone(), start.clone());
            let calls_done = calls_done.clone();
            let (backoff_version, fixed_version) = (backoff_version.clone(), fixed_version.clone());
            std::thread::spawn(move || {
                start.wait();
                let (mut by_backoff, mut by_fixed) = (0usize, 0usize);
                for _ in 0..CALLS_PER_THREAD_MAX {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let decided = decide_first_attempt(&policy, 503);
                    let Source::Plugin { version, .. } = &decided.source else {
                        panic!(
                            "every call must be answered by a plugin, got {:?}",
                            decided.source
                        );
                    };
                    let RetryDecision::Retry { delay_ms, target } = decided.value else {
                        panic!("both versions retry a first 503, got {:?}", decided.value);
                    };
                    if **version == *backoff_version {
                        assert_eq!(
                            target,
                            Target::Same,
                            "retry-backoff answered like another version"
                        );
                        assert!(delay_ms <= 25);
                        by_backoff += 1;
                    } else {
                        assert_eq!(**version, *fixed_version, "unknown version");
                        assert_eq!(
                            (delay_ms, target),
                            (0, Target::Next),
                            "retry-fixed answered like another version"
                        );
                        by_fixed += 1;
                    }
                    calls_done.fetch_add(1, Ordering::Relaxed);
                }
                (by_backoff, by_fixed)
            })
        })
        .collect();

    start.wait();
    for swap in 0..SWAPS {
        let next = if swap % 2 == 0 {
            &fixed_bound
        } else {
            &backoff_bound
        };
        let previous = policy.bind(Some(next.clone())).unwrap();
        assert!(previous.is_some());
        // Let more calls finish than can have been in flight at the swap,
        // so some of them started on the new version.
        let target = (calls_done.load(Ordering::Relaxed) + 2 * CALLER_THREADS)
            .min(CALLER_THREADS * CALLS_PER_THREAD_MAX);
        for _ in 0..PROGRESS_WAIT_YIELDS_MAX {
            if calls_done.load(Ordering::Relaxed) >= target {
                break;
            }
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);

    let (mut total_backoff, mut total_fixed) = (0, 0);
    for caller in callers {
        let (by_backoff, by_fixed) = caller.join().expect("caller thread passed its checks");
        total_backoff += by_backoff;
        total_fixed += by_fixed;
    }
    assert!(
        total_backoff > 0 && total_fixed > 0,
        "both versions answered: {total_backoff} / {total_fixed}"
    );
    for bound in [&backoff_bound, &fixed_bound] {
        let counters = bound.stats().counters;
        assert_eq!(counters.fallbacks, 0);
        assert_eq!(counters.calls, counters.ok);
    }
    assert_eq!(
        (backoff_bound.stats().counters.ok + fixed_bound.stats().counters.ok) as usize,
        total_backoff + total_fixed
    );
}

#[test]
fn unbinding_returns_to_native_and_drops_the_old_version_when_idle() {
    let runtime = seeded_runtime(SEED);
    let component = runtime.compile("retry", &dist("retry-backoff")).unwrap();
    let bound = component.bind(&runtime, "{}", patient_limits()).unwrap();
    let policy = retry_policy_with(&runtime, bound);
    assert_plugin_answered(&decide_first_attempt(&policy, 503).source);
    let previous = policy.bind(None).unwrap().expect("was bound");
    let weak = Arc::downgrade(&previous);
    drop(previous);
    assert!(
        weak.upgrade().is_none(),
        "nothing else holds the old binding"
    );
    assert_eq!(decide_first_attempt(&policy, 503).source, Source::Native);
}
