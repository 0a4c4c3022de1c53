//! Zoo: a perfectly good *checkpoint* policy, to be loaded where a retry (or
//! routing) policy is expected.
//!
//! The host must check a component's exports against the kind it is loading
//! and refuse this one at load time with a clear error, never at call time.

wit_bindgen::generate!({
    world: "checkpoint-policy",
    path: "../../../wit",
});

use exports::levee::policy::checkpoint::{Action, Guest};
use levee::policy::types::LogStats;

struct WrongWorld;

impl Guest for WrongWorld {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn decide(_stats: LogStats) -> Action {
        Action::Checkpoint
    }
}

export!(WrongWorld);
