//! A routing policy for levee: the `routing-policy` world of
//! `wit/levee-policy.wit` (its doc comments are the manual).
//!
//! It keeps the ring's order, healthy candidates first: the healthy ones
//! in ring order, then the others in ring order (so a request still has
//! somewhere to go when every candidate is down). With `hedge_delay_ms`
//! set, a read (GET or HEAD) also goes to the next node if the first has
//! not answered after that long.
//!
//! The plan depends only on the request facts and the candidates' order
//! and `healthy` flags, so `configure` declares
//! `cacheable-by-health-flags`: the host may reuse a plan without calling
//! `route` again.
//!
//! Config, every field optional: `{"hedge_delay_ms": 50}` (no hedging
//! without it).

wit_bindgen::generate!({
    world: "routing-policy",
    path: "wit",
});

use std::cell::RefCell;

use exports::levee::policy::routing::{Guest, RoutePlan, RouteTraits};
use levee::policy::types::{Candidate, Method, NodeInfo, RequestFacts};
use serde::Deserialize;

/// The longest hedge delay a config may ask for.
const HEDGE_DELAY_MS_MAX: u32 = 60_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Hedge reads after this long; `None`: never.
    hedge_delay_ms: Option<u32>,
}

/// The binding's `config`, validated; the error names the field at fault.
fn parse_config(text: &str) -> Result<Config, String> {
    let config: Config =
        serde_json::from_str(text).map_err(|error| format!("invalid config: {error}"))?;
    if let Some(delay) = config.hedge_delay_ms
        && !(1..=HEDGE_DELAY_MS_MAX).contains(&delay)
    {
        return Err(format!(
            "config field `hedge_delay_ms`: {delay} is outside 1..={HEDGE_DELAY_MS_MAX}"
        ));
    }
    Ok(config)
}

/// The policy itself: plain Rust over the WIT types, tested below.
fn route(config: &Config, facts: RequestFacts, candidates: &[Candidate]) -> RoutePlan {
    let healthy = candidates.iter().filter(|candidate| candidate.healthy);
    let unhealthy = candidates.iter().filter(|candidate| !candidate.healthy);
    let read = matches!(facts.method, Method::Get | Method::Head);
    RoutePlan {
        order: healthy
            .chain(unhealthy)
            .map(|candidate| candidate.node)
            .collect(),
        hedge_delay_ms: config.hedge_delay_ms.filter(|_| read),
    }
}

thread_local! {
    /// The configured policy: defaults until `configure` succeeds; a
    /// failed `configure` leaves it as it was.
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: String) -> Result<RouteTraits, String> {
        let config = parse_config(&config)?;
        CONFIG.with(|slot| *slot.borrow_mut() = config);
        // True whatever the config: see the module doc.
        Ok(RouteTraits {
            cacheable_by_health_flags: true,
        })
    }

    /// This policy needs no node table (candidates come in ring order).
    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn route(facts: RequestFacts, candidates: Vec<Candidate>) -> RoutePlan {
        CONFIG.with(|config| route(&config.borrow(), facts, &candidates))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_candidates_first_in_ring_order() {
        let config = parse_config(r#"{"hedge_delay_ms": 50}"#).unwrap();
        let candidate = |node, healthy| Candidate {
            node,
            healthy,
            failure_rate_permille: 0,
            latency_ms: 0,
        };
        let candidates = [
            candidate(4, false),
            candidate(2, true),
            candidate(7, false),
            candidate(1, true),
        ];
        let facts = |method| RequestFacts {
            method,
            idempotent: true,
        };

        let read = route(&config, facts(Method::Get), &candidates);
        assert_eq!(
            (read.order, read.hedge_delay_ms),
            (vec![2, 1, 4, 7], Some(50))
        );
        let write = route(&config, facts(Method::Put), &candidates);
        assert_eq!(
            (write.order, write.hedge_delay_ms),
            (vec![2, 1, 4, 7], None)
        );
        assert!(route(&config, facts(Method::Get), &[]).order.is_empty());

        assert_eq!(parse_config("{}").unwrap().hedge_delay_ms, None);
        assert!(parse_config(r#"{"hedge_delay_ms": 0}"#).is_err());
        assert!(parse_config(r#"{"hedge": 5}"#).is_err());
    }
}
