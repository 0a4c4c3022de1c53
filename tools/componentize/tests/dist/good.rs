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

/// The request every call is lent; the good plugins never read it, so its
/// content cannot change an answer.
fn request(method: &str) -> harness::RequestData {
    harness::RequestData {
        service: "kv".into(),
        method: method.into(),
        path: "/kv/a".into(),
        routing_key: "a".into(),
        headers: vec![("idempotency-key".into(), "k-1".into())],
    }
}

fn facts(method: Method, idempotent: bool) -> RequestFacts {
    RequestFacts { method, idempotent }
}

/// A node table of three, with the given zones.
fn table(zones: [&str; 3]) -> Vec<NodeInfo> {
    (0..3)
        .map(|i| NodeInfo {
            id: format!("n{i}"),
            address: format!("http://127.0.0.1:{}", 7000 + i),
            zone: Some(zones[i].to_string()),
            weight: 1,
        })
        .collect()
}

/// Candidate nodes of every retry context, in routing order.
const RETRY_CANDIDATES: [NodeIndex; 2] = [1, 2];

fn retry_inputs() -> Vec<(RequestFacts, AttemptOutcome, RetryContext<'static>)> {
    let all_facts = [
        facts(Method::Get, true),
        facts(Method::Post, false),
        // A POST the host found an `Idempotency-Key` on.
        facts(Method::Post, true),
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
    for &facts in &all_facts {
        for &result in &results {
            for attempt in 1..=4 {
                for retry_after_ms in [None, Some(300), Some(50_000)] {
                    for (budget_remaining, deadline_remaining_ms) in
                        [(0, 30_000), (3, 0), (3, 40), (3, 30_000)]
                    {
                        let outcome = AttemptOutcome {
                            node: 1,
                            attempt,
                            result,
                            elapsed_ms: 5,
                            retry_after_ms,
                        };
                        let context = RetryContext {
                            budget_remaining,
                            deadline_remaining_ms,
                            max_attempts: 3,
                            candidates: &RETRY_CANDIDATES,
                        };
                        inputs.push((facts, outcome, context));
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
    let nodes: Vec<_> = table(["z1", "z1", "z2"])
        .iter()
        .map(convert::node_info)
        .collect();
    for config in RETRY_CONFIGS {
        let native = RetryBackoff::from_json(config).unwrap();
        let (mut store, plugin) = instantiate_retry("retry-backoff", config, 7);
        let retry = plugin.levee_policy_retry();
        retry.call_set_nodes(&mut store, &nodes).expect("set-nodes");
        let (mut retried, mut given_up) = (0, 0);
        for (facts, outcome, context) in &inputs {
            let calls_before = store.data().random_calls;
            let answer = harness::with_request(&mut store, &request("POST"), |store| {
                retry.call_decide(
                    store,
                    convert::facts(*facts),
                    convert::attempt_outcome(outcome),
                    &convert::retry_context(context),
                )
            })
            .expect("decide");
            harness::refuel(&mut store);
            assert_eq!(
                store.data().random_calls,
                calls_before + 1,
                "random-u64 once per decide"
            );
            let random = store.data().last_random;
            let expected = native.decide(*facts, outcome, context, random);
            let actual = convert::decision(answer);
            assert_eq!(
                actual, expected,
                "config {config}, {facts:?}, {outcome:?}, {context:?}"
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
        assert!(
            store.data().headers_asked.is_empty(),
            "retry-backoff needs no header"
        );
    }
}

/// Every zone assignment of the three-node table.
fn tables() -> Vec<Vec<NodeInfo>> {
    (0..8u32)
        .map(|mask| table([0, 1, 2].map(|i| if mask >> i & 1 == 1 { "z1" } else { "z2" })))
        .collect()
}

/// Every health combination of the three nodes in a ring order that is
/// not the table's, the same with a candidate outside the table, and the
/// empty list.
fn candidate_lists() -> Vec<Vec<Candidate>> {
    let candidate = |node, healthy| Candidate {
        node,
        healthy,
        failure_rate_permille: 0,
        latency_ms: 2,
    };
    let mut lists = vec![Vec::new()];
    for mask in 0..8u32 {
        let list: Vec<Candidate> = [2, 0, 1]
            .into_iter()
            .map(|node| candidate(node, mask >> node & 1 == 1))
            .collect();
        let mut with_stranger = list.clone();
        with_stranger.insert(1, candidate(7, mask & 1 == 1));
        lists.extend([list, with_stranger]);
    }
    lists
}

#[test]
fn route_affinity_routes_like_native() {
    for config in ROUTING_CONFIGS {
        let native = RouteAffinity::from_json(config).unwrap();
        let (mut store, plugin) = instantiate_routing("route-affinity", config);
        let routing = plugin.levee_policy_routing();
        let mut hedged = 0;
        for nodes in tables() {
            let wit_nodes: Vec<_> = nodes.iter().map(convert::node_info).collect();
            routing
                .call_set_nodes(&mut store, &wit_nodes)
                .expect("set-nodes");
            for method in [Method::Get, Method::Post] {
                let facts = facts(method, method == Method::Get);
                for candidates in candidate_lists() {
                    let wit_candidates: Vec<_> =
                        candidates.iter().map(convert::candidate).collect();
                    let answer = harness::with_request(&mut store, &request("GET"), |store| {
                        routing.call_route(store, convert::facts(facts), &wit_candidates)
                    })
                    .expect("route");
                    harness::refuel(&mut store);
                    let expected = native.route(facts, &nodes, &candidates);
                    hedged += usize::from(expected.hedge_delay_ms.is_some());
                    assert_eq!(
                        convert::route_plan(answer),
                        expected,
                        "{config} {nodes:?} {candidates:?}"
                    );
                }
            }
        }
        assert_eq!(hedged > 0, config.contains("hedge"), "{config}");
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

/// route-affinity's plan depends only on the facts, the table and the
/// candidates' order and healthy flags, whatever the config: it says so.
#[test]
fn route_affinity_declares_its_plans_cacheable() {
    for config in ["{}", r#"{"prefer_zone": "z1", "hedge_delay_ms": 20}"#] {
        let mut store = harness::store(1);
        let plugin = harness::routing::RoutingPolicy::instantiate(
            &mut store,
            &harness::component("route-affinity"),
            &harness::linker(),
        )
        .unwrap();
        let traits = plugin
            .levee_policy_routing()
            .call_configure(&mut store, config)
            .unwrap()
            .expect("config accepted");
        assert!(traits.cacheable_by_health_flags, "{config}");
    }
}
