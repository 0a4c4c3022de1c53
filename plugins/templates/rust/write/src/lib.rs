//! A write policy for levee: the `write-policy` world of
//! `wit/levee-policy.wit` (its doc comments are the manual).
//!
//! It acknowledges a write once `acks` replicas stored it (by default the
//! service's W; never fewer than its `write_quorum_min`, the floor the host
//! holds anyway), fails it as soon as too few replicas are left to get
//! there, and waits otherwise.
//!
//! Config, every field optional: `{"acks": 2}` (default: the service's W).

wit_bindgen::generate!({
    world: "write-policy",
    path: "wit",
});

use std::cell::RefCell;

use exports::levee::policy::write::{
    Guest, ReplicaResult, WriteContext, WriteDecision, WriteResult,
};
use levee::policy::types::{NodeInfo, RequestFacts};
use serde::Deserialize;

/// The most acks a config may ask for.
const ACKS_MAX: u32 = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Acks that answer the client; `None`: the service's W.
    acks: Option<u32>,
}

/// The binding's `config`, validated; the error names the field at fault.
fn parse_config(text: &str) -> Result<Config, String> {
    let config: Config =
        serde_json::from_str(text).map_err(|error| format!("invalid config: {error}"))?;
    if let Some(acks) = config.acks
        && !(1..=ACKS_MAX).contains(&acks)
    {
        return Err(format!(
            "config field `acks`: {acks} is outside 1..={ACKS_MAX}"
        ));
    }
    Ok(config)
}

/// The policy itself: plain Rust over the WIT types, tested below.
fn decide(config: &Config, results: &[ReplicaResult], context: &WriteContext) -> WriteDecision {
    let needed = config
        .acks
        .unwrap_or(context.write_quorum)
        .max(context.write_quorum_min);
    let acked = results
        .iter()
        .filter(|result| matches!(result.result, WriteResult::Acked(_)))
        .count() as u32;
    if acked >= needed {
        return WriteDecision::Acknowledge;
    }
    let pending = (context.replicas.len() as u32).saturating_sub(results.len() as u32);
    if acked + pending < needed {
        return WriteDecision::Fail(format!(
            "{acked} of the {needed} acks needed, and {pending} replica(s) left to answer"
        ));
    }
    WriteDecision::Wait
}

thread_local! {
    /// The configured policy: defaults until `configure` succeeds; a
    /// failed `configure` leaves it as it was.
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        CONFIG.with(|slot| *slot.borrow_mut() = config);
        Ok(())
    }

    /// This policy needs no node table.
    fn set_nodes(_nodes: Vec<NodeInfo>) {}

    fn decide(
        _facts: RequestFacts,
        results: Vec<ReplicaResult>,
        context: WriteContext,
    ) -> WriteDecision {
        CONFIG.with(|config| decide(&config.borrow(), &results, &context))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use levee::policy::types::{AttemptResult, ErrorKind};

    #[test]
    fn acknowledges_at_w_acks_and_fails_when_out_of_reach() {
        let config = parse_config("{}").unwrap();
        let context = WriteContext {
            replicas: vec![0, 1, 2],
            write_quorum: 2,
            write_quorum_min: 1,
            deadline_remaining_ms: 1_000,
        };
        let result = |node, result| ReplicaResult {
            node,
            result,
            elapsed_ms: 3,
        };
        let acked = |node| result(node, WriteResult::Acked(204));
        let failed = |node| {
            result(
                node,
                WriteResult::Failed(AttemptResult::Error(ErrorKind::Timeout)),
            )
        };

        assert!(matches!(
            decide(&config, &[acked(0)], &context),
            WriteDecision::Wait
        ));
        assert!(matches!(
            decide(&config, &[acked(0), acked(2)], &context),
            WriteDecision::Acknowledge
        ));
        assert!(matches!(
            decide(&config, &[failed(0), failed(1)], &context),
            WriteDecision::Fail(_)
        ));
        // Asking for all three: one failure is already too many.
        let all = parse_config(r#"{"acks": 3}"#).unwrap();
        assert!(matches!(
            decide(&all, &[acked(0), failed(1)], &context),
            WriteDecision::Fail(_)
        ));

        assert!(parse_config(r#"{"acks": 0}"#).is_err());
        assert!(parse_config(r#"{"quorum": 2}"#).is_err());
    }
}
