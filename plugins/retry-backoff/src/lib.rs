//! The `retry-backoff` policy as a component: WIT glue around
//! [`levee_policy::RetryBackoff`], the same code the host runs as its native
//! retry policy. Keeping the logic out of the plugin is what lets the host's
//! tests demand identical decisions from both on identical inputs.
//!
//! Jitter comes from the host's `random-u64`, called exactly once per
//! `decide` (whether or not the decision retries), so a seeded host replays a
//! plugin's decisions exactly and can compare them with the native policy
//! given the same random value.
//!
//! The policy decides on scalars only: it never reads the `request`
//! functions (idempotency arrives folded into the facts) and needs no node
//! table, so `set-nodes` has nothing to keep.

mod convert;

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::host;
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};
use levee_policy::RetryBackoff;
use std::cell::RefCell;

thread_local! {
    /// The configured policy; defaults until `configure` succeeds. A later
    /// `configure` replaces it, a failed one leaves it untouched.
    static POLICY: RefCell<RetryBackoff> = RefCell::new(RetryBackoff::default());
}

struct RetryBackoffPlugin;

impl Guest for RetryBackoffPlugin {
    fn configure(config: String) -> Result<(), String> {
        let policy = RetryBackoff::from_json(&config)?;
        POLICY.with(|slot| *slot.borrow_mut() = policy);
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(facts: RequestFacts, outcome: AttemptOutcome, context: RetryContext) -> Decision {
        let random = host::random_u64();
        let facts = convert::facts(facts);
        let outcome = convert::attempt_outcome(outcome);
        let context = convert::retry_context(&context);
        let decision = POLICY.with(|slot| slot.borrow().decide(facts, &outcome, &context, random));
        convert::decision(decision)
    }
}

export!(RetryBackoffPlugin);
