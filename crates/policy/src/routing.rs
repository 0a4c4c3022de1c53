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
//! Zones come from the node table ([`NodeInfo`], given once per
//! configuration change); the candidates carry only their [`NodeIndex`] and
//! health, so a call reads no strings but the zone names it compares. A
//! candidate whose index is outside the table has no zone: it is routed like
//! any other, never as preferred.
//!
//! The plan is bounded: at most [`limits::ROUTE_ORDER_MAX`] nodes, no
//! duplicates, each one of the candidates. Building it allocates once: the
//! order's `Vec`, sized up front to the plan's length.

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

    /// `candidates` are the key's replicas in ring order; `nodes` is the
    /// service's node table their indexes refer to.
    pub fn route(
        &self,
        facts: RequestFacts,
        nodes: &[NodeInfo],
        candidates: &[Candidate],
    ) -> RoutePlan {
        let healthy = candidates
            .iter()
            .filter(|candidate| candidate.healthy)
            .count();
        let any_healthy = healthy > 0;
        // Skip the unhealthy, unless that would leave nothing to try.
        let pool = || {
            candidates
                .iter()
                .filter(move |candidate| candidate.healthy || !any_healthy)
        };
        let in_zone = |candidate: &&Candidate| self.is_preferred_zone(nodes, candidate.node);
        // Exactly the plan's length (unless the ring repeated a node): a
        // plugin returns the order as is, with no shrinking copy.
        let planned = if any_healthy {
            healthy
        } else {
            candidates.len()
        };
        let mut order = Vec::with_capacity(planned.min(limits::ROUTE_ORDER_MAX));
        let mut seen = Seen::default();
        push_bounded_unique(&mut order, &mut seen, pool().filter(in_zone));
        push_bounded_unique(
            &mut order,
            &mut seen,
            pool().filter(|candidate| !in_zone(candidate)),
        );
        debug_assert!(order.len() <= limits::ROUTE_ORDER_MAX);
        let hedge_delay_ms = self.hedge_delay_ms(facts, order.len());
        RoutePlan {
            order,
            hedge_delay_ms,
        }
    }

    /// Whether the table puts `node` in `prefer_zone`; an index outside the
    /// table has no zone.
    fn is_preferred_zone(&self, nodes: &[NodeInfo], node: NodeIndex) -> bool {
        let Some(preferred) = self.config.prefer_zone.as_deref() else {
            return false;
        };
        let zone = usize::try_from(node)
            .ok()
            .and_then(|index| nodes.get(index))
            .and_then(|info| info.zone.as_deref());
        zone == Some(preferred)
    }

    fn hedge_delay_ms(&self, facts: RequestFacts, plan_nodes: usize) -> Option<u32> {
        if facts.method.is_read() && plan_nodes >= 2 {
            self.config.hedge_delay_ms
        } else {
            None
        }
    }
}

/// The nodes already in a plan: a bitset for the indexes of a small table
/// (one bit test per candidate), a scan of the plan for larger ones.
#[derive(Default)]
struct Seen {
    small: [u64; SEEN_BITSET_WORDS],
}

/// Node indexes below `64 × SEEN_BITSET_WORDS` (256) are tracked by the
/// bitset.
const SEEN_BITSET_WORDS: usize = 4;

impl Seen {
    /// Whether `node` is not in `order` yet; marks it as in.
    #[inline]
    fn insert(&mut self, order: &[NodeIndex], node: NodeIndex) -> bool {
        match self.small.get_mut(node as usize / 64) {
            Some(word) => {
                let bit = 1u64 << (node % 64);
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            None => !order.contains(&node),
        }
    }
}

/// Appends the candidates' nodes not yet in `order`, until `order` holds
/// [`limits::ROUTE_ORDER_MAX`]. The ring should never repeat a node, but
/// the plan must stay a set whatever the input.
fn push_bounded_unique<'a>(
    order: &mut Vec<NodeIndex>,
    seen: &mut Seen,
    candidates: impl Iterator<Item = &'a Candidate>,
) {
    for candidate in candidates {
        if order.len() == limits::ROUTE_ORDER_MAX {
            return;
        }
        if seen.insert(order, candidate.node) {
            order.push(candidate.node);
        }
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
