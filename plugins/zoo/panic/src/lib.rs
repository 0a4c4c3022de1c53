//! Zoo: a retry policy whose `decide` panics.
//!
//! Plugins build with `panic = "abort"`, so the panic becomes a wasm trap
//! (`unreachable`). The host must catch it, answer with the native policy,
//! count the failure, and keep the instance pool healthy afterwards.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};

struct Panic;

impl Guest for Panic {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        panic!(
            "zoo/panic: decide always panics (attempt {})",
            outcome.attempt
        )
    }
}

export!(Panic);
