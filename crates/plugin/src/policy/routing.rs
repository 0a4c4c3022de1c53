//! [`RoutingPolicy`]: which replicas serve a request, in what order.

use levee_policy::{Node, RequestInfo, RouteAffinity, RoutePlan};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::BoundPlugin;
use crate::error::Failure;
use crate::kind::PolicyKind;
use crate::sanitize;

/// The routing kind of [`Guarded`].
pub enum RoutingKind {}

/// The guarded routing policy: a bound `routing-policy` plugin, or the
/// native [`RouteAffinity`].
pub type RoutingPolicy = Guarded<RoutingKind>;

impl PolicyKindSpec for RoutingKind {
    type Native = RouteAffinity;
    type NativeEnv = ();
    type Input<'a> = (&'a RequestInfo, &'a [Node]);
    type Answer = RoutePlan;
    const KIND: PolicyKind = PolicyKind::Routing;

    fn ask_plugin(
        plugin: &BoundPlugin,
        &(request, candidates): &Self::Input<'_>,
    ) -> Result<RoutePlan, Failure> {
        plugin.call_route(request, candidates)
    }

    fn ask_native(
        native: &RouteAffinity,
        _: &(),
        &(request, candidates): &Self::Input<'_>,
    ) -> RoutePlan {
        native.route(request, candidates)
    }

    /// Only candidate ids, each once.
    fn sanitize(plan: RoutePlan, &(_, candidates): &Self::Input<'_>) -> RoutePlan {
        sanitize::route_plan(plan, candidates)
    }
}

impl RoutingPolicy {
    /// Native `native` until a plugin is bound.
    pub fn new(native: RouteAffinity) -> RoutingPolicy {
        Guarded::with_native(native, ())
    }

    /// Orders `candidates` (the key's replicas in ring order). The plan
    /// lists only candidate ids, each once; an empty order means "ring
    /// order".
    pub fn route(&self, request: &RequestInfo, candidates: &[Node]) -> Decided<RoutePlan> {
        let request = sanitize::bounded_request(request);
        self.ask((&request, candidates))
    }
}
