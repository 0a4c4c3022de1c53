//! [`RoutingPolicy`]: which replicas serve a request, in what order.

use levee_policy::{Candidate, RequestFacts, RequestView, RouteAffinity, RoutePlan};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::{BoundPlugin, Called};
use crate::kind::PolicyKind;
use crate::nodes::NodeTable;
use crate::sanitize;

/// The routing kind of [`Guarded`].
pub enum RoutingKind {}

/// The guarded routing policy: a bound `routing-policy` plugin, or the
/// native [`RouteAffinity`].
pub type RoutingPolicy = Guarded<RoutingKind>;

/// The inputs of one routing decision.
pub struct RouteInput<'a> {
    request: &'a dyn RequestView,
    facts: RequestFacts,
    nodes: &'a NodeTable,
    candidates: &'a [Candidate],
}

impl PolicyKindSpec for RoutingKind {
    type Native = RouteAffinity;
    type NativeEnv = ();
    type Input<'a> = RouteInput<'a>;
    type Answer = RoutePlan;
    const KIND: PolicyKind = PolicyKind::Routing;

    fn ask_plugin(plugin: &BoundPlugin, input: &RouteInput<'_>) -> Called<RoutePlan> {
        plugin.call_route(input.request, input.facts, input.nodes, input.candidates)
    }

    fn ask_native(native: &RouteAffinity, _: &(), input: &RouteInput<'_>) -> RoutePlan {
        native.route(input.facts, input.nodes.nodes(), input.candidates)
    }

    /// Only candidates, each once.
    fn sanitize(plan: RoutePlan, input: &RouteInput<'_>) -> RoutePlan {
        sanitize::route_plan(plan, input.candidates)
    }
}

impl RoutingPolicy {
    /// Native `native` until a plugin is bound.
    pub fn new(native: RouteAffinity) -> RoutingPolicy {
        Guarded::with_native(native, ())
    }

    /// Orders `candidates` (the key's replicas in ring order, with their
    /// health; `candidate.node` indexes `nodes`). The plan lists only
    /// candidates, each once; an empty order means "ring order".
    ///
    /// `request` is lent to the plugin for this call only; `nodes` is
    /// given to a pooled instance only when it has another table. A plugin
    /// that declared `cacheable-by-health-flags` may answer from its
    /// binding's plan cache (see [`crate::plan_cache`]).
    pub fn route(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        candidates: &[Candidate],
    ) -> Decided<RoutePlan> {
        self.ask(RouteInput {
            request,
            facts,
            nodes,
            candidates,
        })
    }
}
