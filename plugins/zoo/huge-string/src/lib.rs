//! Zoo: a retry policy whose `decide` gives up with an enormous reason.
//!
//! The reason is `reason_bytes` long (config `{"reason_bytes": N}`, default
//! 100 MB). With the default and the host's 16 MiB memory cap the plugin
//! traps while building it; with a smaller size (say 1 MiB) it returns the
//! string, and the host must refuse it for exceeding the returned-string cap
//! (4 KiB) before copying it out of the sandbox. Any other config is
//! accepted, so the plugin always loads.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};
use std::cell::Cell;

const REASON_BYTES_DEFAULT: usize = 100_000_000;

thread_local! {
    static REASON_BYTES: Cell<usize> = const { Cell::new(REASON_BYTES_DEFAULT) };
}

struct HugeString;

impl Guest for HugeString {
    fn configure(config: String) -> Result<(), String> {
        let reason_bytes = size_from_config(&config, "reason_bytes")?;
        REASON_BYTES.with(|cell| cell.set(reason_bytes.unwrap_or(REASON_BYTES_DEFAULT)));
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        Decision::GiveUp("x".repeat(REASON_BYTES.with(Cell::get)))
    }
}

/// `field` of a JSON object config, if present; anything else is ignored.
fn size_from_config(config: &str, field: &str) -> Result<Option<usize>, String> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str(config) else {
        return Ok(None);
    };
    match object.get(field) {
        None => Ok(None),
        Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(size) => Ok(Some(size)),
            None => Err(format!(
                "config field `{field}` must be a non-negative integer"
            )),
        },
    }
}

export!(HugeString);
