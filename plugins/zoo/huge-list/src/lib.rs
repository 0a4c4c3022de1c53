//! Zoo: a routing policy whose `route` returns an enormous plan.
//!
//! The plan lists `order_len` node indexes (config `{"order_len": N}`,
//! default 16,000,000): the candidates' own first, then made-up ones from
//! [`MADE_UP_INDEX_FIRST`] up, far past any node table. The host must refuse
//! a plan longer than its cap (64 entries) rather than copy it out of the
//! sandbox or act on it. The default's 64 MB of indexes cannot fit the
//! host's 16 MiB memory cap, so with the default the plugin traps instead
//! (while allocating, before writing an entry); 10,000 indexes fit
//! comfortably. Any other config is accepted, so it always loads.

wit_bindgen::generate!({
    world: "routing-policy",
    path: "../../../wit",
});

use exports::levee::policy::routing::{Guest, RoutePlan, RouteTraits};
use levee::policy::types::{Candidate, NodeInfo, RequestFacts};
use std::cell::Cell;

/// Four bytes each: 64 MB, four times the host's default memory cap.
const ORDER_LEN_DEFAULT: usize = 16_000_000;
/// The first made-up index. levee's node tables hold at most 4,096 nodes,
/// so no index from here up (to the 16 M-th made-up one) names a node.
pub const MADE_UP_INDEX_FIRST: u32 = 1 << 31;

thread_local! {
    static ORDER_LEN: Cell<usize> = const { Cell::new(ORDER_LEN_DEFAULT) };
}

struct HugeList;

impl Guest for HugeList {
    fn configure(config: String) -> Result<RouteTraits, String> {
        let order_len = size_from_config(&config, "order_len")?;
        ORDER_LEN.with(|cell| cell.set(order_len.unwrap_or(ORDER_LEN_DEFAULT)));
        Ok(RouteTraits {
            cacheable_by_health_flags: false,
        })
    }

    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn route(_facts: RequestFacts, candidates: Vec<Candidate>) -> RoutePlan {
        // Real indexes first, so a host that truncated instead of refusing
        // would route somewhere plausible and the test could not tell.
        let real = candidates.into_iter().map(|candidate| candidate.node);
        let order = real.chain(MADE_UP_INDEX_FIRST..);
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
