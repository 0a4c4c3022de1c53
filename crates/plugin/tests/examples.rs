//! The example plugins decide exactly like the native policies.
//!
//! Each example plugin is built from the same `levee_policy` logic as the
//! native fallback, so on identical inputs and an identical random
//! sequence (the host's seeded `random-u64` on one side, the same seed
//! handed to the native policy on the other) every decision must be equal.
//! Table cases cover each rule; proptest covers many generated inputs.
//! Every plugin answer must also come from the plugin, not a fallback.

mod support;

use std::sync::Arc;

use levee_plugin::{
    BoundPlugin, CheckpointPolicy, HostRng, NodeTable, PolicyKind, RetryPolicy, RoutingPolicy,
    Runtime, Source,
};
use levee_policy::{
    AttemptOutcome, Candidate, CheckpointInterval, ErrorKind, LogStats, NodeIndex, RetryBackoff,
    RetryContext, RouteAffinity,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use support::*;

const RETRY_CONFIGS: [&str; 3] = [
    "{}",
    r#"{"max_attempts": 5, "base_delay_ms": 10, "max_delay_ms": 200, "target": "same"}"#,
    r#"{"retry_statuses": [429, 500, 503], "retry_after_max_ms": 2000}"#,
];
const ROUTING_CONFIGS: [&str; 3] = [
    "{}",
    r#"{"prefer_zone": "a"}"#,
    r#"{"prefer_zone": "b", "hedge_delay_ms": 40}"#,
];
const CHECKPOINT_CONFIGS: [&str; 2] = [
    "{}",
    r#"{"every_records": 100, "every_bytes": 4096, "every_ms": 1000, "compact_reclaimable_bytes": 8192}"#,
];

/// An example plugin, compiled under its own name as the world it must
/// implement, and bound to `config`.
fn bind_example(runtime: &Runtime, name: &str, kind: PolicyKind, config: &str) -> Arc<BoundPlugin> {
    runtime
        .compile_as(name, &dist(name), kind)
        .unwrap()
        .bind(runtime, config, patient_limits())
        .unwrap()
}

/// A proptest runner for 300 generated cases.
fn runner_of_300_cases() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    })
}

fn assert_from_plugin(source: &Source, version: &str) {
    match source {
        Source::Plugin { version: v, .. } => assert_eq!(&**v, version),
        other => panic!("expected the plugin to answer, got {other:?}"),
    }
}

/// A plugin-backed retry policy and a native one fed the same seed.
struct RetryPair {
    plugin: RetryPolicy,
    version: String,
    native: RetryBackoff,
    native_rng: HostRng,
}

impl RetryPair {
    fn new(config: &str) -> RetryPair {
        let seed = SEED ^ config.len() as u64;
        let runtime = seeded_runtime(seed);
        let bound = bind_example(&runtime, "retry-backoff", PolicyKind::Retry, config);
        RetryPair {
            version: bound.version().to_string(),
            plugin: retry_policy_with(&runtime, bound),
            native: RetryBackoff::from_json(config).unwrap(),
            native_rng: HostRng::seeded(seed),
        }
    }

    fn check(&self, request: &TestRequest, outcome: &AttemptOutcome, context: &RetryContext<'_>) {
        let decided = decide(&self.plugin, request, outcome, context);
        let expected = self.native.decide(
            request.facts(),
            outcome,
            context,
            self.native_rng.next_u64(),
        );
        assert_from_plugin(&decided.source, &self.version);
        assert_eq!(
            decided.value, expected,
            "request {request:?}\noutcome {outcome:?}\ncontext {context:?}"
        );
    }
}

#[test]
fn retry_backoff_table() {
    for config in RETRY_CONFIGS {
        let pair = RetryPair::new(config);
        let post = get("/k").with_method("POST");
        let keyed_post = post.clone().with_header("Idempotency-Key", "abc");
        let empty_key_post = post.clone().with_header("Idempotency-Key", "");
        let with_retry_after = AttemptOutcome {
            retry_after_ms: Some(1_500),
            ..status(0, 1, 503)
        };
        let too_many = AttemptOutcome {
            retry_after_ms: Some(700),
            ..status(0, 1, 429)
        };
        let cases: Vec<(TestRequest, AttemptOutcome, RetryContext)> = vec![
            (get("/a"), status(0, 1, 503), roomy_context()),
            (get("/a"), status(0, 2, 502), roomy_context()),
            (get("/a"), status(0, 4, 504), roomy_context()),
            (get("/a"), status(0, 1, 500), roomy_context()),
            (get("/a"), status(0, 1, 429), roomy_context()),
            (get("/a"), too_many, roomy_context()),
            (get("/a"), with_retry_after, roomy_context()),
            (get("/a"), error(1, 1, ErrorKind::Connect), roomy_context()),
            (get("/a"), error(1, 1, ErrorKind::Timeout), roomy_context()),
            (get("/a"), error(1, 1, ErrorKind::Reset), roomy_context()),
            (get("/a"), error(1, 1, ErrorKind::Protocol), roomy_context()),
            (get("/a"), error(1, 1, ErrorKind::Other), roomy_context()),
            (post.clone(), status(0, 1, 503), roomy_context()),
            (keyed_post, status(0, 1, 503), roomy_context()),
            (empty_key_post, status(0, 1, 503), roomy_context()),
            (
                get("/a"),
                status(0, 1, 503),
                RetryContext {
                    budget_remaining: 0,
                    ..roomy_context()
                },
            ),
            (
                get("/a"),
                status(0, 1, 503),
                RetryContext {
                    deadline_remaining_ms: 1,
                    ..roomy_context()
                },
            ),
            (
                get("/a"),
                status(0, 3, 503),
                RetryContext {
                    max_attempts: 3,
                    ..roomy_context()
                },
            ),
        ];
        for (request, outcome, context) in &cases {
            pair.check(request, outcome, context);
        }
    }
}

#[test]
fn retry_backoff_matches_native_on_generated_inputs() {
    for config in RETRY_CONFIGS {
        let pair = RetryPair::new(config);
        let mut runner = runner_of_300_cases();
        runner
            .run(
                &retry_inputs(),
                |(request, outcome, budget, deadline, max_attempts, candidates)| {
                    let context = RetryContext {
                        budget_remaining: budget,
                        deadline_remaining_ms: deadline,
                        max_attempts,
                        candidates: &CANDIDATES[..candidates],
                    };
                    pair.check(&request, &outcome, &context);
                    Ok(())
                },
            )
            .unwrap();
        let stats = pair.plugin.stats().unwrap();
        assert_eq!(stats.counters.fallbacks, 0);
        assert_eq!(stats.counters.calls, stats.counters.ok);
    }
}

fn routing_pair(config: &str) -> (RoutingPolicy, String, RouteAffinity) {
    let runtime = seeded_runtime(SEED);
    let bound = bind_example(&runtime, "route-affinity", PolicyKind::Routing, config);
    let version = bound.version().to_string();
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound)).unwrap();
    (policy, version, RouteAffinity::from_json(config).unwrap())
}

/// A node table of up to 8 nodes with zones, and candidates over it: a
/// subset of its indexes in a shuffled (ring-like) order, each with a
/// health flag.
fn routing_strategy() -> impl Strategy<Value = (Vec<Option<&'static str>>, Vec<Candidate>)> {
    prop::collection::vec(prop::sample::select(vec![Some("a"), Some("b"), None]), 0..8)
        .prop_flat_map(|zones| {
            let indexes: Vec<NodeIndex> = (0..zones.len() as NodeIndex).collect();
            let picked =
                prop::sample::subsequence(indexes.clone(), 0..=indexes.len()).prop_shuffle();
            (Just(zones), picked, prop::collection::vec(any::<bool>(), 8))
        })
        .prop_map(|(zones, picked, health)| {
            let candidates = picked
                .iter()
                .zip(health)
                .map(|(&node, healthy)| Candidate {
                    node,
                    healthy,
                    failure_rate_permille: node * 7,
                    latency_ms: node + 1,
                })
                .collect();
            (zones, candidates)
        })
}

fn table(zones: &[Option<&str>]) -> NodeTable {
    NodeTable::new(
        zones
            .iter()
            .enumerate()
            .map(|(i, zone)| node_info(&format!("n{i}"), *zone))
            .collect(),
    )
    .unwrap()
}

#[test]
fn route_affinity_matches_native() {
    for config in ROUTING_CONFIGS {
        let (policy, version, native) = routing_pair(config);
        // Nodes 0 and 2 in zone a, 1 and 3 in zone b, 4 and 5 in none.
        let nodes = table(&[Some("a"), Some("b"), Some("a"), Some("b"), None, None]);
        let cases: [Vec<Candidate>; 5] = [
            vec![candidate(0, true), candidate(1, true), candidate(2, true)],
            vec![candidate(1, true), candidate(0, false), candidate(2, true)],
            vec![candidate(4, false), candidate(5, false)],
            vec![candidate(3, true)],
            vec![],
        ];
        for candidates in &cases {
            for method in ["GET", "HEAD", "PUT"] {
                let request = get("/g").with_method(method);
                let decided = policy.route(&request, request.facts(), &nodes, candidates);
                assert_from_plugin(&decided.source, &version);
                assert_eq!(
                    decided.value,
                    native.route(request.facts(), nodes.nodes(), candidates),
                    "{candidates:?}"
                );
            }
        }
        let mut runner = runner_of_300_cases();
        let methods = prop::sample::select(vec!["GET", "HEAD", "PUT", "POST"]);
        runner
            .run(
                &(routing_strategy(), methods),
                |((zones, candidates), method)| {
                    // A new table per case: every case also exercises
                    // `set-nodes`.
                    let nodes = table(&zones);
                    let request = get("/k").with_method(method);
                    let decided = policy.route(&request, request.facts(), &nodes, &candidates);
                    assert_from_plugin(&decided.source, &version);
                    prop_assert_eq!(
                        decided.value,
                        native.route(request.facts(), nodes.nodes(), &candidates)
                    );
                    Ok(())
                },
            )
            .unwrap();
        let stats = policy.stats().unwrap();
        assert_eq!(stats.counters.fallbacks, 0);
    }
}

#[test]
fn checkpoint_interval_matches_native() {
    for config in CHECKPOINT_CONFIGS {
        let runtime = seeded_runtime(SEED);
        let bound = bind_example(
            &runtime,
            "checkpoint-interval",
            PolicyKind::Checkpoint,
            config,
        );
        let version = bound.version().to_string();
        let policy = CheckpointPolicy::new(CheckpointInterval::default());
        policy.bind(Some(bound)).unwrap();
        let native = CheckpointInterval::from_json(config).unwrap();
        let strategy = (0u64..20_000, 0u64..1 << 27, 0u64..120_000, 0u64..1 << 27).prop_map(
            |(records, bytes, ms, reclaimable)| LogStats {
                records_since_checkpoint: records,
                bytes_since_checkpoint: bytes,
                ms_since_checkpoint: ms,
                total_bytes: bytes + reclaimable,
                oldest_needed_lsn: records,
                reclaimable_bytes: reclaimable,
            },
        );
        let mut runner = runner_of_300_cases();
        runner
            .run(&strategy, |stats| {
                let decided = policy.decide(&stats);
                assert_from_plugin(&decided.source, &version);
                prop_assert_eq!(decided.value, native.decide(&stats));
                Ok(())
            })
            .unwrap();
        // The quiet log: nothing to do.
        assert_eq!(
            policy.decide(&LogStats::default()).value,
            native.decide(&LogStats::default())
        );
    }
}

#[test]
fn plugin_config_errors_match_native_config_errors() {
    let runtime = seeded_runtime(SEED);
    let component = compile_retry_backoff(&runtime);
    let bad = r#"{"max_attempts": 0}"#;
    let native_error = RetryBackoff::from_json(bad).unwrap_err();
    let plugin_error = component.bind(&runtime, bad, patient_limits()).unwrap_err();
    assert_eq!(
        plugin_error,
        levee_plugin::LoadError::ConfigRejected(native_error)
    );
}
