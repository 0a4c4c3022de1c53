//! Tests of `route-affinity`: one case per rule, then properties.

use super::*;
use proptest::prelude::*;

fn request(method: &str) -> RequestInfo {
    RequestInfo {
        service: "kv".into(),
        method: method.into(),
        path: "/k/a".into(),
        routing_key: "a".into(),
        idempotent: true,
        headers: vec![],
    }
}

/// A node from a compact spec: `"a"` healthy, `"a!"` unhealthy, `"a@z1"` in
/// zone `z1` (the markers combine: `"a@z1!"`).
fn node(spec: &str) -> Node {
    let healthy = !spec.ends_with('!');
    let spec = spec.trim_end_matches('!');
    let (id, zone) = match spec.split_once('@') {
        Some((id, zone)) => (id, Some(zone.to_string())),
        None => (spec, None),
    };
    Node {
        id: id.into(),
        address: format!("http://127.0.0.1:7000/{id}"),
        zone,
        weight: 1,
        healthy,
        failure_rate_permille: 0,
        latency_ms: 1,
    }
}

fn nodes(specs: &[&str]) -> Vec<Node> {
    specs.iter().map(|spec| node(spec)).collect()
}

fn policy(json: &str) -> RouteAffinity {
    RouteAffinity::from_json(json).expect("valid config")
}

fn order(plan: &RoutePlan) -> Vec<&str> {
    plan.order.iter().map(String::as_str).collect()
}

#[test]
fn order_rules_table() {
    let z1 = r#"{"prefer_zone": "z1"}"#;
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = vec![
        ("keeps ring order", "", vec!["c", "a", "b"], vec!["c", "a", "b"]),
        ("skips unhealthy nodes", "", vec!["a!", "b", "c!", "d"], vec!["b", "d"]),
        ("all unhealthy falls back to ring order", "", vec!["b!", "a!", "c!"], vec!["b", "a", "c"]),
        ("no candidates, empty plan", "", vec![], vec![]),
        ("preferred zone first, stable", z1, vec!["a@z2", "b@z1", "c", "d@z1"], vec!["b", "d", "a", "c"]),
        ("unhealthy in-zone node still skipped", z1, vec!["a@z2", "b@z1!", "c@z1"], vec!["c", "a"]),
        ("no node in the zone keeps ring order", z1, vec!["a@z2", "b@z3"], vec!["a", "b"]),
        ("zone applies to the all-unhealthy fallback", z1, vec!["a@z2!", "b@z1!"], vec!["b", "a"]),
        ("zone names are compared exactly", z1, vec!["a@Z1", "b@z1"], vec!["b", "a"]),
        ("duplicate ids are kept once", "", vec!["a", "b", "a"], vec!["a", "b"]),
    ];
    for (name, config, candidates, expected) in cases {
        let plan = policy(config).route(&request("GET"), &nodes(&candidates));
        assert_eq!(order(&plan), expected, "case: {name}");
    }
}

/// Name, config JSON, method, candidates, expected hedge delay.
type HedgeCase = (
    &'static str,
    &'static str,
    &'static str,
    Vec<&'static str>,
    Option<u32>,
);

#[test]
fn hedge_rules_table() {
    let hedged = r#"{"hedge_delay_ms": 40}"#;
    #[rustfmt::skip]
    let cases: Vec<HedgeCase> = vec![
        ("off by default", "", "GET", vec!["a", "b"], None),
        ("GET is hedged", hedged, "GET", vec!["a", "b"], Some(40)),
        ("HEAD is hedged", hedged, "HEAD", vec!["a", "b"], Some(40)),
        ("PUT is not hedged", hedged, "PUT", vec!["a", "b"], None),
        ("POST is not hedged", hedged, "POST", vec!["a", "b"], None),
        ("one node has nothing to hedge to", hedged, "GET", vec!["a"], None),
        ("unhealthy nodes are not hedge targets", hedged, "GET", vec!["a", "b!"], None),
    ];
    for (name, config, method, candidates, expected) in cases {
        let plan = policy(config).route(&request(method), &nodes(&candidates));
        assert_eq!(plan.hedge_delay_ms, expected, "case: {name}");
    }
}

#[test]
fn plan_is_bounded() {
    let many: Vec<Node> = (0..1000).map(|i| node(&format!("n{i}"))).collect();
    let plan = RouteAffinity::default().route(&request("GET"), &many);
    assert_eq!(plan.order.len(), limits::ROUTE_ORDER_MAX);
    assert_eq!(plan.order[0], "n0");
    assert_eq!(
        plan.order[limits::ROUTE_ORDER_MAX - 1],
        format!("n{}", limits::ROUTE_ORDER_MAX - 1)
    );
}

#[test]
fn config_parses_and_validates() {
    let config = policy(r#"{"prefer_zone": "eu-1", "hedge_delay_ms": 15}"#).config;
    assert_eq!(
        config,
        RoutingConfig {
            prefer_zone: Some("eu-1".into()),
            hedge_delay_ms: Some(15)
        }
    );
    assert_eq!(policy("").config, RoutingConfig::default());
    let long_zone = format!(
        "{{\"prefer_zone\": \"{}\"}}",
        "z".repeat(ZONE_BYTES_MAX + 1)
    );
    let cases = [
        (r#"{"prefer_zone": ""}"#, "prefer_zone"),
        (long_zone.as_str(), "prefer_zone"),
        (r#"{"prefer_zone": 3}"#, "prefer_zone"),
        (r#"{"hedge_delay_ms": 0}"#, "hedge_delay_ms"),
        (r#"{"hedge_delay_ms": 60001}"#, "hedge_delay_ms"),
        (r#"{"hedge_delay_ms": 1.5}"#, "hedge_delay_ms"),
        (r#"{"zone": "z1"}"#, "zone"),
    ];
    for (json, field) in cases {
        let error = RouteAffinity::from_json(json).unwrap_err();
        assert!(error.contains(&format!("`{field}`")), "{json} -> {error}");
    }
}

fn any_candidates() -> impl Strategy<Value = Vec<Node>> {
    let one = (any::<bool>(), proptest::option::of(0u8..3));
    proptest::collection::vec(one, 0..12).prop_map(|flags| {
        flags
            .into_iter()
            .enumerate()
            .map(|(i, (healthy, zone))| Node {
                healthy,
                zone: zone.map(|z| format!("z{z}")),
                ..node(&format!("n{i}"))
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn plan_is_the_healthy_subset_or_everything(
        candidates in any_candidates(),
        zone in proptest::option::of(0u8..3),
        hedge in proptest::option::of(1u32..100),
    ) {
        let config = RoutingConfig { prefer_zone: zone.map(|z| format!("z{z}")), hedge_delay_ms: hedge };
        let plan = RouteAffinity::new(config.clone()).unwrap().route(&request("GET"), &candidates);
        let healthy: Vec<&str> = candidates.iter().filter(|n| n.healthy).map(|n| n.id.as_str()).collect();
        let expected_members: Vec<&str> = if healthy.is_empty() {
            candidates.iter().map(|n| n.id.as_str()).collect()
        } else {
            healthy
        };
        let mut actual = order(&plan);
        // Within the preferred zone, and outside it, ring order is kept.
        let in_zone = |id: &&str| candidates.iter().any(|n| n.id == *id && n.zone.is_some() && n.zone == config.prefer_zone);
        let zone_prefix = actual.iter().take_while(|id| in_zone(id)).count();
        prop_assert!(actual[zone_prefix..].iter().all(|id| !in_zone(id)), "zone nodes not first: {:?}", actual);
        let ring_position = |id: &&str| candidates.iter().position(|n| n.id == *id).unwrap();
        prop_assert!(actual[..zone_prefix].is_sorted_by_key(ring_position));
        prop_assert!(actual[zone_prefix..].is_sorted_by_key(ring_position));
        actual.sort_unstable();
        let mut expected_sorted = expected_members.clone();
        expected_sorted.sort_unstable();
        prop_assert_eq!(actual, expected_sorted);
        if plan.hedge_delay_ms.is_some() {
            prop_assert!(plan.order.len() >= 2);
        }
    }
}
