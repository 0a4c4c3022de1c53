//! Zoo: a retry policy whose `decide` never returns.
//!
//! The host must cut the call off with its CPU deadline (epoch interruption
//! or fuel), answer with the native policy, and count the failure. A host
//! without a deadline would lose a worker thread per request.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};

struct InfiniteLoop;

impl Guest for InfiniteLoop {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        // `black_box` keeps the optimizer from proving the loop does nothing.
        let mut spins = u64::from(outcome.attempt);
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export!(InfiniteLoop);
