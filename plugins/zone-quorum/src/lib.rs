//! The `zone-quorum` write policy as a component: WIT glue around
//! [`levee_policy::ZoneQuorum`]. A write is acknowledged once it has the
//! service's W acks *and* acks from at least `zones_min` (default 2)
//! distinct zones, so an acknowledged write survives losing a whole zone;
//! it fails as soon as no more zones can answer. Zones come from the node
//! table (`set-nodes`); results name nodes by index.
//!
//! Config: `{"zones_min": 2}` (1..=16).

wit_bindgen::generate!({
    world: "write-policy",
    path: "../../wit",
});

use exports::levee::policy::write::{
    Guest, ReplicaResult, WriteContext, WriteDecision, WriteResult,
};
use levee::policy::types::{AttemptResult, ErrorKind, NodeInfo, RequestFacts};
use levee_policy::ZoneQuorum;
use std::cell::RefCell;

/// What an instance keeps between calls.
#[derive(Default)]
struct State {
    /// The configured policy; defaults until `configure` succeeds.
    policy: ZoneQuorum,
    /// The node table last given to `set-nodes`.
    nodes: Vec<levee_policy::NodeInfo>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn attempt_result(result: AttemptResult) -> levee_policy::AttemptResult {
    match result {
        AttemptResult::Status(status) => levee_policy::AttemptResult::Status(status),
        AttemptResult::Error(kind) => levee_policy::AttemptResult::Error(match kind {
            ErrorKind::Connect => levee_policy::ErrorKind::Connect,
            ErrorKind::Timeout => levee_policy::ErrorKind::Timeout,
            ErrorKind::Reset => levee_policy::ErrorKind::Reset,
            ErrorKind::Protocol => levee_policy::ErrorKind::Protocol,
            ErrorKind::Other => levee_policy::ErrorKind::Other,
        }),
    }
}

fn replica_result(result: ReplicaResult) -> levee_policy::ReplicaResult {
    levee_policy::ReplicaResult {
        node: result.node,
        result: match result.result {
            WriteResult::Acked(status) => levee_policy::WriteResult::Acked(status),
            WriteResult::Superseded => levee_policy::WriteResult::Superseded,
            WriteResult::Rejected(status) => levee_policy::WriteResult::Rejected(status),
            WriteResult::Failed(failed) => levee_policy::WriteResult::Failed(attempt_result(failed)),
        },
        elapsed_ms: result.elapsed_ms,
    }
}

struct ZoneQuorumPlugin;

impl Guest for ZoneQuorumPlugin {
    fn configure(config: String) -> Result<(), String> {
        let policy = ZoneQuorum::from_json(&config)?;
        STATE.with(|state| state.borrow_mut().policy = policy);
        Ok(())
    }

    fn set_nodes(nodes: Vec<NodeInfo>) {
        let nodes = nodes
            .into_iter()
            .map(|node| levee_policy::NodeInfo {
                id: node.id,
                address: node.address,
                zone: node.zone,
                weight: node.weight,
            })
            .collect();
        STATE.with(|state| state.borrow_mut().nodes = nodes);
    }

    fn decide(
        _facts: RequestFacts,
        results: Vec<ReplicaResult>,
        context: WriteContext,
    ) -> WriteDecision {
        let results: Vec<_> = results.into_iter().map(replica_result).collect();
        let context = levee_policy::WriteContext {
            replicas: &context.replicas,
            write_quorum: context.write_quorum,
            write_quorum_min: context.write_quorum_min,
            deadline_remaining_ms: context.deadline_remaining_ms,
        };
        let decided = STATE.with(|state| {
            let state = state.borrow();
            state.policy.decide(&state.nodes, &results, &context)
        });
        match decided {
            levee_policy::WriteDecision::Wait => WriteDecision::Wait,
            levee_policy::WriteDecision::Acknowledge => WriteDecision::Acknowledge,
            levee_policy::WriteDecision::Fail(reason) => WriteDecision::Fail(reason),
        }
    }
}

export!(ZoneQuorumPlugin);
