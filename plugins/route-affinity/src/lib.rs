//! The `route-affinity` policy as a component: WIT glue around
//! [`levee_policy::RouteAffinity`], the same code the host runs as its native
//! routing policy, so plugin and fallback order replicas identically.
//!
//! The node table (`set-nodes`) is converted once and kept next to the
//! policy; a `route` call then converts only scalars, in the buffer the
//! bindings already allocated, and never reads the `request` functions.
//!
//! `configure` declares `cacheable-by-health-flags`: the plan depends only
//! on the facts (hedging is for reads), the table (zones) and the
//! candidates' order and `healthy` flags, never on their failure rates or
//! latencies, the request, the clock or randomness, and `route` keeps no
//! state between calls. So the host may reuse a plan for the same facts,
//! table and candidates without calling the plugin.

mod convert;

wit_bindgen::generate!({
    world: "routing-policy",
    path: "../../wit",
});

use exports::levee::policy::routing::{Guest, RoutePlan, RouteTraits};
use levee::policy::types::{Candidate, NodeInfo, RequestFacts};
use levee_policy::RouteAffinity;
use std::cell::RefCell;

/// What an instance keeps between calls.
#[derive(Default)]
struct State {
    /// The configured policy; defaults until `configure` succeeds. A later
    /// `configure` replaces it, a failed one leaves it untouched.
    policy: RouteAffinity,
    /// The last table given to `set-nodes`; candidates index it.
    nodes: Vec<levee_policy::NodeInfo>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct RouteAffinityPlugin;

impl Guest for RouteAffinityPlugin {
    fn configure(config: String) -> Result<RouteTraits, String> {
        let policy = RouteAffinity::from_json(&config)?;
        STATE.with(|state| state.borrow_mut().policy = policy);
        // Whatever the config: see the module doc.
        Ok(RouteTraits {
            cacheable_by_health_flags: true,
        })
    }

    fn set_nodes(nodes: Vec<NodeInfo>) {
        let nodes = nodes.into_iter().map(convert::node_info).collect();
        STATE.with(|state| state.borrow_mut().nodes = nodes);
    }

    fn route(facts: RequestFacts, candidates: Vec<Candidate>) -> RoutePlan {
        let facts = convert::facts(facts);
        let candidates = convert::candidates(candidates);
        let plan = STATE.with(|state| {
            let state = state.borrow();
            state.policy.route(facts, &state.nodes, &candidates)
        });
        RoutePlan {
            order: plan.order,
            hedge_delay_ms: plan.hedge_delay_ms,
        }
    }
}

export!(RouteAffinityPlugin);
