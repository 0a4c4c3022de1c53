//! The `route-affinity` policy as a component: WIT glue around
//! [`levee_policy::RouteAffinity`], the same code the host runs as its native
//! routing policy, so plugin and fallback order replicas identically.

mod convert;

wit_bindgen::generate!({
    world: "routing-policy",
    path: "../../wit",
});

use exports::levee::policy::routing::{Guest, RoutePlan};
use levee::policy::types::{Node, RequestInfo};
use levee_policy::RouteAffinity;
use std::cell::RefCell;

thread_local! {
    /// The configured policy; defaults until `configure` succeeds. A later
    /// `configure` replaces it, a failed one leaves it untouched.
    static POLICY: RefCell<RouteAffinity> = RefCell::new(RouteAffinity::default());
}

struct RouteAffinityPlugin;

impl Guest for RouteAffinityPlugin {
    fn configure(config: String) -> Result<(), String> {
        let policy = RouteAffinity::from_json(&config)?;
        POLICY.with(|slot| *slot.borrow_mut() = policy);
        Ok(())
    }

    fn route(request: RequestInfo, candidates: Vec<Node>) -> RoutePlan {
        let request = convert::request_info(request);
        let candidates: Vec<_> = candidates.into_iter().map(convert::node).collect();
        let plan = POLICY.with(|slot| slot.borrow().route(&request, &candidates));
        RoutePlan {
            order: plan.order,
            hedge_delay_ms: plan.hedge_delay_ms,
        }
    }
}

export!(RouteAffinityPlugin);
