//! Zoo: a retry policy whose `decide` allocates without bound.
//!
//! Every MiB is written, so the pages are really committed. The host's
//! linear-memory cap must make `memory.grow` fail; Rust then aborts on the
//! failed allocation, which the host sees as a trap. A host without a cap
//! would let one plugin call take the process's memory.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};

const CHUNK_BYTES: usize = 1 << 20;

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; CHUNK_BYTES]);
            std::hint::black_box(&hoard);
        }
    }
}

export!(MemoryBomb);
