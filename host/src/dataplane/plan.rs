//! The routing plan of one read: the key's replicas from the ring, less
//! those that still owe a write to the key (read-your-writes routing, see
//! [`lagging_slots`]), put in order by the routing policy (a bound plugin,
//! or the native `route-affinity` computed over node indices without
//! allocation), with the hedge delay, resolved to node indices; and what the policies learn
//! about the request: its [`RequestFacts`] (scalars) and the inbound
//! request itself behind [`RequestView`] (zero-copy: a plugin reads only
//! the strings it asks for, straight from the request).

use levee_policy::limits::is_credential_header;
use levee_policy::{Candidate, Method, NodeIndex, RequestFacts, RequestView};

use crate::cluster::ring::{Preference, REPLICAS_MAX};
use crate::cluster::service::{Service, policy_index};
use crate::dataplane::inbound::Inbound;
use crate::replication::hints::HintLedger;

/// The routing plan resolved to node indices, without allocation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Node indices (into `Service::nodes` and the node table) in plan
    /// order; the first `len` are meaningful.
    nodes: [NodeIndex; REPLICAS_MAX],
    pub(super) len: usize,
    pub(super) hedge_delay_ms: Option<u64>,
}

impl Plan {
    fn empty() -> Plan {
        Plan {
            nodes: [0; REPLICAS_MAX],
            len: 0,
            hedge_delay_ms: None,
        }
    }

    fn push(&mut self, node: usize) {
        self.nodes[self.len] = policy_index(node);
        self.len += 1;
    }

    /// The node at `position` (wrapping).
    pub(super) fn get(&self, position: usize) -> usize {
        debug_assert!(position < self.len);
        self.nodes[position % self.len] as usize
    }

    pub(super) fn position_of(&self, node: usize) -> Option<usize> {
        self.indexes().iter().position(|&n| n as usize == node)
    }

    /// The plan's nodes as the policies name them, in order.
    pub(super) fn indexes(&self) -> &[NodeIndex] {
        &self.nodes[..self.len]
    }
}

/// What the policies need to know about `inbound`, as scalars: the
/// method's class, and whether sending it twice is harmless (an idempotent
/// method, or a non-empty `Idempotency-Key`).
pub(super) fn request_facts(inbound: &Inbound) -> RequestFacts {
    RequestFacts {
        method: Method::from_name(inbound.method.as_str()),
        idempotent: inbound.is_idempotent(),
    }
}

/// The inbound request as a policy reads it, without copying: the plugin
/// runtime copies (and bounds) only the strings a plugin asks for.
/// Credentials are never shown.
impl RequestView for Inbound {
    fn service(&self) -> &str {
        self.service().name()
    }

    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.path_and_query.as_str()
    }

    fn routing_key(&self) -> &str {
        Inbound::routing_key(self)
    }

    /// Any case of `name`; `None` for credentials, absent headers and
    /// values that are not UTF-8.
    fn header(&self, name: &str) -> Option<&str> {
        if is_credential_header(name) {
            return None;
        }
        let value = self.headers.get(name)?;
        std::str::from_utf8(value.as_bytes()).ok()
    }
}

/// The slots of `preference` (bit `i` for its `i`-th replica) to leave
/// out of a read's plan: the replicas the hint ledger's lag index says
/// still owe a write to the request's key (a miss the handoff has not
/// delivered yet, or a send still in flight), so that a read after an
/// acknowledged write never lands on a replica without it. 0 for anything
/// but GET and HEAD, and when every replica owes the key: then the read
/// goes to them all as usual (counted; stale answers are still caught
/// against the recent versions). One atomic load while nothing is owed.
pub(super) fn lagging_slots(
    service: &Service,
    inbound: &Inbound,
    preference: &Preference,
    ledger: &HintLedger,
) -> u64 {
    if !inbound.is_read() {
        return 0;
    }
    let ids = preference
        .iter()
        .map(|node| service.nodes[node].spec.id.as_str());
    let lagging = ledger.lagging(service.name(), inbound.routing_key(), ids);
    if lagging == 0 {
        return 0;
    }
    let all = (1u64 << preference.len()) - 1;
    if lagging & all == all {
        ledger.count_read_all_lagging();
        return 0;
    }
    lagging
}

fn skipped(lagging: u64, slot: usize) -> bool {
    lagging & (1 << slot) != 0
}

/// The native `route-affinity` plan, computed over node indices: used when
/// no routing plugin is bound, i.e. on almost every request, where building
/// even the policy's scalar inputs (a `Candidate` per replica) and its
/// answer (an order `Vec`) would cost allocations for nothing. The rules
/// are `levee_policy::RouteAffinity::route`'s, applied to the same inputs;
/// a property test checks that both always agree.
pub(super) fn native_plan(
    service: &Service,
    inbound: &Inbound,
    now_ms: u64,
    ledger: &HintLedger,
) -> Plan {
    let preference = service.preference(inbound.routing_key().as_bytes());
    let lagging = lagging_slots(service, inbound, &preference, ledger);
    let native = service.policies.routing.native();
    let mut nodes = [0usize; REPLICAS_MAX];
    let mut healthy = [false; REPLICAS_MAX];
    let mut zones: [Option<&str>; REPLICAS_MAX] = [None; REPLICAS_MAX];
    let mut len = 0;
    for (slot, node) in preference.iter().enumerate() {
        if skipped(lagging, slot) {
            continue;
        }
        nodes[len] = node;
        healthy[len] = service.nodes[node].health.is_healthy(now_ms);
        zones[len] = service.nodes[node].spec.zone.as_deref();
        len += 1;
    }
    let mut plan = affinity_order(
        &nodes[..len],
        &healthy[..len],
        &zones[..len],
        native.config.prefer_zone.as_deref(),
    );
    let hedge = if inbound.is_read() && plan.len >= 2 {
        native.config.hedge_delay_ms
    } else {
        None
    };
    plan.hedge_delay_ms = hedge.map(u64::from).or(service.spec.hedge_delay_ms);
    plan
}

/// `route-affinity`'s order: healthy candidates only (all of them when none
/// is healthy), those in `prefer_zone` first, each group in ring order.
fn affinity_order(
    nodes: &[usize],
    healthy: &[bool],
    zones: &[Option<&str>],
    prefer_zone: Option<&str>,
) -> Plan {
    debug_assert!(nodes.len() == healthy.len() && nodes.len() == zones.len());
    let mut plan = Plan::empty();
    let any_healthy = healthy.iter().any(|&h| h);
    let in_zone = |slot: usize| matches!((prefer_zone, zones[slot]), (Some(p), Some(z)) if p == z);
    for preferred_pass in [true, false] {
        for slot in 0..nodes.len() {
            if (healthy[slot] || !any_healthy) && in_zone(slot) == preferred_pass {
                plan.push(nodes[slot]);
            }
        }
    }
    plan
}

/// Asks the bound routing plugin (through its guarded policy) to order
/// the key's replicas: candidates as scalars (index and health), the
/// request lent as a view, the node table as the service built it.
pub(super) fn plugin_plan(
    service: &Service,
    inbound: &Inbound,
    facts: RequestFacts,
    now_ms: u64,
    ledger: &HintLedger,
) -> Plan {
    let preference = service.preference(inbound.routing_key().as_bytes());
    let lagging = lagging_slots(service, inbound, &preference, ledger);
    let mut candidates = [Candidate::default(); REPLICAS_MAX];
    let mut count = 0;
    for (slot, node) in preference.iter().enumerate() {
        if !skipped(lagging, slot) {
            candidates[count] = service.candidate(node, now_ms);
            count += 1;
        }
    }
    let candidates = &candidates[..count];
    let route = service
        .policies
        .route(inbound, facts, &service.node_table, candidates);
    let mut plan = Plan::empty();
    // The guarded policy keeps only candidates, each once: every entry is
    // one of the key's replicas that is not skipped.
    for &node in route.order.iter().take(REPLICAS_MAX) {
        let node = node as usize;
        if candidates.iter().any(|c| c.node as usize == node) && plan.position_of(node).is_none() {
            plan.push(node);
        }
    }
    if plan.len == 0 {
        for candidate in candidates {
            plan.push(candidate.node as usize);
        }
    }
    assert!(plan.len > 0, "a service has at least one node");
    plan.hedge_delay_ms = route
        .hedge_delay_ms
        .map(u64::from)
        .or(service.spec.hedge_delay_ms);
    plan
}

/// Bounded loads for reads (Mirrokni, Thorup & Zadimoghaddam 2016,
/// *Consistent Hashing with Bounded Loads*; HAProxy's
/// `hash-balance-factor`): with `read_balance_factor_percent` = `f` (0 is
/// off), a node of weight `w` may take a read while its attempts in flight
/// are under `max(1, ceil((T + 1) × f/100 × w / W))`, where `T` is the
/// service's attempts in flight over all its nodes and `W` their total
/// weight. The plan's nodes over that bound move after the others, each
/// group keeping its order, so a replica piling up slow reads is asked
/// last instead of first. Reads (GET, HEAD) only: where a key lives and
/// where its writes go never change. When every node of the plan is over,
/// the order stays. `O(nodes)` relaxed loads, only when enabled.
pub(super) fn bound_loads(service: &Service, inbound: &Inbound, plan: &mut Plan) {
    let factor = u64::from(service.spec.read_balance_factor_percent);
    if factor == 0 || plan.len < 2 || !inbound.is_read() {
        return;
    }
    let mut total = 0u64;
    let mut weight_total = 0u64;
    for node in &service.nodes {
        total += u64::from(node.health.in_flight());
        weight_total += u64::from(node.spec.weight);
    }
    let over = |node: usize| {
        let node = &service.nodes[node];
        let share = (total + 1) * factor * u64::from(node.spec.weight);
        let bound = share.div_ceil(100 * weight_total.max(1)).max(1);
        u64::from(node.health.in_flight()) >= bound
    };
    let mut within = Plan::empty();
    let mut later = Plan::empty();
    for &node in plan.indexes() {
        if over(node as usize) {
            later.push(node as usize);
        } else {
            within.push(node as usize);
        }
    }
    if later.len == 0 || within.len == 0 {
        return;
    }
    for &node in later.indexes() {
        within.push(node as usize);
    }
    plan.nodes = within.nodes;
}

#[cfg(test)]
mod native_plan_tests {
    use super::*;
    use levee_policy::NodeInfo;
    use proptest::prelude::*;

    proptest! {
        /// The index-based fast path and the reference `RouteAffinity`
        /// decide identically.
        #[test]
        fn affinity_order_matches_route_affinity(
            candidates in proptest::collection::vec((any::<bool>(), 0u8..3), 1..8),
            prefer in 0u8..3,
            read in any::<bool>(),
            hedge in proptest::option::of(1u32..1000),
        ) {
            let zone = |z: u8| (z > 0).then(|| format!("z{z}"));
            let prefer_zone = zone(prefer);
            let nodes: Vec<NodeInfo> = candidates.iter().enumerate().map(|(i, (_, z))| NodeInfo {
                id: format!("n{i}"),
                address: format!("http://127.0.0.1:{}", 7000 + i),
                zone: zone(*z),
                weight: 1,
            }).collect();
            let scalars: Vec<Candidate> = candidates.iter().enumerate().map(|(i, (healthy, _))| Candidate {
                node: i as NodeIndex,
                healthy: *healthy,
                ..Candidate::default()
            }).collect();
            let reference = levee_policy::RouteAffinity::new(levee_policy::RoutingConfig {
                prefer_zone: prefer_zone.clone(),
                hedge_delay_ms: hedge,
            }).unwrap();
            let facts = RequestFacts {
                method: if read { Method::Get } else { Method::Post },
                idempotent: read,
            };
            let expected = reference.route(facts, &nodes, &scalars);

            let indices: Vec<usize> = (0..nodes.len()).collect();
            let healthy: Vec<bool> = scalars.iter().map(|c| c.healthy).collect();
            let zones: Vec<Option<&str>> = nodes.iter().map(|n| n.zone.as_deref()).collect();
            let plan = affinity_order(&indices, &healthy, &zones, prefer_zone.as_deref());
            prop_assert_eq!(plan.indexes(), expected.order.as_slice());
            let fast_hedge = if read && plan.len >= 2 { hedge } else { None };
            prop_assert_eq!(fast_hedge, expected.hedge_delay_ms);
        }
    }
}

/// The policies read the inbound request through [`RequestView`], end to
/// end: `zoo/echo-request` (a retry plugin) gives up with what it read
/// through the WIT `request` interface and the size of the node table
/// `set-nodes` gave it: `service|method|path|key|x-echo|authorization|nodes=N`.
#[cfg(test)]
mod request_view_tests {
    use std::sync::Arc;

    use axum::body::Body;
    use hyper::Request;
    use levee_plugin::{PolicyKind, Runtime, RuntimeOptions, Source};
    use levee_policy::{AttemptOutcome, AttemptResult, RetryContext, RetryDecision};

    use super::*;
    use crate::base::clock;
    use crate::cluster::service::bind_dist_plugin;
    use crate::config::ServiceSpec;
    use crate::replication::hints::NodeRef;

    fn service(runtime: &Runtime, nodes: usize) -> Arc<Service> {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "kv",
            "nodes": (0..nodes)
                .map(|i| serde_json::json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 1 + i)}))
                .collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        }))
        .unwrap();
        spec.validate().unwrap();
        Arc::new(Service::build(spec, runtime).unwrap())
    }

    async fn read_inbound(service: &Arc<Service>, request: Request<Body>) -> Inbound {
        let upstream = request.uri().path().strip_prefix("/kv").unwrap().to_owned();
        Inbound::read(service, request, &upstream, clock::now_ms())
            .await
            .unwrap()
    }

    /// What echo-request answers about `inbound` after a 503 from node 0.
    fn echo(service: &Service, inbound: &Inbound) -> String {
        let candidates = [0, 1, 2];
        let context = RetryContext {
            budget_remaining: 10,
            deadline_remaining_ms: 10_000,
            max_attempts: 3,
            candidates: &candidates,
        };
        let outcome = AttemptOutcome {
            node: 0,
            attempt: 1,
            result: AttemptResult::Status(503),
            elapsed_ms: 1,
            retry_after_ms: None,
        };
        let decided = service.policies.decide_retry(
            inbound,
            request_facts(inbound),
            &service.node_table,
            &outcome,
            &context,
        );
        assert!(
            matches!(decided.source, Source::Plugin { .. }),
            "{:?}",
            decided.source
        );
        match decided.value {
            RetryDecision::GiveUp(reason) => reason,
            other => panic!("echo-request gives up, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_retry_plugin_reads_the_inbound_request_and_the_node_table() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let bound = bind_dist_plugin(&runtime, "zoo/echo-request.wasm", PolicyKind::Retry, "{}");
        // A plugin reads only the headers its binding lists (by default
        // `idempotency-key`): this one lists `x-echo`.
        let listed = levee_plugin::HeaderAllowlist::new(&["x-echo"]).unwrap();
        let limits = bound.limits().clone();
        let bound = (bound.component())
            .bind_with_headers(&runtime, "{}", limits, listed)
            .unwrap();
        let three = service(&runtime, 3);
        crate::policy::bind::bind_policy(&three, PolicyKind::Retry, Some(bound.clone())).unwrap();

        let request = Request::builder()
            .method("PROPFIND")
            .uri("/kv/users/42?view=full")
            .header("X-Echo", "hello")
            .header("Authorization", "Bearer secret")
            .header("Idempotency-Key", "k1")
            .body(Body::empty())
            .unwrap();
        let inbound = read_inbound(&three, request).await;
        let facts = request_facts(&inbound);
        assert_eq!((facts.method, facts.idempotent), (Method::Other, true));
        assert_eq!(
            echo(&three, &inbound),
            "kv|PROPFIND|/users/42?view=full|42|hello|-|nodes=3"
        );
        // The view itself hides credentials whatever the case.
        assert_eq!(RequestView::header(&inbound, "x-echo"), Some("hello"));
        assert_eq!(RequestView::header(&inbound, "AUTHORIZATION"), None);
        assert_eq!(RequestView::header(&inbound, "authorization"), None);
        // The same table again is not given again.
        echo(&three, &inbound);
        assert_eq!(bound.stats().counters.node_tables_given, 1);

        // A configuration change builds a new service, with a new table: the
        // same instance is given it before its next decision, once.
        let four = service(&runtime, 4);
        crate::policy::bind::bind_policy(&four, PolicyKind::Retry, Some(bound.clone())).unwrap();
        let request = Request::get("/kv/k/x").body(Body::empty()).unwrap();
        let plain = read_inbound(&four, request).await;
        let facts = request_facts(&plain);
        assert_eq!((facts.method, facts.idempotent), (Method::Get, true));
        assert_eq!(echo(&four, &plain), "kv|GET|/k/x|x|-|-|nodes=4");
        echo(&four, &plain);
        assert_eq!(bound.stats().counters.node_tables_given, 2);
        assert_eq!(bound.stats().counters.fallbacks, 0);
    }

    /// A routing plugin orders the key's replicas by index exactly as the
    /// native fast path does (route-affinity, the same config given to the
    /// plugin and, as `fallback`, to the native policy).
    #[tokio::test]
    async fn a_routing_plugin_plans_like_the_native_fast_path() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let config = serde_json::json!({"prefer_zone": "b", "hedge_delay_ms": 30});
        let nodes: Vec<serde_json::Value> = ["a", "b", "a", "b"]
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                serde_json::json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 1 + i), "zone": zone})
            })
            .collect();
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "kv",
            "nodes": nodes,
            "replicas": 3,
            "write_quorum": 2,
            "key": {"path_segment": 1},
            "policies": {"routing": {"plugin": "route-affinity", "config": config, "fallback": config}},
        }))
        .unwrap();
        spec.validate().unwrap();
        let service = Arc::new(Service::build(spec, &runtime).unwrap());
        let bound = bind_dist_plugin(
            &runtime,
            "route-affinity.wasm",
            PolicyKind::Routing,
            &config.to_string(),
        );
        crate::policy::bind::bind_policy(&service, PolicyKind::Routing, Some(bound.clone()))
            .unwrap();
        for key in ["alice", "bob", "carol", "dave", "erin"] {
            for method in ["GET", "PUT"] {
                let request = Request::builder()
                    .method(method)
                    .uri(format!("/kv/k/{key}"))
                    .body(Body::empty())
                    .unwrap();
                let inbound = read_inbound(&service, request).await;
                let now_ms = clock::now_ms();
                let ledger = HintLedger::new(0);
                let facts = request_facts(&inbound);
                let by_plugin = plugin_plan(&service, &inbound, facts, now_ms, &ledger);
                let native = native_plan(&service, &inbound, now_ms, &ledger);
                assert_eq!(by_plugin.indexes(), native.indexes(), "{method} {key}");
                assert_eq!(by_plugin.hedge_delay_ms, native.hedge_delay_ms);
                assert_eq!(by_plugin.len, 3);
                // A replica that still owes the key is left out of reads,
                // before either orders the rest.
                let first = native.get(0);
                let owing = NodeRef::new("kv", &service.nodes[first].spec.id);
                ledger.begin_append().register_write(1, key, &[owing]);
                let by_plugin = plugin_plan(&service, &inbound, facts, now_ms, &ledger);
                let native = native_plan(&service, &inbound, now_ms, &ledger);
                assert_eq!(by_plugin.indexes(), native.indexes(), "{method} {key}");
                let expected = if method == "GET" { 2 } else { 3 };
                assert_eq!(
                    (native.len, native.position_of(first).is_none()),
                    (expected, method == "GET")
                );
            }
        }
        let counters = bound.stats().counters;
        // The second PUT plans (same candidates) come from the plan cache.
        assert_eq!(
            (counters.ok, counters.cached, counters.fallbacks),
            (15, 5, 0)
        );
        assert_eq!(counters.node_tables_given, 1);
    }

    /// The read balance factor moves a replica over its bound of attempts
    /// in flight after the others, for reads only, and only while it is.
    #[tokio::test]
    async fn bounded_loads_move_a_loaded_replica_last_for_reads_only() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "kv",
            "nodes": (0..3)
                .map(|i| serde_json::json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 1 + i)}))
                .collect::<Vec<_>>(),
            "key": {"path_segment": 1},
            "read_balance_factor_percent": 150,
        }))
        .unwrap();
        spec.validate().unwrap();
        let service = Arc::new(Service::build(spec, &runtime).unwrap());
        let ledger = HintLedger::new(0);
        let plan_of = |inbound: &Inbound| {
            let mut plan = native_plan(&service, inbound, clock::now_ms(), &ledger);
            bound_loads(&service, inbound, &mut plan);
            plan.indexes().to_vec()
        };
        let get = read_inbound(
            &service,
            Request::get("/kv/k/alice").body(Body::empty()).unwrap(),
        )
        .await;
        let put = read_inbound(
            &service,
            Request::put("/kv/k/alice").body(Body::empty()).unwrap(),
        )
        .await;
        let ring: Vec<NodeIndex> = service
            .preference(b"alice")
            .iter()
            .map(|n| n as NodeIndex)
            .collect();
        assert_eq!(plan_of(&get), ring, "nothing in flight: ring order");
        let primary = ring[0] as usize;
        // One attempt on the primary: its bound is ceil(2 × 1.5 / 3) = 1.
        let first = service.nodes[primary].health.start_attempt();
        let mut moved = ring.clone();
        moved.rotate_left(1);
        assert_eq!(plan_of(&get), moved);
        assert_eq!(plan_of(&put), ring, "writes never move");
        // Load elsewhere raises the bound: 2 on the primary, 4 in all,
        // bound ceil(5 × 1.5 / 3) = 3.
        let second = service.nodes[primary].health.start_attempt();
        let others: Vec<_> = ring[1..]
            .iter()
            .map(|&n| service.nodes[n as usize].health.start_attempt())
            .collect();
        assert_eq!(plan_of(&get), ring);
        drop((first, second, others));
        assert_eq!(service.nodes[primary].health.in_flight(), 0);
        assert_eq!(plan_of(&get), ring);
    }

    #[tokio::test]
    async fn an_empty_idempotency_key_does_not_make_a_post_idempotent() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let service = service(&runtime, 1);
        for (key, idempotent) in [(None, false), (Some(""), false), (Some("k"), true)] {
            let mut request = Request::post("/kv/k/x");
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            let inbound = read_inbound(&service, request.body(Body::empty()).unwrap()).await;
            let facts = request_facts(&inbound);
            assert_eq!((facts.method, facts.idempotent), (Method::Post, idempotent));
        }
    }
}
