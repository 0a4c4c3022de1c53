//! [`RoutingPolicy`]: which replicas serve a request, in what order.

use std::sync::Arc;

use levee_policy::{Candidate, RequestFacts, RequestView, RouteAffinity, RoutePlan};
use serde_json::{Value, json};

use super::Decided;
use super::guarded::Guarded;
use super::recorded_request::RecordedRequest;
use super::spec::{PolicyKindSpec, replay_with};
use super::tables::TableCache;
use crate::bound::{BoundPlugin, Called};
use crate::headers::HeaderAllowlist;
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

/// The inputs of one routing decision, recorded.
pub struct RouteRecord {
    request: RecordedRequest,
    facts: RequestFacts,
    nodes: Arc<NodeTable>,
    candidates: Vec<Candidate>,
}

impl PolicyKindSpec for RoutingKind {
    type Native = RouteAffinity;
    type NativeEnv = ();
    type Input<'a> = RouteInput<'a>;
    type Answer = RoutePlan;
    type Owned = RouteRecord;
    const KIND: PolicyKind = PolicyKind::Routing;
    /// Asked on every request: one in 16 is kept (about 4,000 requests
    /// behind the ring of 256).
    const RECORD_ONE_IN: u64 = 16;

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

    fn own(input: &RouteInput<'_>, headers: &HeaderAllowlist, tables: &TableCache) -> RouteRecord {
        RouteRecord {
            request: RecordedRequest::of(input.request, headers),
            facts: input.facts,
            nodes: tables.owned(input.nodes),
            candidates: input.candidates.to_vec(),
        }
    }

    fn replay(plugin: &BoundPlugin, record: &RouteRecord) -> Called<RoutePlan> {
        let input = RouteInput {
            request: &record.request,
            facts: record.facts,
            nodes: &record.nodes,
            candidates: &record.candidates,
        };
        replay_with::<RoutingKind>(plugin, &input)
    }

    fn input_json(record: &RouteRecord) -> Value {
        let candidates: Vec<Value> = record
            .candidates
            .iter()
            .map(|c| {
                json!({
                    "node": super::node_json(&record.nodes, c.node),
                    "healthy": c.healthy,
                    "failure_rate_permille": c.failure_rate_permille,
                    "latency_ms": c.latency_ms,
                })
            })
            .collect();
        json!({
            "request": record.request.to_json(),
            "facts": super::facts_json(record.facts),
            "candidates": candidates,
        })
    }

    fn answer_json(plan: &RoutePlan) -> Value {
        json!({ "order": plan.order, "hedge_delay_ms": plan.hedge_delay_ms })
    }

    fn decision_kind(plan: &RoutePlan) -> &'static str {
        match (plan.order.is_empty(), plan.hedge_delay_ms.is_some()) {
            (true, _) => "ring-order",
            (false, false) => "ordered",
            (false, true) => "hedged",
        }
    }

    /// The same order and the same hedge.
    fn agree(live: &RoutePlan, other: &RoutePlan) -> bool {
        live == other
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
