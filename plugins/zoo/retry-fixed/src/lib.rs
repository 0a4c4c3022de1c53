//! Zoo: a second, deliberately different retry policy, for hot-reload tests.
//!
//! It retries *everything* at once on the next node: `Retry { delay 0, next }`
//! for every call, including a 500 or a non-idempotent request, where
//! `retry-backoff` gives up. That makes the two versions easy to tell apart
//! from outside (e.g. how many times an upstream answering 500 is hit), and
//! each decision is also logged at info as `retry-fixed: retry now`.
//!
//! `configure` accepts any config, so it can replace `retry-backoff` under
//! the same service config. `random-u64` is drawn once per call, like the
//! other retry plugins, so a seeded host's sequence stays aligned.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest, RetryPlan, Target};
use levee::policy::host;
use levee::policy::types::{AttemptOutcome, Level, NodeInfo, RequestFacts, RetryContext};

/// The log line marking a decision by this plugin.
pub const MARKER: &str = "retry-fixed: retry now";

struct RetryFixed;

impl Guest for RetryFixed {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        let _ = host::random_u64();
        host::log(Level::Info, MARKER);
        Decision::Retry(RetryPlan {
            delay_ms: 0,
            target: Target::Next,
        })
    }
}

export!(RetryFixed);
