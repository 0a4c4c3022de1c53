//! Zoo: a routing policy that makes every real `route` call visible in its
//! answer, for the host's tests of the route-plan cache.
//!
//! - The plan is the candidates' nodes, rotated left by the number of
//!   `route` calls this instance answered before. That is state kept
//!   between calls, exactly what a plugin declaring
//!   `cacheable-by-health-flags` must not keep: here it makes each call
//!   that reached the plugin show in its answer (and a cached answer show
//!   as a repeat).
//! - `hedge-delay-ms` is 1 plus the sum of the `failure-rate-permille` and
//!   `latency-ms` it was passed, so a test sees whether the host passed
//!   the health scalars or 0.
//!
//! Config (a JSON object; anything else means the defaults):
//! - `"declare_cacheable": true` declares `cacheable-by-health-flags`
//!   (default `false`: the plugin promises nothing);
//! - `"read": "request" | "clock" | "random"` reads the routing key, `now-ms`
//!   or `random-u64` on every call (default: reads nothing), so a test can
//!   check that such an answer is never cached.

wit_bindgen::generate!({
    world: "routing-policy",
    path: "../../../wit",
});

use exports::levee::policy::routing::{Guest, RoutePlan, RouteTraits};
use levee::policy::types::{Candidate, NodeInfo, RequestFacts};
use levee::policy::{host, request};
use std::cell::{Cell, RefCell};

thread_local! {
    /// `route` calls answered so far by this instance.
    static CALLS: Cell<usize> = const { Cell::new(0) };
    /// What `route` reads besides its arguments, from the config.
    static READ: RefCell<String> = const { RefCell::new(String::new()) };
}

struct RouteProbe;

impl Guest for RouteProbe {
    fn configure(config: String) -> Result<RouteTraits, String> {
        let config = serde_json::from_str::<serde_json::Value>(&config).unwrap_or_default();
        let read = config["read"].as_str().unwrap_or_default().to_string();
        READ.with(|cell| *cell.borrow_mut() = read);
        Ok(RouteTraits {
            cacheable_by_health_flags: config["declare_cacheable"].as_bool().unwrap_or(false),
        })
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn route(_facts: RequestFacts, candidates: Vec<Candidate>) -> RoutePlan {
        READ.with(|read| match read.borrow().as_str() {
            "request" => drop(request::routing_key()),
            "clock" => drop(host::now_ms()),
            "random" => drop(host::random_u64()),
            _ => {}
        });
        let calls = CALLS.with(|calls| calls.replace(calls.get() + 1));
        let mut order: Vec<u32> = candidates.iter().map(|candidate| candidate.node).collect();
        if !order.is_empty() {
            let len = order.len();
            order.rotate_left(calls % len);
        }
        let health: u32 = candidates
            .iter()
            .map(|candidate| candidate.failure_rate_permille + candidate.latency_ms)
            .sum();
        RoutePlan {
            order,
            hedge_delay_ms: Some(1 + health),
        }
    }
}

export!(RouteProbe);
