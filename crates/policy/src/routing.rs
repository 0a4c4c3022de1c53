//! `route-affinity`: the ring's order, healthy nodes only, optionally the
//! preferred zone first, optionally hedged.
//!
//! Why these rules:
//! - **Ring order is kept**: the candidates arrive in the key's preference
//!   list order, and following it keeps a key's reads on the same replica
//!   (warm caches, read-your-writes on the primary) for as long as it is up.
//! - **Unhealthy nodes are skipped**, not demoted: a retry walks the plan and
//!   wraps around, so an ejected node at the end would still take traffic
//!   while it recovers. Only when *no* candidate is healthy does the plan
//!   fall back to all of them, in ring order: health is the host's guess, and
//!   trying a suspect node beats failing the request outright.
//! - **Zone preference is a stable partition**: healthy nodes in
//!   `prefer_zone` first, then the other healthy nodes, each group in ring
//!   order. Staying in-zone saves latency and cross-zone traffic without
//!   giving up on the other zones.
//! - **Hedging** (`hedge_delay_ms`) is offered only for reads (`GET`,
//!   `HEAD`), whose duplicate costs nothing but load, and only when the plan
//!   has a second node to hedge to.
//!
//! The plan is bounded: at most [`limits::ROUTE_ORDER_MAX`] ids, no
//! duplicates, each id one of the candidates.

use crate::config::{self, ConfigError};
use crate::limits;
use crate::types::*;
use serde::Deserialize;

/// Longest accepted `prefer_zone`.
pub const ZONE_BYTES_MAX: usize = 256;

/// Configuration of `route-affinity`; JSON field names are the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Healthy nodes in this zone go first. Non-empty when set.
    pub prefer_zone: Option<String>,
    /// Hedge reads after this long, `1..=RETRY_DELAY_MS_MAX`.
    pub hedge_delay_ms: Option<u32>,
}

impl RoutingConfig {
    /// Checks every field, naming the one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(zone) = &self.prefer_zone
            && (zone.is_empty() || zone.len() > ZONE_BYTES_MAX)
        {
            return Err(ConfigError::field(
                "prefer_zone",
                format!(
                    "length {} is outside 1..={ZONE_BYTES_MAX} bytes",
                    zone.len()
                ),
            ));
        }
        if let Some(hedge_delay_ms) = self.hedge_delay_ms
            && !(1..=limits::RETRY_DELAY_MS_MAX).contains(&hedge_delay_ms)
        {
            return Err(ConfigError::field(
                "hedge_delay_ms",
                format!(
                    "{hedge_delay_ms} is outside 1..={}",
                    limits::RETRY_DELAY_MS_MAX
                ),
            ));
        }
        Ok(())
    }
}

/// The `route-affinity` policy.
#[derive(Debug, Clone, Default)]
pub struct RouteAffinity {
    pub config: RoutingConfig,
}

impl RouteAffinity {
    /// A policy from a validated config.
    pub fn new(config: RoutingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(RouteAffinity { config })
    }

    /// Parses and validates a JSON config (empty means defaults).
    pub fn from_json(json: &str) -> Result<Self, String> {
        Ok(Self::new(config::parse(json)?)?)
    }

    /// `candidates` are the key's replicas in ring order.
    pub fn route(&self, request: &RequestInfo, candidates: &[Node]) -> RoutePlan {
        let any_healthy = candidates.iter().any(|node| node.healthy);
        // Skip the unhealthy, unless that would leave nothing to try.
        let pool = || {
            candidates
                .iter()
                .filter(move |node| node.healthy || !any_healthy)
        };
        let in_zone = |node: &&Node| self.is_preferred_zone(node);
        let order = bounded_unique_ids(
            pool()
                .filter(in_zone)
                .chain(pool().filter(|node| !in_zone(node))),
        );
        debug_assert!(order.len() <= limits::ROUTE_ORDER_MAX);
        let hedge_delay_ms = self.hedge_delay_ms(request, order.len());
        RoutePlan {
            order,
            hedge_delay_ms,
        }
    }

    fn is_preferred_zone(&self, node: &Node) -> bool {
        match (&self.config.prefer_zone, &node.zone) {
            (Some(preferred), Some(zone)) => preferred == zone,
            _ => false,
        }
    }

    fn hedge_delay_ms(&self, request: &RequestInfo, plan_nodes: usize) -> Option<u32> {
        let is_read = matches!(request.method.as_str(), "GET" | "HEAD");
        if is_read && plan_nodes >= 2 {
            self.config.hedge_delay_ms
        } else {
            None
        }
    }
}

/// The first [`limits::ROUTE_ORDER_MAX`] distinct ids, in order. The ring
/// should never repeat a node, but the plan must stay a set whatever the
/// input; the scan is over at most `ROUTE_ORDER_MAX` kept ids per node.
fn bounded_unique_ids<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for node in nodes {
        if ids.len() == limits::ROUTE_ORDER_MAX {
            break;
        }
        if !ids.contains(&node.id) {
            ids.push(node.id.clone());
        }
    }
    ids
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
