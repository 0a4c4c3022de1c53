//! [`WritePolicy`]: when a replicated write may be acknowledged.

use std::sync::Arc;

use levee_policy::write::WriteResult;
use levee_policy::{
    NodeIndex, ReplicaResult, RequestFacts, RequestView, WriteContext, WriteDecision, WriteQuorum,
};
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

/// The inputs of one write decision, recorded.
pub struct WriteRecord {
    request: RecordedRequest,
    facts: RequestFacts,
    nodes: Arc<NodeTable>,
    results: Vec<ReplicaResult>,
    replicas: Vec<NodeIndex>,
    write_quorum: u32,
    write_quorum_min: u32,
    deadline_remaining_ms: u32,
}

impl PolicyKindSpec for WriteKind {
    type Native = WriteQuorum;
    type NativeEnv = ();
    type Input<'a> = WriteInput<'a>;
    type Answer = WriteDecision;
    type Owned = WriteRecord;
    const KIND: PolicyKind = PolicyKind::Write;
    /// Asked only when something happened: every call is kept.
    const RECORD_ONE_IN: u64 = 1;

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

    fn own(input: &WriteInput<'_>, headers: &HeaderAllowlist, tables: &TableCache) -> WriteRecord {
        WriteRecord {
            request: RecordedRequest::of(input.request, headers),
            facts: input.facts,
            nodes: tables.owned(input.nodes),
            results: input.results.to_vec(),
            replicas: input.context.replicas.to_vec(),
            write_quorum: input.context.write_quorum,
            write_quorum_min: input.context.write_quorum_min,
            deadline_remaining_ms: input.context.deadline_remaining_ms,
        }
    }

    fn replay(plugin: &BoundPlugin, record: &WriteRecord) -> Called<WriteDecision> {
        let context = WriteContext {
            replicas: &record.replicas,
            write_quorum: record.write_quorum,
            write_quorum_min: record.write_quorum_min,
            deadline_remaining_ms: record.deadline_remaining_ms,
        };
        let input = WriteInput {
            request: &record.request,
            facts: record.facts,
            nodes: &record.nodes,
            results: &record.results,
            context: &context,
        };
        replay_with::<WriteKind>(plugin, &input)
    }

    fn input_json(record: &WriteRecord) -> Value {
        let node = |index| super::node_json(&record.nodes, index);
        let results: Vec<Value> = record
            .results
            .iter()
            .map(|r| {
                json!({
                    "node": node(r.node),
                    "result": write_result_json(r.result),
                    "elapsed_ms": r.elapsed_ms,
                })
            })
            .collect();
        json!({
            "request": record.request.to_json(),
            "facts": super::facts_json(record.facts),
            "results": results,
            "context": {
                "replicas": record.replicas.iter().map(|i| node(*i)).collect::<Vec<_>>(),
                "write_quorum": record.write_quorum,
                "write_quorum_min": record.write_quorum_min,
                "deadline_remaining_ms": record.deadline_remaining_ms,
            },
        })
    }

    fn answer_json(decision: &WriteDecision) -> Value {
        match decision {
            WriteDecision::Fail(reason) => json!({ "fail": reason }),
            other => json!(Self::decision_kind(other)),
        }
    }

    fn decision_kind(decision: &WriteDecision) -> &'static str {
        match decision {
            WriteDecision::Wait => "wait",
            WriteDecision::Acknowledge => "acknowledge",
            WriteDecision::Fail(_) => "fail",
        }
    }

    /// The same kind; a failure's reason is prose.
    fn agree(live: &WriteDecision, other: &WriteDecision) -> bool {
        std::mem::discriminant(live) == std::mem::discriminant(other)
    }
}

fn write_result_json(result: WriteResult) -> Value {
    match result {
        WriteResult::Acked(status) => json!({ "acked": status }),
        WriteResult::Superseded => json!("superseded"),
        WriteResult::Rejected(status) => json!({ "rejected": status }),
        WriteResult::Failed(attempt) => {
            json!({ "failed": super::retry::attempt_result_json(attempt) })
        }
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
