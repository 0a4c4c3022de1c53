//! Zoo: a retry policy whose `decide` echoes the `request` functions back
//! as its give-up reason, for the host's tests of what a plugin can read.
//!
//! The reason is
//! `{service}|{method}|{path}|{routing-key}|{x-echo}|{authorization}|nodes={N}`:
//! the five strings read through the `request` functions (`-` for a header
//! the host answers `none` for), and the length of the last table given to
//! `set-nodes` (`nodes=unset` if it never was). So one call lets a test
//! prove that the functions reach the host's request, that the
//! `authorization` header stays hidden (the plugin asks for it on every
//! call; the answer must be `-`), and that `set-nodes` ran before `decide`.
//!
//! The reason is capped by the host like any returned string (4 KiB), so
//! tests keep their paths and headers short. `configure` accepts any
//! config; `random-u64` is never drawn.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::request;
use levee::policy::types::{AttemptOutcome, NodeInfo, RequestFacts, RetryContext};
use std::cell::Cell;

/// What a header the host answers `none` for reads as.
pub const ABSENT: &str = "-";
/// The header echoed to prove ordinary headers are readable.
pub const ECHOED_HEADER: &str = "x-echo";
/// The credential asked for to prove the host hides it.
pub const CREDENTIAL_HEADER: &str = "authorization";

thread_local! {
    /// Nodes in the last `set-nodes` table; `None` until the first call.
    static NODE_COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

struct EchoRequest;

impl Guest for EchoRequest {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn set_nodes(nodes: Vec<NodeInfo>) {
        NODE_COUNT.with(|count| count.set(Some(nodes.len())));
    }

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        Decision::GiveUp(echo())
    }
}

fn echo() -> String {
    let header = |name: &str| request::header(name).unwrap_or_else(|| ABSENT.to_string());
    let nodes = match NODE_COUNT.with(Cell::get) {
        Some(count) => count.to_string(),
        None => "unset".to_string(),
    };
    format!(
        "{}|{}|{}|{}|{}|{}|nodes={nodes}",
        request::service(),
        request::method(),
        request::path(),
        request::routing_key(),
        header(ECHOED_HEADER),
        header(CREDENTIAL_HEADER),
    )
}

export!(EchoRequest);
