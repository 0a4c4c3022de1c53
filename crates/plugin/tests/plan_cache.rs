//! The route-plan cache: only a routing plugin that declared
//! `cacheable-by-health-flags` is cached; a cached plan answers exactly
//! the facts, node table and candidates (nodes, order, healthy flags) it
//! was computed for; a call that read the request, the clock or the random
//! source is not cached; quarantine comes first; a new binding starts
//! empty.
//!
//! `zoo/route-probe` makes each real call visible: its plan is the
//! candidates rotated by the calls it answered before, and its hedge delay
//! is 1 + the health scalars it was passed. `route-affinity` is the real
//! plugin that declares the trait.

mod support;

use std::sync::Arc;

use levee_plugin::{BoundPlugin, Limits, NodeTable, PolicyKind, RoutingPolicy, Runtime, Source};
use levee_policy::{Candidate, NodeIndex, RouteAffinity, RoutePlan};
use support::{SEED, get, node_info, patient_limits, seeded_runtime, test_nodes};

fn bind(runtime: &Runtime, name: &str, config: &str, limits: Limits) -> Arc<BoundPlugin> {
    runtime
        .compile_as(name, &support::dist(name), PolicyKind::Routing)
        .unwrap()
        .bind(runtime, config, limits)
        .unwrap()
}

fn probe(runtime: &Runtime, config: &str) -> (RoutingPolicy, Arc<BoundPlugin>) {
    let bound = bind(runtime, "zoo/route-probe", config, patient_limits());
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound.clone())).unwrap();
    (policy, bound)
}

/// Three candidates with health scalars, the second one unhealthy.
fn three() -> Vec<Candidate> {
    [(0, true), (1, false), (2, true)]
        .into_iter()
        .map(|(node, healthy)| Candidate {
            node,
            healthy,
            failure_rate_permille: 20,
            latency_ms: 7,
        })
        .collect()
}

fn route(policy: &RoutingPolicy, nodes: &NodeTable, candidates: &[Candidate]) -> RoutePlan {
    route_as(policy, "GET", nodes, candidates)
}

fn route_as(
    policy: &RoutingPolicy,
    method: &str,
    nodes: &NodeTable,
    candidates: &[Candidate],
) -> RoutePlan {
    let request = get("/users").with_method(method);
    let decided = policy.route(&request, request.facts(), nodes, candidates);
    assert!(
        matches!(decided.source, Source::Plugin { .. }),
        "{:?}",
        decided.source
    );
    decided.value
}

/// (calls that reached the plugin, plans answered from the cache)
fn counts(bound: &BoundPlugin) -> (u64, u64) {
    let counters = bound.stats().counters;
    (counters.calls, counters.cached)
}

#[test]
fn a_plugin_that_did_not_declare_is_never_cached() {
    let runtime = seeded_runtime(SEED);
    let (policy, bound) = probe(&runtime, "{}");
    assert!(!bound.route_traits().cacheable_by_health_flags);
    assert_eq!(bound.stats().plan_cache, None);
    let candidates = three();
    let plans: Vec<Vec<NodeIndex>> = (0..4)
        .map(|_| route(&policy, test_nodes(), &candidates).order)
        .collect();
    // Every identical request reached the plugin: its plan rotates.
    assert_eq!(
        plans,
        [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
    );
    assert_eq!(counts(&bound), (4, 0));
    // And it was passed the health scalars: 1 + 3 × (20 + 7).
    let plan = route(&policy, test_nodes(), &candidates);
    assert_eq!(plan.hedge_delay_ms, Some(82));
}

#[test]
fn a_declared_plugin_answers_repeats_from_the_cache() {
    let runtime = seeded_runtime(SEED);
    let (policy, bound) = probe(&runtime, r#"{"declare_cacheable": true}"#);
    assert!(bound.route_traits().cacheable_by_health_flags);
    let candidates = three();
    let first = route(&policy, test_nodes(), &candidates);
    // The health scalars were passed as 0: hedge = 1.
    assert_eq!(first.hedge_delay_ms, Some(1));
    for _ in 0..5 {
        let decided = {
            let request = get("/users");
            policy.route(&request, request.facts(), test_nodes(), &candidates)
        };
        assert_eq!(decided.value, first, "the cached plan, not a rotation");
        assert!(matches!(decided.source, Source::Plugin { .. }));
        assert_eq!(decided.elapsed, None, "no plugin code ran");
    }
    assert_eq!(counts(&bound), (1, 5));
    // The scalars are not part of the key (the plugin never sees them).
    let mut slower = candidates.clone();
    slower[0].latency_ms = 900;
    slower[2].failure_rate_permille = 1_000;
    assert_eq!(route(&policy, test_nodes(), &slower), first);
    assert_eq!(counts(&bound), (1, 6));
    let cache = bound.stats().plan_cache.expect("declared: cached");
    assert_eq!(cache.entries, 1);
    assert_eq!(
        cache.entries_max as usize,
        levee_plugin::PLAN_CACHE_ENTRIES_MAX
    );
}

#[test]
fn a_healthy_flag_flip_is_a_miss_and_the_new_plan_reflects_it() {
    let runtime = seeded_runtime(SEED);
    let bound = bind(&runtime, "route-affinity", "{}", patient_limits());
    assert!(bound.route_traits().cacheable_by_health_flags);
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound.clone())).unwrap();
    let mut candidates = three();
    assert_eq!(route(&policy, test_nodes(), &candidates).order, [0, 2]);
    assert_eq!(route(&policy, test_nodes(), &candidates).order, [0, 2]);
    assert_eq!(counts(&bound), (1, 1));

    // Node 1 comes back: a new key, a call, and a plan that uses it.
    candidates[1].healthy = true;
    assert_eq!(route(&policy, test_nodes(), &candidates).order, [0, 1, 2]);
    assert_eq!(counts(&bound), (2, 1));
    // Node 0 is ejected: again.
    candidates[0].healthy = false;
    assert_eq!(route(&policy, test_nodes(), &candidates).order, [1, 2]);
    assert_eq!(counts(&bound), (3, 1));
    // Back to the first state: its entry is still valid, and answers.
    candidates[0].healthy = true;
    candidates[1].healthy = false;
    assert_eq!(route(&policy, test_nodes(), &candidates).order, [0, 2]);
    assert_eq!(counts(&bound), (3, 2));
}

#[test]
fn other_candidates_facts_or_table_are_misses() {
    let runtime = seeded_runtime(SEED);
    let (policy, bound) = probe(&runtime, r#"{"declare_cacheable": true}"#);
    let candidates = three();
    route(&policy, test_nodes(), &candidates);
    assert_eq!(counts(&bound), (1, 0));

    // Another key's replicas (other nodes, or the same in another order).
    let mut reordered = candidates.clone();
    reordered.reverse();
    route(&policy, test_nodes(), &reordered);
    route(&policy, test_nodes(), &candidates[..2]);
    assert_eq!(counts(&bound), (3, 0));
    // Other facts: a POST is not a GET.
    route_as(&policy, "POST", test_nodes(), &candidates);
    assert_eq!(counts(&bound), (4, 0));
    // Another node table (a configuration change), even an identical one.
    let table = NodeTable::new(test_nodes().nodes().to_vec()).unwrap();
    route(&policy, &table, &candidates);
    assert_eq!(counts(&bound), (5, 0));
    // Each of those is now cached in its own right.
    route(&policy, test_nodes(), &reordered);
    route_as(&policy, "POST", test_nodes(), &candidates);
    route(&policy, &table, &candidates);
    route(&policy, test_nodes(), &candidates);
    assert_eq!(counts(&bound), (5, 4));
}

#[test]
fn a_call_that_read_the_request_the_clock_or_randomness_is_not_cached() {
    let runtime = seeded_runtime(SEED);
    for read in ["request", "clock", "random"] {
        let config = format!(r#"{{"declare_cacheable": true, "read": "{read}"}}"#);
        let (policy, bound) = probe(&runtime, &config);
        let candidates = three();
        let plans: Vec<Vec<NodeIndex>> = (0..3)
            .map(|_| route(&policy, test_nodes(), &candidates).order)
            .collect();
        assert_eq!(
            plans,
            [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]],
            "{read}"
        );
        assert_eq!(counts(&bound), (3, 0), "{read}");
        assert_eq!(bound.stats().plan_cache.unwrap().entries, 0, "{read}");
    }
}

#[test]
fn the_cache_can_be_turned_off_per_binding() {
    let runtime = seeded_runtime(SEED);
    let limits = Limits {
        route_plan_cache: false,
        ..patient_limits()
    };
    let bound = bind(&runtime, "route-affinity", "{}", limits.clone());
    assert!(bound.route_traits().cacheable_by_health_flags);
    assert_eq!(bound.stats().plan_cache, None);
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound.clone())).unwrap();
    for _ in 0..3 {
        route(&policy, test_nodes(), &three());
    }
    assert_eq!(counts(&bound), (3, 0));

    // A declared plugin still sees its health scalars as 0: what it is
    // passed does not depend on the setting.
    let declared = r#"{"declare_cacheable": true}"#;
    let probe = bind(&runtime, "zoo/route-probe", declared, limits);
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(probe.clone())).unwrap();
    let plans: Vec<RoutePlan> = (0..2)
        .map(|_| route(&policy, test_nodes(), &three()))
        .collect();
    assert_eq!(plans[0].order, [0, 1, 2]);
    assert_eq!(plans[1].order, [1, 2, 0], "called again, not cached");
    assert!(plans.iter().all(|plan| plan.hedge_delay_ms == Some(1)));
}

#[test]
fn quarantine_comes_before_the_cache_and_a_new_binding_starts_empty() {
    let runtime = seeded_runtime(SEED);
    let (policy, bound) = probe(&runtime, r#"{"declare_cacheable": true}"#);
    let candidates = three();
    let first = route(&policy, test_nodes(), &candidates);
    route(&policy, test_nodes(), &candidates);
    assert_eq!(counts(&bound), (1, 1));

    // Quarantined: the native policy answers, the cache is not consulted.
    assert!(bound.component().quarantine("an operator's test"));
    let request = get("/users");
    let decided = policy.route(&request, request.facts(), test_nodes(), &candidates);
    assert!(matches!(decided.source, Source::Quarantined { .. }));
    let native = RouteAffinity::default().route(request.facts(), test_nodes().nodes(), &candidates);
    assert_eq!(decided.value, native);
    assert_eq!(counts(&bound), (1, 1));
    // Lifted: the entry (a valid answer of this binding) serves again.
    bound.component().clear_quarantine();
    assert_eq!(route(&policy, test_nodes(), &candidates), first);
    assert_eq!(counts(&bound), (1, 2));

    // The same version bound anew has its own, empty cache: a call.
    let (rebound_policy, rebound) = probe(&runtime, r#"{"declare_cacheable": true}"#);
    route(&rebound_policy, test_nodes(), &candidates);
    assert_eq!(counts(&rebound), (1, 0));
    // And swapping it into the first slot drops the old binding's cache
    // with it: the slot now answers from the new binding's.
    policy.bind(Some(rebound.clone())).unwrap();
    route(&policy, test_nodes(), &candidates);
    assert_eq!(counts(&rebound), (1, 1));
}

/// route-affinity cached decides exactly like the native policy on every
/// health pattern of a wide preference list, the first time and again.
#[test]
fn cached_route_affinity_plans_equal_native_ones() {
    let runtime = seeded_runtime(SEED);
    let config = r#"{"prefer_zone": "b", "hedge_delay_ms": 25}"#;
    let bound = bind(&runtime, "route-affinity", config, patient_limits());
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound.clone())).unwrap();
    let native = RouteAffinity::from_json(config).unwrap();
    let table = NodeTable::new(
        (0..5)
            .map(|i| node_info(&format!("m{i}"), Some(["a", "b"][i % 2])))
            .collect(),
    )
    .unwrap();
    for round in 0..2 {
        for pattern in 0..32u32 {
            let candidates: Vec<Candidate> = (0..5)
                .map(|node| Candidate {
                    node,
                    healthy: pattern & (1 << node) != 0,
                    failure_rate_permille: pattern * 7 % 1000,
                    latency_ms: round * 100 + node,
                })
                .collect();
            for method in ["GET", "POST"] {
                let request = get("/k").with_method(method);
                let plan = route_as(&policy, method, &table, &candidates);
                let expected = native.route(request.facts(), table.nodes(), &candidates);
                assert_eq!(
                    plan, expected,
                    "round {round} pattern {pattern:05b} {method}"
                );
            }
        }
    }
    // 64 keys, each called once and answered from the cache once.
    assert_eq!(counts(&bound), (64, 64));
}
