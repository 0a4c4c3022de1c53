//! The routing plan of one read: the key's replicas from the ring, put in
//! order by the routing policy (a bound plugin, or the native
//! `route-affinity` computed over node indices without allocation), with
//! the hedge delay, resolved to node indices; and `request_info`, the
//! plugin-facing description of the request.

use hyper::header::HeaderValue;
use levee_policy::RequestInfo;

use crate::cluster::ring::REPLICAS_MAX;
use crate::cluster::service::Service;
use crate::dataplane::inbound::{IDEMPOTENCY_KEY, Inbound};

/// The routing plan resolved to node indices, without allocation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) nodes: [usize; REPLICAS_MAX],
    pub(super) len: usize,
    pub(super) hedge_delay_ms: Option<u64>,
}

impl Plan {
    pub(super) fn get(&self, position: usize) -> usize {
        debug_assert!(position < self.len);
        self.nodes[position % self.len]
    }

    pub(super) fn position_of(&self, node: usize) -> Option<usize> {
        self.nodes[..self.len].iter().position(|&n| n == node)
    }
}

/// The plugin-facing description of the request.
pub(super) fn request_info(service: &Service, inbound: &Inbound) -> RequestInfo {
    use levee_policy::limits::{HEADER_VALUE_BYTES_MAX, HEADERS_MAX};
    let mut headers = Vec::new();
    if let Some(key) = inbound.headers.get(&IDEMPOTENCY_KEY) {
        headers.push((
            IDEMPOTENCY_KEY.as_str().to_owned(),
            header_text(key, HEADER_VALUE_BYTES_MAX),
        ));
    }
    for (name, value) in &inbound.headers {
        if headers.len() >= HEADERS_MAX {
            break;
        }
        if name != IDEMPOTENCY_KEY {
            headers.push((
                name.as_str().to_owned(),
                header_text(value, HEADER_VALUE_BYTES_MAX),
            ));
        }
    }
    RequestInfo {
        service: service.name().to_owned(),
        method: inbound.method.as_str().to_owned(),
        path: inbound.path_and_query.clone(),
        routing_key: inbound.routing_key().to_owned(),
        idempotent: inbound.is_idempotent(),
        headers,
    }
}

/// A header value as text, lossy and truncated at a char boundary.
fn header_text(value: &HeaderValue, bytes_max: usize) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The native `route-affinity` plan, computed over node indices: used when
/// no routing plugin is bound, i.e. on almost every request, where building
/// the policy's string-based inputs (a `RequestInfo`, a `Node` per
/// candidate, an id list back) would cost a few dozen allocations. The rules
/// are `levee_policy::RouteAffinity::route`'s, applied to the same inputs;
/// a property test checks that both always agree.
pub(super) fn native_plan(service: &Service, inbound: &Inbound, now_ms: u64) -> Plan {
    let preference = service.preference(inbound.routing_key().as_bytes());
    let native = service.policies.routing.native();
    let mut nodes = [0usize; REPLICAS_MAX];
    let mut healthy = [false; REPLICAS_MAX];
    let mut zones: [Option<&str>; REPLICAS_MAX] = [None; REPLICAS_MAX];
    for (slot, node) in preference.iter().enumerate() {
        nodes[slot] = node;
        healthy[slot] = service.nodes[node].health.is_healthy(now_ms);
        zones[slot] = service.nodes[node].spec.zone.as_deref();
    }
    let len = preference.len();
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
    let mut plan = Plan {
        nodes: [0; REPLICAS_MAX],
        len: 0,
        hedge_delay_ms: None,
    };
    let any_healthy = healthy.iter().any(|&h| h);
    let in_zone = |slot: usize| matches!((prefer_zone, zones[slot]), (Some(p), Some(z)) if p == z);
    for preferred_pass in [true, false] {
        for slot in 0..nodes.len() {
            if (healthy[slot] || !any_healthy) && in_zone(slot) == preferred_pass {
                plan.nodes[plan.len] = nodes[slot];
                plan.len += 1;
            }
        }
    }
    plan
}

/// Asks the bound routing plugin (through its guarded policy) to order
/// the key's replicas.
pub(super) fn plugin_plan(
    service: &Service,
    inbound: &Inbound,
    info: &RequestInfo,
    now_ms: u64,
) -> Plan {
    let preference = service.preference(inbound.routing_key().as_bytes());
    let candidates: Vec<levee_policy::Node> = preference
        .iter()
        .map(|i| service.node_view(i, now_ms))
        .collect();
    let route = service.policies.route(info, &candidates);
    let mut plan = Plan {
        nodes: [0; REPLICAS_MAX],
        len: 0,
        hedge_delay_ms: None,
    };
    for id in route.order.iter() {
        if plan.len == REPLICAS_MAX {
            break;
        }
        let Some(node) = preference.iter().find(|&i| service.nodes[i].spec.id == *id) else {
            continue;
        };
        if plan.position_of(node).is_none() {
            plan.nodes[plan.len] = node;
            plan.len += 1;
        }
    }
    if plan.len == 0 {
        for node in preference.iter() {
            plan.nodes[plan.len] = node;
            plan.len += 1;
        }
    }
    assert!(plan.len > 0, "a service has at least one node");
    plan.hedge_delay_ms = route
        .hedge_delay_ms
        .map(u64::from)
        .or(service.spec.hedge_delay_ms);
    plan
}

#[cfg(test)]
mod native_plan_tests {
    use super::*;
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
            let nodes: Vec<levee_policy::Node> = candidates.iter().enumerate().map(|(i, (healthy, z))| levee_policy::Node {
                id: format!("n{i}"),
                address: format!("http://127.0.0.1:{}", 7000 + i),
                zone: zone(*z),
                weight: 1,
                healthy: *healthy,
                ..Default::default()
            }).collect();
            let reference = levee_policy::RouteAffinity::new(levee_policy::RoutingConfig {
                prefer_zone: prefer_zone.clone(),
                hedge_delay_ms: hedge,
            }).unwrap();
            let request = RequestInfo { method: if read { "GET" } else { "POST" }.into(), ..Default::default() };
            let expected = reference.route(&request, &nodes);

            let indices: Vec<usize> = (0..nodes.len()).collect();
            let healthy: Vec<bool> = nodes.iter().map(|n| n.healthy).collect();
            let zones: Vec<Option<&str>> = nodes.iter().map(|n| n.zone.as_deref()).collect();
            let plan = affinity_order(&indices, &healthy, &zones, prefer_zone.as_deref());
            let order: Vec<String> = (0..plan.len).map(|p| format!("n{}", plan.nodes[p])).collect();
            prop_assert_eq!(order, expected.order);
            let fast_hedge = if read && plan.len >= 2 { hedge } else { None };
            prop_assert_eq!(fast_hedge, expected.hedge_delay_ms);
        }
    }
}
