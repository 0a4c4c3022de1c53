//! Zoo: `retry-backoff` that traps on every even attempt number.
//!
//! On odd attempts it is exactly `retry-backoff` (same config, same
//! decisions for the same `random-u64`); on even attempts it panics, which
//! is a trap. The failure is a pure function of the input, so a test can
//! drive a chosen number of failures in a row and check the host's fallback
//! counting and quarantine, and check that successes in between reset the
//! count. `random-u64` is drawn once per call either way, keeping a seeded
//! host's sequence aligned with the other retry plugins.

#[path = "../../../retry-backoff/src/convert.rs"]
mod convert;

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::host;
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};
use levee_policy::RetryBackoff;
use std::cell::RefCell;

thread_local! {
    static POLICY: RefCell<RetryBackoff> = RefCell::new(RetryBackoff::default());
}

struct Flaky;

impl Guest for Flaky {
    fn configure(config: String) -> Result<(), String> {
        let policy = RetryBackoff::from_json(&config)?;
        POLICY.with(|slot| *slot.borrow_mut() = policy);
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(facts: RequestFacts, outcome: AttemptOutcome, context: RetryContext) -> Decision {
        let random = host::random_u64();
        if outcome.attempt.is_multiple_of(2) {
            panic!(
                "zoo/flaky: fails on even attempts (attempt {})",
                outcome.attempt
            );
        }
        let facts = convert::facts(facts);
        let outcome = convert::attempt_outcome(outcome);
        let context = convert::retry_context(&context);
        let decision = POLICY.with(|slot| slot.borrow().decide(facts, &outcome, &context, random));
        convert::decision(decision)
    }
}

export!(Flaky);
