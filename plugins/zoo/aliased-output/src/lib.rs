//! Zoo: a retry policy that hands the host the largest strings its memory
//! allows, through every way a string crosses from a plugin into the host,
//! and hands the same guest bytes over again and again.
//!
//! 0.1.0 let a plugin return a `list<string>` whose entries all pointed at
//! one buffer, so the host copied that buffer once per entry. 0.2.0 has no
//! such list, but a plugin can still alias: one buffer passed to `host.log`
//! or `request.header` any number of times in one call, each call a copy
//! into the host. The host's answer is its hostcall bound: wasmtime refuses
//! to copy any one value over it, before copying, and the call fails.
//!
//! Config (a JSON object; every field optional, absent means off):
//! - `reject_bytes`: `configure` rejects the config with a reason of this
//!   many bytes (a `configure` error is a returned string too);
//! - `log_bytes`, `log_calls` (default 1): `decide` first passes one buffer
//!   of `log_bytes` bytes to `host.log`, `log_calls` times;
//! - `header_name_bytes`, `header_calls` (default 1): then passes one
//!   buffer of that many bytes to `request.header` as the name, that many
//!   times;
//! - `give_up_bytes`: then gives up with a reason of this many bytes;
//!   without it, it answers "retry now on the next node".
//!
//! Sizes up to about 12 MB fit the host's default 16 MiB memory cap. Any
//! config is accepted unless `reject_bytes` is set, so the plugin loads.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "../../../wit",
});

use exports::levee::policy::retry::{Decision, Guest, RetryPlan, Target};
use levee::policy::types::{AttemptOutcome, Level, NodeInfo, RequestFacts, RetryContext};
use levee::policy::{host, request};
use std::cell::Cell;

/// What `decide` does, from the config.
#[derive(Clone, Copy, Default)]
struct Plan {
    log_bytes: usize,
    log_calls: usize,
    header_name_bytes: usize,
    header_calls: usize,
    give_up_bytes: Option<usize>,
}

thread_local! {
    static PLAN: Cell<Plan> = Cell::new(Plan::default());
}

struct AliasedOutput;

impl Guest for AliasedOutput {
    fn configure(config: String) -> Result<(), String> {
        let size = |field| size_from_config(&config, field);
        if let Some(reject_bytes) = size("reject_bytes")? {
            return Err("r".repeat(reject_bytes));
        }
        let plan = Plan {
            log_bytes: size("log_bytes")?.unwrap_or(0),
            log_calls: size("log_calls")?.unwrap_or(1),
            header_name_bytes: size("header_name_bytes")?.unwrap_or(0),
            header_calls: size("header_calls")?.unwrap_or(1),
            give_up_bytes: size("give_up_bytes")?,
        };
        PLAN.with(|cell| cell.set(plan));
        Ok(())
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(_facts: RequestFacts, _outcome: AttemptOutcome, _context: RetryContext) -> Decision {
        let plan = PLAN.with(Cell::get);
        if plan.log_bytes > 0 {
            // One buffer, handed over `log_calls` times: aliased.
            let message = "l".repeat(plan.log_bytes);
            for _ in 0..plan.log_calls {
                host::log(Level::Warn, &message);
            }
        }
        if plan.header_name_bytes > 0 {
            let name = "h".repeat(plan.header_name_bytes);
            for _ in 0..plan.header_calls {
                let _ = request::header(&name);
            }
        }
        match plan.give_up_bytes {
            Some(bytes) => Decision::GiveUp("g".repeat(bytes)),
            None => Decision::Retry(RetryPlan {
                delay_ms: 0,
                target: Target::Next,
            }),
        }
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

export!(AliasedOutput);
