//! [`WritePolicy`]: when a replicated write may be acknowledged.

use levee_policy::{
    ReplicaResult, RequestFacts, RequestView, WriteContext, WriteDecision, WriteQuorum,
};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::{BoundPlugin, Called};
use crate::kind::PolicyKind;
use crate::nodes::NodeTable;

/// The write kind of [`Guarded`].
pub enum WriteKind {}

/// The guarded write policy: a bound `write-policy` plugin, or the native
/// [`WriteQuorum`] (plain W-of-N).
pub type WritePolicy = Guarded<WriteKind>;

/// The inputs of one write decision.
pub struct WriteInput<'a> {
    request: &'a dyn RequestView,
    facts: RequestFacts,
    nodes: &'a NodeTable,
    results: &'a [ReplicaResult],
    context: &'a WriteContext<'a>,
}

impl PolicyKindSpec for WriteKind {
    type Native = WriteQuorum;
    type NativeEnv = ();
    type Input<'a> = WriteInput<'a>;
    type Answer = WriteDecision;
    const KIND: PolicyKind = PolicyKind::Write;

    fn ask_plugin(plugin: &BoundPlugin, input: &WriteInput<'_>) -> Called<WriteDecision> {
        plugin.call_write(
            input.request,
            input.facts,
            input.nodes,
            input.results,
            input.context,
        )
    }

    fn ask_native(native: &WriteQuorum, _: &(), input: &WriteInput<'_>) -> WriteDecision {
        native.decide(input.results, input.context)
    }

    /// The floor is checked on the plugin's answer (an `acknowledge` below
    /// it is a failed call, answered natively); the native policy never
    /// acknowledges below W, which is at least the floor.
    fn sanitize(decision: WriteDecision, _: &WriteInput<'_>) -> WriteDecision {
        decision
    }
}

impl WritePolicy {
    /// Native W-of-N until a plugin is bound.
    pub fn new() -> WritePolicy {
        Guarded::with_native(WriteQuorum, ())
    }

    /// Decides after a replica's result arrived. Never fails; see
    /// [`Decided::source`]. `results` are every result so far (arrival
    /// order); their `node` and `context.replicas` index `nodes`.
    pub fn decide(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        results: &[ReplicaResult],
        context: &WriteContext<'_>,
    ) -> Decided<WriteDecision> {
        self.ask(WriteInput {
            request,
            facts,
            nodes,
            results,
            context,
        })
    }
}

impl Default for WritePolicy {
    fn default() -> Self {
        WritePolicy::new()
    }
}
