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
//! What `header` answers depends on the binding too: a plugin reads only
//! the headers its binding lists (`headers`, by default only
//! `idempotency-key`), never a credential; tests that want `x-echo` echoed
//! list it.
//!
//! Each decision is also written to the host's log at `warn`, so an
//! end-to-end test can read it in levee's log (a retry binding's config
//! must also suit the native fallback, so it cannot switch this on):
//! `echo-request saw {reason}` followed by `|{name}={value}` for each of
//! [`LOGGED_HEADERS`], which name the default list's header, a made-up
//! one and the credentials other than `authorization`.
//!
//! The reason is capped by the host like any returned string (4 KiB), so
//! tests keep their paths and headers short. `configure` accepts any
//! config; `random-u64` is never drawn.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest};
use levee::policy::types::{AttemptOutcome, Level, NodeInfo, RequestFacts, RetryContext};
use levee::policy::{host, request};
use std::cell::Cell;

/// What a header the host answers `none` for reads as.
pub const ABSENT: &str = "-";
/// The header echoed to prove ordinary headers are readable.
pub const ECHOED_HEADER: &str = "x-echo";
/// The credential asked for to prove the host hides it.
pub const CREDENTIAL_HEADER: &str = "authorization";
/// The headers the log line adds to the reason.
pub const LOGGED_HEADERS: [&str; 5] = [
    "x-tenant",
    "idempotency-key",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

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
        let reason = echo();
        let mut line = format!("echo-request saw {reason}");
        for name in LOGGED_HEADERS {
            line.push_str(&format!("|{name}={}", header(name)));
        }
        host::log(Level::Warn, &line);
        Decision::GiveUp(reason)
    }
}

/// What the host answers for header `name`; [`ABSENT`] for `none`.
fn header(name: &str) -> String {
    request::header(name).unwrap_or_else(|| ABSENT.to_string())
}

fn echo() -> String {
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
