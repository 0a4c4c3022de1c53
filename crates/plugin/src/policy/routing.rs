//! [`RoutingPolicy`]: which replicas serve a request, in what order.

use std::sync::Arc;

use arc_swap::ArcSwap;
use levee_policy::{Node, RequestInfo, RouteAffinity, RoutePlan};

use super::{Decided, Slot};
use crate::bound::BoundPlugin;
use crate::error::LoadError;
use crate::kind::PolicyKind;
use crate::sanitize;
use crate::stats::Stats;

/// The guarded routing policy: a bound `routing-policy` plugin, or the
/// native [`RouteAffinity`].
pub struct RoutingPolicy {
    slot: Slot,
    native: ArcSwap<RouteAffinity>,
}

impl RoutingPolicy {
    pub fn new(native: RouteAffinity) -> RoutingPolicy {
        RoutingPolicy {
            slot: Slot::new(PolicyKind::Routing),
            native: ArcSwap::from_pointee(native),
        }
    }

    /// Atomically replaces the bound plugin (`None`: native only). Refuses
    /// a plugin of another kind. Returns the previous one.
    pub fn bind(
        &self,
        plugin: Option<Arc<BoundPlugin>>,
    ) -> Result<Option<Arc<BoundPlugin>>, LoadError> {
        self.slot.bind(plugin)
    }

    pub fn plugin(&self) -> Option<Arc<BoundPlugin>> {
        self.slot.plugin()
    }

    pub fn set_native(&self, native: RouteAffinity) {
        self.native.store(Arc::new(native));
    }

    pub fn native(&self) -> Arc<RouteAffinity> {
        self.native.load_full()
    }

    /// Orders `candidates` (the key's replicas in ring order). The plan
    /// lists only candidate ids, each once; an empty order means "ring
    /// order".
    pub fn route(&self, request: &RequestInfo, candidates: &[Node]) -> Decided<RoutePlan> {
        let request = sanitize::bounded_request(request);
        let mut decided = self.slot.decide(
            |plugin| plugin.call_route(&request, candidates),
            || self.native.load().route(&request, candidates),
        );
        decided.value = sanitize::route_plan(std::mem::take(&mut decided.value), candidates);
        decided
    }

    pub fn stats(&self) -> Option<Stats> {
        self.slot.stats()
    }

    pub fn native_calls(&self) -> u64 {
        self.slot.native_calls()
    }
}
