//! Conversions from the `wit-bindgen` types of the routing world to the
//! plain-Rust types of `levee-policy`.

#[path = "../../common/facts.rs"]
mod facts;

use crate::levee::policy::types as wit;
use levee_policy as policy;

pub use facts::facts;

pub fn node_info(node: wit::NodeInfo) -> policy::NodeInfo {
    policy::NodeInfo {
        id: node.id,
        address: node.address,
        zone: node.zone,
        weight: node.weight,
    }
}

/// The candidates the bindings copied in, converted in their own buffer:
/// both element types are four scalars of one size and alignment (checked
/// below), so `collect` reuses the allocation instead of making one.
pub fn candidates(candidates: Vec<wit::Candidate>) -> Vec<policy::Candidate> {
    candidates.into_iter().map(candidate).collect()
}

const _: () = assert!(
    size_of::<wit::Candidate>() == size_of::<policy::Candidate>()
        && align_of::<wit::Candidate>() == align_of::<policy::Candidate>(),
    "in-place conversion of the candidates needs equal layouts"
);

fn candidate(candidate: wit::Candidate) -> policy::Candidate {
    policy::Candidate {
        node: candidate.node,
        healthy: candidate.healthy,
        failure_rate_permille: candidate.failure_rate_permille,
        latency_ms: candidate.latency_ms,
    }
}
