//! Zoo: a retry policy whose `configure` rejects every config.
//!
//! The host must refuse to load it, report the plugin's reason, and keep
//! serving with whatever it had before (the previous version or native).

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};

/// The fixed rejection, so tests can look for it in the host's error.
pub const REJECTION: &str = "zoo/bad-config rejects every config";

struct BadConfig;

impl Guest for BadConfig {
    fn configure(config: String) -> Result<(), String> {
        Err(format!("{REJECTION} (got {} bytes)", config.len()))
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        Decision::GiveUp("zoo/bad-config was never configured".into())
    }
}

export!(BadConfig);
