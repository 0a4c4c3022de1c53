//! Zoo: a retry policy whose `decide` recurses until the stack overflows.
//!
//! Each level keeps a 256-byte frame in linear memory (the shadow stack) and
//! does work after the recursive call, so neither tail-call nor accumulator
//! elimination can turn it into a loop. Whichever stack runs out first, the
//! shadow stack in linear memory or wasmtime's native stack limit, the result
//! is a trap the host must survive.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};

struct DeepRecursion;

impl Guest for DeepRecursion {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        let depth = descend(u64::from(outcome.attempt));
        Decision::GiveUp(format!("zoo/deep-recursion: came back from depth {depth}"))
    }
}

#[inline(never)]
fn descend(depth: u64) -> u64 {
    // Never true for a u32 attempt counting up; only here so the recursion
    // is not unconditional in the compiler's eyes.
    if depth == u64::MAX {
        return 0;
    }
    let frame = [depth; 32];
    std::hint::black_box(&frame);
    let below = std::hint::black_box(descend(depth + 1));
    below.wrapping_add(frame[(depth % 32) as usize])
}

export!(DeepRecursion);
