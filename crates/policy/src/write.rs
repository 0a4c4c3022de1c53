//! Write policies: when a replicated write may be acknowledged.
//!
//! The host sends a write to the key's N replicas at once and calls the
//! write policy as each replica's result arrives, with every result so far
//! ([`ReplicaResult`], arrival order). The policy answers [`WriteDecision`]:
//! wait, acknowledge now, or fail now. The host enforces what no policy can
//! change: never acknowledge below `write_quorum_min` acks, never wait past
//! the deadline or once every replica has answered.
//!
//! - [`WriteQuorum`] (native): plain W-of-N, what levee does without a
//!   plugin: acknowledge at W acks, fail once W is out of reach.
//! - [`ZoneQuorum`] (the `zone-quorum` example plugin): W acks *and* acks
//!   from at least `zones_min` distinct zones, so an acknowledged write
//!   survives the loss of a whole zone. A node without a zone counts toward
//!   W but toward no zone.

use serde::Deserialize;

use crate::config::{self, ConfigError};
use crate::types::*;

/// What one replica did with the write (see `write.write-result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// Stored it, with this 2xx status.
    Acked(u16),
    /// Holds a newer version of the key.
    Superseded,
    /// Refused it for good, with this 4xx status.
    Rejected(u16),
    /// No lasting answer after the host's retries.
    Failed(AttemptResult),
}

/// One replica's result, as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaResult {
    pub node: NodeIndex,
    pub result: WriteResult,
    pub elapsed_ms: u32,
}

/// Limits and facts of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteContext<'a> {
    /// The write's replicas, ring order.
    pub replicas: &'a [NodeIndex],
    /// The service's W.
    pub write_quorum: u32,
    /// The floor below which the host refuses an `Acknowledge`.
    pub write_quorum_min: u32,
    pub deadline_remaining_ms: u32,
}

/// What a write policy answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteDecision {
    Wait,
    Acknowledge,
    /// Not confirmed; the reason is shown to the client.
    Fail(String),
}

/// The acknowledgements among `results`.
pub fn acks(results: &[ReplicaResult]) -> u32 {
    results
        .iter()
        .filter(|r| matches!(r.result, WriteResult::Acked(_)))
        .count() as u32
}

/// Acks and pending replicas among `results` for a write to `context`.
fn counts(results: &[ReplicaResult], context: &WriteContext<'_>) -> (u32, u32) {
    let acks = acks(results);
    let pending = context.replicas.len().saturating_sub(results.len()) as u32;
    (acks, pending)
}

/// The native write policy: plain W-of-N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteQuorum;

/// `WriteQuorum` takes no settings: `{}` (or nothing).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

impl WriteQuorum {
    /// Accepts only an empty config; W itself is the service's.
    pub fn from_json(json: &str) -> Result<WriteQuorum, String> {
        let NoConfig {} = config::parse(json)?;
        Ok(WriteQuorum)
    }

    pub fn decide(&self, results: &[ReplicaResult], context: &WriteContext<'_>) -> WriteDecision {
        let (acks, pending) = counts(results, context);
        let quorum = context.write_quorum;
        if acks >= quorum {
            WriteDecision::Acknowledge
        } else if acks + pending < quorum {
            WriteDecision::Fail(format!(
                "{acks} of {quorum} required acknowledgements and {pending} replicas pending: \
                 W is out of reach"
            ))
        } else {
            WriteDecision::Wait
        }
    }
}

/// Configuration of `zone-quorum`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneQuorumConfig {
    /// Distinct zones the acks must come from (1..=16).
    pub zones_min: u32,
}

impl Default for ZoneQuorumConfig {
    fn default() -> Self {
        ZoneQuorumConfig { zones_min: 2 }
    }
}

/// Most zones `zones_min` may ask for.
pub const ZONES_MIN_MAX: u32 = 16;

/// The `zone-quorum` policy: W acks from at least `zones_min` zones.
#[derive(Debug, Clone, Default)]
pub struct ZoneQuorum {
    pub config: ZoneQuorumConfig,
}

impl ZoneQuorum {
    /// Parses and validates a JSON config (empty means defaults).
    pub fn from_json(json: &str) -> Result<ZoneQuorum, String> {
        let config: ZoneQuorumConfig = config::parse(json)?;
        if !(1..=ZONES_MIN_MAX).contains(&config.zones_min) {
            return Err(ConfigError::field(
                "zones_min",
                format!(
                    "is {}, must be within 1..={ZONES_MIN_MAX}",
                    config.zones_min
                ),
            )
            .to_string());
        }
        Ok(ZoneQuorum { config })
    }

    /// `nodes` is the node table the results' indexes point into.
    pub fn decide(
        &self,
        nodes: &[NodeInfo],
        results: &[ReplicaResult],
        context: &WriteContext<'_>,
    ) -> WriteDecision {
        let zone_of = |node: NodeIndex| nodes.get(node as usize)?.zone.as_deref();
        let (acks, pending) = counts(results, context);
        let mut acked_zones: Vec<&str> = Vec::new();
        for result in results {
            if let (WriteResult::Acked(_), Some(zone)) = (result.result, zone_of(result.node))
                && !acked_zones.contains(&zone)
            {
                acked_zones.push(zone);
            }
        }
        let zones_min = self.config.zones_min as usize;
        if acks >= context.write_quorum && acked_zones.len() >= zones_min {
            return WriteDecision::Acknowledge;
        }
        // Zones still reachable: acked ones plus those of pending replicas.
        let mut reachable = acked_zones.clone();
        for &node in context.replicas {
            let answered = results.iter().any(|r| r.node == node);
            if let (false, Some(zone)) = (answered, zone_of(node))
                && !reachable.contains(&zone)
            {
                reachable.push(zone);
            }
        }
        if acks + pending < context.write_quorum || reachable.len() < zones_min {
            return WriteDecision::Fail(format!(
                "acknowledged by {acks} replicas in {} zone(s) [{}]; the write needs {} acks \
                 from at least {zones_min} zones and only {} zone(s) can still answer",
                acked_zones.len(),
                acked_zones.join(", "),
                context.write_quorum,
                reachable.len(),
            ));
        }
        WriteDecision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, zone: Option<&str>) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            address: format!("http://{id}"),
            zone: zone.map(str::to_owned),
            weight: 1,
        }
    }

    fn acked(node: NodeIndex) -> ReplicaResult {
        ReplicaResult {
            node,
            result: WriteResult::Acked(204),
            elapsed_ms: 1,
        }
    }

    fn failed(node: NodeIndex) -> ReplicaResult {
        ReplicaResult {
            node,
            result: WriteResult::Failed(AttemptResult::Error(ErrorKind::Connect)),
            elapsed_ms: 1,
        }
    }

    const REPLICAS: [NodeIndex; 3] = [0, 1, 2];

    fn context(write_quorum: u32) -> WriteContext<'static> {
        WriteContext {
            replicas: &REPLICAS,
            write_quorum,
            write_quorum_min: 1,
            deadline_remaining_ms: 1_000,
        }
    }

    #[test]
    fn write_quorum_is_w_of_n() {
        let native = WriteQuorum::from_json("{}").unwrap();
        assert_eq!(native.decide(&[acked(0)], &context(2)), WriteDecision::Wait);
        assert_eq!(
            native.decide(&[acked(0), acked(2)], &context(2)),
            WriteDecision::Acknowledge
        );
        let out_of_reach = native.decide(&[failed(0), failed(1)], &context(2));
        assert!(matches!(out_of_reach, WriteDecision::Fail(ref r) if r.contains("out of reach")));
        assert!(
            WriteQuorum::from_json(r#"{"w": 2}"#)
                .unwrap_err()
                .contains("w")
        );
    }

    #[test]
    fn zone_quorum_waits_for_a_second_zone_and_fails_when_none_can_answer() {
        let nodes = [
            node("a1", Some("a")),
            node("a2", Some("a")),
            node("b1", Some("b")),
        ];
        let policy = ZoneQuorum::from_json(r#"{"zones_min": 2}"#).unwrap();
        // W = 2 reached in zone a alone: wait for b.
        let same_zone = [acked(0), acked(1)];
        assert_eq!(
            policy.decide(&nodes, &same_zone, &context(2)),
            WriteDecision::Wait
        );
        // b answers: two zones.
        let both = [acked(0), acked(1), acked(2)];
        assert_eq!(
            policy.decide(&nodes, &both, &context(2)),
            WriteDecision::Acknowledge
        );
        // b fails: zone b cannot answer any more.
        let zone_down = [acked(0), acked(1), failed(2)];
        let decided = policy.decide(&nodes, &zone_down, &context(2));
        assert!(
            matches!(decided, WriteDecision::Fail(ref r) if r.contains("1 zone(s) [a]")),
            "{decided:?}"
        );
        // A node without a zone counts toward W only.
        let unzoned = [
            node("a1", Some("a")),
            node("x", None),
            node("b1", Some("b")),
        ];
        assert_eq!(
            policy.decide(&unzoned, &[acked(0), acked(1)], &context(2)),
            WriteDecision::Wait
        );
    }

    #[test]
    fn zone_quorum_config_is_checked() {
        assert_eq!(ZoneQuorum::from_json("").unwrap().config.zones_min, 2);
        let zero = ZoneQuorum::from_json(r#"{"zones_min": 0}"#).unwrap_err();
        assert!(zero.contains("zones_min"), "{zero}");
        let unknown = ZoneQuorum::from_json(r#"{"zones": 2}"#).unwrap_err();
        assert!(unknown.contains("zones"), "{unknown}");
    }
}
