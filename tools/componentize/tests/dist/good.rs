//! The good plugins against the native `levee-policy` code: same inputs,
//! same `random-u64`, same answers, over grids that reach every rule.

use crate::convert;
use crate::harness::{self, instantiate_checkpoint, instantiate_retry, instantiate_routing};
use levee_policy::*;

/// Configs each plugin is compared under: defaults and a non-default one.
const RETRY_CONFIGS: [&str; 2] = [
    "{}",
    r#"{"max_attempts": 4, "base_delay_ms": 10, "max_delay_ms": 150,
        "retry_statuses": [429, 500, 503], "retry_after_max_ms": 700, "target": "same"}"#,
];
const ROUTING_CONFIGS: [&str; 2] = ["{}", r#"{"prefer_zone": "z1", "hedge_delay_ms": 20}"#];
const CHECKPOINT_CONFIGS: [&str; 2] = [
    "{}",
    r#"{"every_records": 10, "every_bytes": 1000, "every_ms": 500, "compact_reclaimable_bytes": 4000}"#,
];

fn request(method: &str, idempotent: bool, headers: &[(&str, &str)]) -> RequestInfo {
    RequestInfo {
        service: "kv".into(),
        method: method.into(),
        path: "/kv/a".into(),
        routing_key: "a".into(),
        idempotent,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

fn retry_inputs() -> Vec<(RequestInfo, AttemptOutcome, RetryContext)> {
    let requests = [
        request("GET", true, &[]),
        request("POST", false, &[]),
        request("POST", false, &[("idempotency-key", "k-1")]),
    ];
    let mut results: Vec<AttemptResult> = [429, 500, 502, 503, 504]
        .map(AttemptResult::Status)
        .to_vec();
    results.extend(
        [
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::Reset,
            ErrorKind::Protocol,
        ]
        .map(AttemptResult::Error),
    );
    let mut inputs = Vec::new();
    for request in &requests {
        for &result in &results {
            for attempt in 1..=4 {
                for retry_after_ms in [None, Some(300), Some(50_000)] {
                    for (budget_remaining, deadline_remaining_ms) in
                        [(0, 30_000), (3, 0), (3, 40), (3, 30_000)]
                    {
                        let outcome = AttemptOutcome {
                            node_id: "n1".into(),
                            attempt,
                            result,
                            elapsed_ms: 5,
                            retry_after_ms,
                        };
                        let context = RetryContext {
                            budget_remaining,
                            deadline_remaining_ms,
                            max_attempts: 3,
                            candidates: vec!["n1".into(), "n2".into()],
                        };
                        inputs.push((request.clone(), outcome, context));
                    }
                }
            }
        }
    }
    inputs
}

#[test]
fn retry_backoff_decides_like_native() {
    let inputs = retry_inputs();
    for config in RETRY_CONFIGS {
        let native = RetryBackoff::from_json(config).unwrap();
        let (mut store, plugin) = instantiate_retry("retry-backoff", config, 7);
        let (mut retried, mut given_up) = (0, 0);
        for (request, outcome, context) in &inputs {
            let calls_before = store.data().random_calls;
            let answer = plugin
                .levee_policy_retry()
                .call_decide(
                    &mut store,
                    &convert::request_info(request),
                    &convert::attempt_outcome(outcome),
                    &convert::retry_context(context),
                )
                .expect("decide");
            harness::refuel(&mut store);
            assert_eq!(
                store.data().random_calls,
                calls_before + 1,
                "random-u64 once per decide"
            );
            let random = store.data().last_random;
            let expected = native.decide(request, outcome, context, random);
            let actual = convert::decision(answer);
            assert_eq!(
                actual, expected,
                "config {config}, {outcome:?}, {context:?}"
            );
            match actual {
                RetryDecision::Retry { .. } => retried += 1,
                RetryDecision::GiveUp(_) => given_up += 1,
            }
        }
        // The grid must exercise both answers, or the comparison is hollow.
        assert!(
            retried > 50 && given_up > 50,
            "retried {retried}, gave up {given_up}"
        );
    }
}

fn candidate_lists() -> Vec<Vec<Node>> {
    // Every health/zone combination of three nodes, plus the empty list.
    let mut lists = vec![Vec::new()];
    for mask in 0..64u32 {
        let list = (0..3)
            .map(|i| Node {
                id: format!("n{i}"),
                address: format!("http://127.0.0.1:{}", 7000 + i),
                zone: Some(if mask >> (i + 3) & 1 == 1 { "z1" } else { "z2" }.into()),
                weight: 1,
                healthy: mask >> i & 1 == 1,
                failure_rate_permille: 0,
                latency_ms: 2,
            })
            .collect();
        lists.push(list);
    }
    lists
}

#[test]
fn route_affinity_routes_like_native() {
    for config in ROUTING_CONFIGS {
        let native = RouteAffinity::from_json(config).unwrap();
        let (mut store, plugin) = instantiate_routing("route-affinity", config);
        for method in ["GET", "POST"] {
            let request = request(method, method == "GET", &[]);
            for candidates in candidate_lists() {
                let wit_candidates: Vec<_> = candidates.iter().map(convert::node).collect();
                let answer = plugin
                    .levee_policy_routing()
                    .call_route(
                        &mut store,
                        &convert::request_info(&request),
                        &wit_candidates,
                    )
                    .expect("route");
                harness::refuel(&mut store);
                let expected = native.route(&request, &candidates);
                assert_eq!(
                    convert::route_plan(answer),
                    expected,
                    "{config} {candidates:?}"
                );
            }
        }
    }
}

#[test]
fn checkpoint_interval_decides_like_native() {
    let grid = [
        0u64,
        1,
        9,
        10,
        499,
        500,
        999,
        1000,
        3999,
        4000,
        1 << 30,
        u64::MAX,
    ];
    for config in CHECKPOINT_CONFIGS {
        let native = CheckpointInterval::from_json(config).unwrap();
        let (mut store, plugin) = instantiate_checkpoint("checkpoint-interval", config);
        let mut seen = std::collections::BTreeSet::new();
        for &records in &grid {
            for &bytes in &grid {
                for &ms in &grid {
                    for reclaimable in [0, 3999, 4000, 1 << 26, u64::MAX] {
                        let stats = LogStats {
                            records_since_checkpoint: records,
                            bytes_since_checkpoint: bytes,
                            ms_since_checkpoint: ms,
                            total_bytes: bytes.saturating_mul(2),
                            oldest_needed_lsn: 1,
                            reclaimable_bytes: reclaimable,
                        };
                        let answer = plugin
                            .levee_policy_checkpoint()
                            .call_decide(&mut store, convert::log_stats(&stats))
                            .expect("decide");
                        harness::refuel(&mut store);
                        let expected = native.decide(&stats);
                        assert_eq!(convert::action(answer), expected, "{config} {stats:?}");
                        seen.insert(format!("{expected:?}"));
                    }
                }
            }
        }
        assert_eq!(
            seen.len(),
            3,
            "every action reached under {config}: {seen:?}"
        );
    }
}

#[test]
fn good_plugins_reject_bad_config_like_native() {
    let cases = [
        (
            "retry-backoff",
            r#"{"max_attempts": 0}"#,
            RetryBackoff::from_json(r#"{"max_attempts": 0}"#).err(),
        ),
        ("retry-backoff", "[1]", RetryBackoff::from_json("[1]").err()),
    ];
    for (name, config, native_error) in cases {
        let mut store = harness::store(1);
        let plugin = harness::retry::RetryPolicy::instantiate(
            &mut store,
            &harness::component(name),
            &harness::linker(),
        )
        .unwrap();
        let answer = plugin
            .levee_policy_retry()
            .call_configure(&mut store, config)
            .unwrap();
        assert_eq!(answer.err(), native_error, "{name} {config}");
    }
    let routing_error = RouteAffinity::from_json(r#"{"hedge_delay_ms": 0}"#).err();
    let mut store = harness::store(1);
    let plugin = harness::routing::RoutingPolicy::instantiate(
        &mut store,
        &harness::component("route-affinity"),
        &harness::linker(),
    )
    .unwrap();
    let answer = plugin
        .levee_policy_routing()
        .call_configure(&mut store, r#"{"hedge_delay_ms": 0}"#)
        .unwrap();
    assert_eq!(answer.err(), routing_error);
    assert!(routing_error.is_some());
}
