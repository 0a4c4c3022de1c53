//! Zoo: a routing policy whose `route` returns an enormous plan.
//!
//! The plan lists `order_len` made-up node ids (config `{"order_len": N}`,
//! default 1,000,000). The host must refuse a plan longer than its cap (64
//! entries) rather than copy it out of the sandbox or act on it. Building
//! the default million ids outruns the host's CPU deadline (or its 16 MiB
//! memory cap) first, so with the default the plugin traps instead; 10,000
//! ids fit comfortably. Any other config is accepted, so it always loads.

wit_bindgen::generate!({
    world: "routing-policy",
    path: "../../../wit",
});

use exports::levee::policy::routing::{Guest, RoutePlan};
use levee::policy::types::{Node, RequestInfo};
use std::cell::Cell;

const ORDER_LEN_DEFAULT: usize = 1_000_000;

thread_local! {
    static ORDER_LEN: Cell<usize> = const { Cell::new(ORDER_LEN_DEFAULT) };
}

struct HugeList;

impl Guest for HugeList {
    fn configure(config: String) -> Result<(), String> {
        let order_len = size_from_config(&config, "order_len")?;
        ORDER_LEN.with(|cell| cell.set(order_len.unwrap_or(ORDER_LEN_DEFAULT)));
        Ok(())
    }

    fn route(_request: RequestInfo, candidates: Vec<Node>) -> RoutePlan {
        // Real ids first, so a host that truncated instead of refusing
        // would route somewhere plausible and the test could not tell.
        let real = candidates.into_iter().map(|node| node.id);
        let order = real.chain((0..).map(|i| format!("zoo-node-{i}")));
        RoutePlan {
            order: order.take(ORDER_LEN.with(Cell::get)).collect(),
            hedge_delay_ms: None,
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

export!(HugeList);
