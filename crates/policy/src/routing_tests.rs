//! Tests of `route-affinity`: one case per rule, then properties.

use super::*;
use proptest::prelude::*;

fn facts(method: &str) -> RequestFacts {
    RequestFacts {
        method: Method::from_name(method),
        idempotent: true,
    }
}

/// A node table and candidates from compact specs, one per candidate in
/// ring order: `"a"` healthy, `"a!"` unhealthy, `"a@z1"` in zone `z1` (the
/// markers combine: `"a@z1!"`). The table holds each id once, sorted, so
/// that ring order and table order differ; a repeated id is one node (its
/// first spec gives the zone).
#[derive(Debug, Clone)]
struct Fixture {
    nodes: Vec<NodeInfo>,
    candidates: Vec<Candidate>,
}

fn parse(spec: &str) -> (&str, Option<&str>, bool) {
    let healthy = !spec.ends_with('!');
    let spec = spec.trim_end_matches('!');
    match spec.split_once('@') {
        Some((id, zone)) => (id, Some(zone), healthy),
        None => (spec, None, healthy),
    }
}

fn node_info(id: &str, zone: Option<&str>) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("http://127.0.0.1:7000/{id}"),
        zone: zone.map(str::to_string),
        weight: 1,
    }
}

fn candidate(node: NodeIndex, healthy: bool) -> Candidate {
    Candidate {
        node,
        healthy,
        failure_rate_permille: 0,
        latency_ms: 1,
    }
}

impl Fixture {
    fn new(specs: &[&str]) -> Fixture {
        let mut nodes: Vec<NodeInfo> = Vec::new();
        for (id, zone, _) in specs.iter().map(|spec| parse(spec)) {
            if !nodes.iter().any(|node| node.id == id) {
                nodes.push(node_info(id, zone));
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let candidates = specs
            .iter()
            .map(|spec| {
                let (id, _, healthy) = parse(spec);
                candidate(index_of(&nodes, id), healthy)
            })
            .collect();
        Fixture { nodes, candidates }
    }

    fn route(&self, policy: &RouteAffinity, method: &str) -> RoutePlan {
        policy.route(facts(method), &self.nodes, &self.candidates)
    }

    /// The plan's order as ids.
    fn ids(&self, plan: &RoutePlan) -> Vec<&str> {
        plan.order
            .iter()
            .map(|&node| self.nodes[node as usize].id.as_str())
            .collect()
    }
}

fn index_of(nodes: &[NodeInfo], id: &str) -> NodeIndex {
    nodes.iter().position(|node| node.id == id).unwrap() as NodeIndex
}

fn policy(json: &str) -> RouteAffinity {
    RouteAffinity::from_json(json).expect("valid config")
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
        ("duplicate nodes are kept once", "", vec!["a", "b", "a"], vec!["a", "b"]),
        ("a duplicate keeps its first place across the zone split", z1, vec!["a", "b@z1", "a"], vec!["b", "a"]),
    ];
    for (name, config, specs, expected) in cases {
        let fixture = Fixture::new(&specs);
        let plan = fixture.route(&policy(config), "GET");
        assert_eq!(fixture.ids(&plan), expected, "case: {name}");
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
        ("OPTIONS is not hedged", hedged, "OPTIONS", vec!["a", "b"], None),
        ("an unlisted method is not hedged", hedged, "PROPFIND", vec!["a", "b"], None),
        ("one node has nothing to hedge to", hedged, "GET", vec!["a"], None),
        ("unhealthy nodes are not hedge targets", hedged, "GET", vec!["a", "b!"], None),
    ];
    for (name, config, method, specs, expected) in cases {
        let plan = Fixture::new(&specs).route(&policy(config), method);
        assert_eq!(plan.hedge_delay_ms, expected, "case: {name}");
    }
}

#[test]
fn plan_is_bounded() {
    let nodes: Vec<NodeInfo> = (0..1000)
        .map(|i| node_info(&format!("n{i}"), None))
        .collect();
    let candidates: Vec<Candidate> = (0..1000).map(|i| candidate(i, true)).collect();
    let plan = RouteAffinity::default().route(facts("GET"), &nodes, &candidates);
    let expected: Vec<NodeIndex> = (0..limits::ROUTE_ORDER_MAX as NodeIndex).collect();
    assert_eq!(plan.order, expected);
}

#[test]
fn repeated_candidates_are_kept_once_small_or_large_index() {
    // Indexes below 256 are tracked by a bitset, larger ones by a scan of
    // the plan: both keep first occurrences only.
    let indexes = [3, 300, 3, 255, 256, 300, 0, 256, 4_000, 255];
    let candidates: Vec<Candidate> = indexes.iter().map(|&i| candidate(i, true)).collect();
    let plan = RouteAffinity::default().route(facts("GET"), &[], &candidates);
    assert_eq!(plan.order, [3, 300, 255, 256, 0, 4_000]);
}

#[test]
fn plan_allocates_no_more_than_it_can_hold() {
    let fixture = Fixture::new(&["a", "b", "c"]);
    let plan = fixture.route(&RouteAffinity::default(), "GET");
    assert_eq!(plan.order.capacity(), 3);
    let nodes: Vec<NodeInfo> = Vec::new();
    let many: Vec<Candidate> = (0..1000).map(|i| candidate(i, true)).collect();
    let plan = RouteAffinity::default().route(facts("GET"), &nodes, &many);
    assert_eq!(plan.order.capacity(), limits::ROUTE_ORDER_MAX);
}

#[test]
fn a_candidate_outside_the_table_has_no_zone() {
    let fixture = Fixture::new(&["a@z1", "b@z1"]);
    let outside = candidate(fixture.nodes.len() as NodeIndex, true);
    let far = candidate(NodeIndex::MAX, true);
    let candidates = [outside, fixture.candidates[0], far, fixture.candidates[1]];
    let plan = policy(r#"{"prefer_zone": "z1"}"#).route(facts("GET"), &fixture.nodes, &candidates);
    assert_eq!(plan.order, [0, 1, outside.node, far.node]);
    let no_table = RouteAffinity::default().route(facts("GET"), &[], &candidates);
    assert_eq!(no_table.order, [outside.node, 0, far.node, 1]);
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

/// Up to 12 zoned nodes, and a shuffled subset of indexes `0..16` as the
/// candidates (so some may lie outside the table), each healthy or not.
fn any_fixture() -> impl Strategy<Value = Fixture> {
    let zones = proptest::collection::vec(proptest::option::of(0u8..3), 0..12);
    let indexes =
        proptest::sample::subsequence((0..16).collect::<Vec<NodeIndex>>(), 0..=12).prop_shuffle();
    let health = proptest::collection::vec(any::<bool>(), 12);
    (zones, indexes, health).prop_map(|(zones, indexes, health)| Fixture {
        nodes: zones
            .iter()
            .enumerate()
            .map(|(i, zone)| node_info(&format!("n{i}"), zone.map(|z| format!("z{z}")).as_deref()))
            .collect(),
        candidates: indexes
            .into_iter()
            .zip(health)
            .map(|(node, healthy)| candidate(node, healthy))
            .collect(),
    })
}

proptest! {
    #[test]
    fn plan_is_the_healthy_subset_or_everything(
        fixture in any_fixture(),
        zone in proptest::option::of(0u8..3),
        hedge in proptest::option::of(1u32..100),
        read in any::<bool>(),
    ) {
        let config = RoutingConfig { prefer_zone: zone.map(|z| format!("z{z}")), hedge_delay_ms: hedge };
        let method = if read { "GET" } else { "POST" };
        let plan = fixture.route(&RouteAffinity::new(config.clone()).unwrap(), method);
        let candidates = &fixture.candidates;
        let healthy: Vec<NodeIndex> = candidates.iter().filter(|c| c.healthy).map(|c| c.node).collect();
        let expected_members: Vec<NodeIndex> = if healthy.is_empty() {
            candidates.iter().map(|c| c.node).collect()
        } else {
            healthy
        };
        let mut actual = plan.order.clone();
        // Within the preferred zone, and outside it, ring order is kept.
        let in_zone = |node: &NodeIndex| {
            let zone = fixture.nodes.get(*node as usize).and_then(|n| n.zone.as_ref());
            zone.is_some() && zone == config.prefer_zone.as_ref()
        };
        let zone_prefix = actual.iter().take_while(|node| in_zone(node)).count();
        prop_assert!(actual[zone_prefix..].iter().all(|node| !in_zone(node)), "zone nodes not first: {:?}", actual);
        let ring_position = |node: &NodeIndex| candidates.iter().position(|c| c.node == *node).unwrap();
        prop_assert!(actual[..zone_prefix].is_sorted_by_key(ring_position));
        prop_assert!(actual[zone_prefix..].is_sorted_by_key(ring_position));
        actual.sort_unstable();
        let mut expected_sorted = expected_members.clone();
        expected_sorted.sort_unstable();
        prop_assert_eq!(actual, expected_sorted);
        if plan.hedge_delay_ms.is_some() {
            prop_assert!(plan.order.len() >= 2);
            prop_assert!(read);
        }
    }
}
