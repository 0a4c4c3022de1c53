//! Unit tests of `bound`: what needs the crate's insides (a lease held
//! from the pool), so not in `tests/`.

use super::*;
use crate::policy::RetryPolicy;
use crate::runtime::RuntimeOptions;
use levee_policy::{AttemptResult, Method, NodeInfo, RetryBackoff};

struct Get;

impl RequestView for Get {
    fn service(&self) -> &str {
        "kv"
    }
    fn method(&self) -> &str {
        "GET"
    }
    fn path(&self) -> &str {
        "/k"
    }
    fn routing_key(&self) -> &str {
        "k"
    }
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A binding's own pool at its maximum is the host's capacity, not the
/// plugin's fault: every such call falls back, none counts toward
/// quarantine, and the plugin answers again once an instance is free.
#[test]
fn an_exhausted_pool_falls_back_without_counting_toward_quarantine() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/dist/retry-backoff.wasm"
    );
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path} ({e}): run scripts/build-plugins.sh"));
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let component = runtime
        .compile_as("retry-backoff", &bytes, PolicyKind::Retry)
        .unwrap();
    let limits = Limits {
        call_timeout_ms: 1_000,
        pool_instances_max: 1,
        pool_idle_max: 1,
        consecutive_failures_max: 2,
        ..Limits::default()
    };
    let bound = component.bind(&runtime, "{}", limits).unwrap();
    let policy = RetryPolicy::new(&runtime, RetryBackoff::default());
    policy.bind(Some(bound.clone())).unwrap();
    let node = |id: &str| NodeInfo {
        id: id.into(),
        address: format!("http://{id}"),
        zone: None,
        weight: 1,
    };
    let nodes = NodeTable::new(vec![node("a"), node("b")]).unwrap();
    let outcome = AttemptOutcome {
        node: 0,
        attempt: 1,
        result: AttemptResult::Status(503),
        elapsed_ms: 1,
        retry_after_ms: None,
    };
    let context = RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 1_000,
        max_attempts: 3,
        candidates: &[0, 1],
    };
    let facts = RequestFacts {
        method: Method::Get,
        idempotent: true,
    };
    let decide = || {
        policy
            .decide(&Get, facts, &nodes, &outcome, &context)
            .source
    };

    // A call in progress holds the only instance.
    let lease = bound.pool.acquire().unwrap();
    for _ in 0..5 {
        let source = decide();
        assert!(
            matches!(
                source,
                crate::Source::Fallback {
                    failure: Failure::PoolExhausted,
                    ..
                }
            ),
            "{source:?}"
        );
    }
    assert!(!bound.is_quarantined());
    let counters = bound.stats().counters;
    assert_eq!(
        (counters.pool_exhausted, counters.consecutive_failures),
        (5, 0)
    );

    lease.recycle();
    assert!(matches!(decide(), crate::Source::Plugin { .. }));
}
