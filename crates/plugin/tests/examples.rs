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
    BoundPlugin, CheckpointPolicy, HostRng, PolicyKind, RetryPolicy, RoutingPolicy, Runtime, Source,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, CheckpointInterval, ErrorKind, LogStats, Node, RequestInfo,
    RetryBackoff, RetryContext, RouteAffinity,
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

    fn check(&self, request: &RequestInfo, outcome: &AttemptOutcome, context: &RetryContext) {
        let decided = self.plugin.decide(request, outcome, context);
        let expected = self
            .native
            .decide(request, outcome, context, self.native_rng.next_u64());
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
        let mut post = get("/k");
        post.method = "POST".into();
        post.idempotent = false;
        let mut keyed_post = post.clone();
        keyed_post
            .headers
            .push(("idempotency-key".into(), "abc".into()));
        keyed_post.idempotent = true;
        let with_retry_after = AttemptOutcome {
            retry_after_ms: Some(1_500),
            ..status("n1", 1, 503)
        };
        let too_many = AttemptOutcome {
            retry_after_ms: Some(700),
            ..status("n1", 1, 429)
        };
        let cases: Vec<(RequestInfo, AttemptOutcome, RetryContext)> = vec![
            (get("/a"), status("n1", 1, 503), roomy_context()),
            (get("/a"), status("n1", 2, 502), roomy_context()),
            (get("/a"), status("n1", 4, 504), roomy_context()),
            (get("/a"), status("n1", 1, 500), roomy_context()),
            (get("/a"), status("n1", 1, 429), roomy_context()),
            (get("/a"), too_many, roomy_context()),
            (get("/a"), with_retry_after, roomy_context()),
            (
                get("/a"),
                error("n2", 1, ErrorKind::Connect),
                roomy_context(),
            ),
            (
                get("/a"),
                error("n2", 1, ErrorKind::Timeout),
                roomy_context(),
            ),
            (get("/a"), error("n2", 1, ErrorKind::Reset), roomy_context()),
            (
                get("/a"),
                error("n2", 1, ErrorKind::Protocol),
                roomy_context(),
            ),
            (get("/a"), error("n2", 1, ErrorKind::Other), roomy_context()),
            (post.clone(), status("n1", 1, 503), roomy_context()),
            (keyed_post, status("n1", 1, 503), roomy_context()),
            (
                get("/a"),
                status("n1", 1, 503),
                RetryContext {
                    budget_remaining: 0,
                    ..roomy_context()
                },
            ),
            (
                get("/a"),
                status("n1", 1, 503),
                RetryContext {
                    deadline_remaining_ms: 1,
                    ..roomy_context()
                },
            ),
            (
                get("/a"),
                status("n1", 3, 503),
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

fn retry_inputs() -> impl Strategy<Value = (RequestInfo, AttemptOutcome, RetryContext)> {
    let request = (
        prop::sample::select(vec!["GET", "HEAD", "PUT", "POST", "PATCH"]),
        any::<bool>(),
        "[a-z]{0,12}",
    )
        .prop_map(|(method, keyed, key)| {
            let mut request = get(&format!("/{key}"));
            request.method = method.into();
            request.idempotent = matches!(method, "GET" | "HEAD" | "PUT") || keyed;
            if keyed {
                request.headers.push(("idempotency-key".into(), key));
            }
            request
        });
    let result = prop_oneof![
        prop::sample::select(vec![429u16, 500, 501, 502, 503, 504, 599])
            .prop_map(AttemptResult::Status),
        prop::sample::select(vec![
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::Reset,
            ErrorKind::Protocol,
            ErrorKind::Other
        ])
        .prop_map(AttemptResult::Error),
    ];
    let outcome = (
        1u32..=8,
        result,
        0u32..5_000,
        prop::option::of(0u32..120_000),
    )
        .prop_map(
            |(attempt, result, elapsed_ms, retry_after_ms)| AttemptOutcome {
                node_id: "n1".into(),
                attempt,
                result,
                elapsed_ms,
                retry_after_ms,
            },
        );
    let context = (0u32..4, 0u32..20_000, 1u32..8, 1usize..5).prop_map(
        |(budget, deadline, max_attempts, n)| RetryContext {
            budget_remaining: budget,
            deadline_remaining_ms: deadline,
            max_attempts,
            candidates: (1..=n).map(|i| format!("n{i}")).collect(),
        },
    );
    (request, outcome, context)
}

#[test]
fn retry_backoff_matches_native_on_generated_inputs() {
    for config in RETRY_CONFIGS {
        let pair = RetryPair::new(config);
        let mut runner = runner_of_300_cases();
        runner
            .run(&retry_inputs(), |(request, outcome, context)| {
                pair.check(&request, &outcome, &context);
                Ok(())
            })
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

fn nodes_strategy() -> impl Strategy<Value = Vec<Node>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![Some("a"), Some("b"), None]),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (zone, healthy))| node(&format!("n{i}"), zone, healthy))
            .collect()
    })
}

#[test]
fn route_affinity_matches_native() {
    for config in ROUTING_CONFIGS {
        let (policy, version, native) = routing_pair(config);
        let mut head = get("/h");
        head.method = "HEAD".into();
        let mut put = get("/p");
        put.method = "PUT".into();
        let table = [
            vec![
                node("a1", Some("a"), true),
                node("b1", Some("b"), true),
                node("a2", Some("a"), true),
            ],
            vec![
                node("b1", Some("b"), true),
                node("a1", Some("a"), false),
                node("a2", Some("a"), true),
            ],
            vec![node("x", None, false), node("y", None, false)],
            vec![node("solo", Some("b"), true)],
            vec![],
        ];
        for candidates in &table {
            for request in [get("/g"), head.clone(), put.clone()] {
                let decided = policy.route(&request, candidates);
                assert_from_plugin(&decided.source, &version);
                assert_eq!(
                    decided.value,
                    native.route(&request, candidates),
                    "{candidates:?}"
                );
            }
        }
        let mut runner = runner_of_300_cases();
        let methods = prop::sample::select(vec!["GET", "HEAD", "PUT", "POST"]);
        runner
            .run(&(nodes_strategy(), methods), |(candidates, method)| {
                let mut request = get("/k");
                request.method = method.into();
                let decided = policy.route(&request, &candidates);
                assert_from_plugin(&decided.source, &version);
                prop_assert_eq!(decided.value, native.route(&request, &candidates));
                Ok(())
            })
            .unwrap();
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
