//! A retry policy for levee: the `retry-policy` world of
//! `wit/levee-policy.wit` (its doc comments are the manual).
//!
//! After a failed attempt it retries on the next candidate, after
//! `delay_ms`, when the upstream answered one of `statuses` or the attempt
//! could not connect, timed out or was reset; it gives up on anything
//! else, on a request that is not idempotent (it may have been applied),
//! and when the delay would outlast the request's deadline. The host's own
//! limits (attempts, retry budget, deadline) hold whatever it answers.
//!
//! Config, every field optional: `{"statuses": [502, 503, 504], "delay_ms": 25}`.

wit_bindgen::generate!({
    world: "retry-policy",
    path: "wit",
});

use std::cell::RefCell;

use exports::levee::policy::retry::{Decision, Guest, RetryPlan, Target};
use levee::policy::types::{
    AttemptOutcome, AttemptResult, ErrorKind, NodeInfo, RequestFacts, RetryContext,
};
use serde::Deserialize;

/// The longest delay a config may ask for.
const DELAY_MS_MAX: u32 = 60_000;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Statuses worth another attempt (429 or 500..=599: the host asks a
    /// retry policy about nothing else).
    statuses: Vec<u16>,
    /// How long to wait before the next attempt.
    delay_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            statuses: vec![502, 503, 504],
            delay_ms: 25,
        }
    }
}

/// The binding's `config`, validated; the error names the field at fault.
fn parse_config(text: &str) -> Result<Config, String> {
    let config: Config =
        serde_json::from_str(text).map_err(|error| format!("invalid config: {error}"))?;
    if let Some(status) = config
        .statuses
        .iter()
        .find(|&&status| status != 429 && !(500..=599).contains(&status))
    {
        return Err(format!(
            "config field `statuses`: {status} is not 429 or 500..=599"
        ));
    }
    if config.delay_ms > DELAY_MS_MAX {
        return Err(format!(
            "config field `delay_ms`: {} is more than {DELAY_MS_MAX}",
            config.delay_ms
        ));
    }
    Ok(config)
}

/// The policy itself: plain Rust over the WIT types, tested below.
fn decide(
    config: &Config,
    facts: RequestFacts,
    outcome: &AttemptOutcome,
    context: &RetryContext,
) -> Decision {
    if !facts.idempotent {
        return Decision::GiveUp("request is not idempotent".to_string());
    }
    match outcome.result {
        AttemptResult::Status(status) if !config.statuses.contains(&status) => {
            return Decision::GiveUp(format!("status {status} is not retried"));
        }
        AttemptResult::Error(ErrorKind::Protocol | ErrorKind::Other) => {
            return Decision::GiveUp("a protocol or other error is not retried".to_string());
        }
        _ => {}
    }
    if config.delay_ms >= context.deadline_remaining_ms {
        return Decision::GiveUp(format!(
            "a {} ms delay leaves no time before the deadline",
            config.delay_ms
        ));
    }
    Decision::Retry(RetryPlan {
        delay_ms: config.delay_ms,
        target: Target::Next,
    })
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

    fn decide(facts: RequestFacts, outcome: AttemptOutcome, context: RetryContext) -> Decision {
        CONFIG.with(|config| decide(&config.borrow(), facts, &outcome, &context))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use levee::policy::types::Method;

    #[test]
    fn retries_listed_statuses_and_transient_errors_only() {
        let config = parse_config(r#"{"statuses": [503], "delay_ms": 10}"#).unwrap();
        let get = RequestFacts {
            method: Method::Get,
            idempotent: true,
        };
        let post = RequestFacts {
            method: Method::Post,
            idempotent: false,
        };
        let failed = |result| AttemptOutcome {
            node: 0,
            attempt: 1,
            result,
            elapsed_ms: 5,
            retry_after_ms: None,
        };
        let context = |deadline_remaining_ms| RetryContext {
            budget_remaining: 10,
            deadline_remaining_ms,
            max_attempts: 3,
            candidates: vec![0, 1, 2],
        };
        let retried = |decision| {
            matches!(
                decision,
                Decision::Retry(RetryPlan {
                    delay_ms: 10,
                    target: Target::Next
                })
            )
        };

        let unavailable = failed(AttemptResult::Status(503));
        assert!(retried(decide(&config, get, &unavailable, &context(1000))));
        let refused = failed(AttemptResult::Error(ErrorKind::Connect));
        assert!(retried(decide(&config, get, &refused, &context(1000))));
        // Not listed, not transient, not idempotent, no time left.
        let bad_gateway = failed(AttemptResult::Status(502));
        assert!(!retried(decide(&config, get, &bad_gateway, &context(1000))));
        let garbled = failed(AttemptResult::Error(ErrorKind::Protocol));
        assert!(!retried(decide(&config, get, &garbled, &context(1000))));
        assert!(!retried(decide(
            &config,
            post,
            &unavailable,
            &context(1000)
        )));
        assert!(!retried(decide(&config, get, &unavailable, &context(10))));

        assert_eq!(parse_config("{}").unwrap().statuses, [502, 503, 504]);
        assert!(parse_config(r#"{"statuses": [404]}"#).is_err());
        assert!(parse_config(r#"{"delay": 5}"#).is_err());
    }
}
