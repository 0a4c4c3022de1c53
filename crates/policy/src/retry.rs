//! `retry-backoff`: exponential backoff with full jitter, bounded by the
//! request's deadline, the service's retry budget and an attempt cap.
//!
//! Why these rules:
//! - **Full jitter** (delay uniform in `[0, min(max, base * 2^(attempt-1))]`)
//!   spreads the retries of many clients that failed together, which is what
//!   keeps a brief upstream hiccup from turning into synchronized retry waves.
//! - **Only transient failures are retried**: a refused connection, a
//!   timeout, a reset, and the gateway statuses (502, 503, 504 by default).
//!   A 500 is usually a bug that fails again; a 429 is only retried when the
//!   upstream says when (`Retry-After`) or the operator opts in.
//! - **`Retry-After` is honoured on 429 and 503**: the upstream knows better
//!   than our backoff when it can take traffic again. It is capped by
//!   `retry_after_max_ms` so one upstream cannot park requests for minutes.
//! - **Non-idempotent requests are never retried**: a POST that timed out
//!   may well have been applied, and sending it again could apply it twice.
//!   This includes connect failures, to keep the rule simple enough to state
//!   in one line. Idempotency is [`RequestFacts::idempotent`] alone: the host
//!   folds a non-empty `Idempotency-Key` header into it, so this policy never
//!   reads a header (and a plugin built from it never pays for one).
//! - **Where to retry**: after a connect failure always the next node (the
//!   failed one is unreachable). Otherwise `target` decides, `next` by
//!   default: a node that timed out or answered 503 is likely overloaded or
//!   draining, so another replica is the better bet; `same` suits services
//!   whose replicas are not interchangeable for a key.
//! - **Give up early** rather than sleep past the deadline (the wait plus
//!   the attempt must fit: a delay that uses up all remaining time gives up)
//!   or spend a retry the budget does not have. The give-up reason says which
//!   rule fired; it shows up in logs and metrics.
//!
//! The host enforces the deadline, budget and attempt cap whatever a policy
//! answers; this policy respects them so that its answers are truthful.

use crate::config::{self, ConfigError};
use crate::limits;
use crate::types::*;
use serde::Deserialize;
use std::fmt;

/// Largest allowed `max_attempts` (the first attempt included).
pub const MAX_ATTEMPTS_MAX: u32 = 10;
/// Most entries in `retry_statuses`.
pub const RETRY_STATUSES_MAX: usize = 16;

/// Where a retry goes when the failure was not a connect failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryTarget {
    /// The next candidate in routing order.
    #[default]
    Next,
    /// The node that just failed.
    Same,
}

/// Configuration of `retry-backoff`; JSON field names are the same.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in total, the first included, `1..=MAX_ATTEMPTS_MAX`. The
    /// host's `context.max_attempts` caps it further.
    pub max_attempts: u32,
    /// Backoff ceiling for the first retry; doubles with each attempt.
    pub base_delay_ms: u32,
    /// Largest backoff ceiling, `>= base_delay_ms`.
    pub max_delay_ms: u32,
    /// HTTP statuses retried. 429 or 500..=599 (the host only consults the
    /// policy for those). 429 is retried without `Retry-After` only if here.
    pub retry_statuses: Vec<u16>,
    /// Cap on a honoured `Retry-After`.
    pub retry_after_max_ms: u32,
    /// Where retries go after anything but a connect failure.
    pub target: RetryTarget,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base_delay_ms: 25,
            max_delay_ms: 1_000,
            retry_statuses: vec![502, 503, 504],
            retry_after_max_ms: 10_000,
            target: RetryTarget::Next,
        }
    }
}

impl RetryConfig {
    /// Checks the rules between and within fields, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS_MAX).contains(&self.max_attempts) {
            return Err(ConfigError::field(
                "max_attempts",
                format!("{} is outside 1..={MAX_ATTEMPTS_MAX}", self.max_attempts),
            ));
        }
        if self.max_delay_ms > limits::RETRY_DELAY_MS_MAX {
            return Err(ConfigError::field(
                "max_delay_ms",
                format!(
                    "{} exceeds {}",
                    self.max_delay_ms,
                    limits::RETRY_DELAY_MS_MAX
                ),
            ));
        }
        if self.base_delay_ms > self.max_delay_ms {
            return Err(ConfigError::field(
                "base_delay_ms",
                format!(
                    "{} exceeds max_delay_ms {}",
                    self.base_delay_ms, self.max_delay_ms
                ),
            ));
        }
        if self.retry_after_max_ms > limits::RETRY_DELAY_MS_MAX {
            return Err(ConfigError::field(
                "retry_after_max_ms",
                format!(
                    "{} exceeds {}",
                    self.retry_after_max_ms,
                    limits::RETRY_DELAY_MS_MAX
                ),
            ));
        }
        self.validate_statuses()
    }

    fn validate_statuses(&self) -> Result<(), ConfigError> {
        if self.retry_statuses.len() > RETRY_STATUSES_MAX {
            return Err(ConfigError::field(
                "retry_statuses",
                format!(
                    "{} entries, more than {RETRY_STATUSES_MAX}",
                    self.retry_statuses.len()
                ),
            ));
        }
        match self
            .retry_statuses
            .iter()
            .find(|&&status| !is_consultable_status(status))
        {
            Some(status) => Err(ConfigError::field(
                "retry_statuses",
                format!("{status} is not 429 or 500..=599"),
            )),
            None => Ok(()),
        }
    }
}

/// Statuses for which the host consults a retry policy at all.
fn is_consultable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// What a retry looks like when the policy decides to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    pub delay_ms: u32,
    pub target: Target,
}

/// Why the policy stopped. `Display` is the give-up reason string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUpReason {
    StatusNotRetryable(u16),
    /// A 429 without `Retry-After`, and 429 is not in `retry_statuses`.
    TooManyRequestsWithoutRetryAfter,
    ErrorNotRetryable(ErrorKind),
    NotIdempotent,
    AttemptsExhausted {
        attempt: u32,
        max_attempts: u32,
    },
    BudgetExhausted,
    PastDeadline {
        delay_ms: u32,
        deadline_remaining_ms: u32,
    },
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUpReason::StatusNotRetryable(status) => {
                write!(f, "status {status} is not retryable")
            }
            GiveUpReason::TooManyRequestsWithoutRetryAfter => {
                write!(f, "status 429 without Retry-After is not retried")
            }
            GiveUpReason::ErrorNotRetryable(kind) => {
                write!(f, "{} error is not retryable", error_kind_name(*kind))
            }
            GiveUpReason::NotIdempotent => {
                write!(f, "request is not idempotent and has no idempotency-key")
            }
            GiveUpReason::AttemptsExhausted {
                attempt,
                max_attempts,
            } => {
                write!(f, "attempt {attempt} reached max attempts {max_attempts}")
            }
            GiveUpReason::BudgetExhausted => write!(f, "retry budget exhausted"),
            GiveUpReason::PastDeadline {
                delay_ms,
                deadline_remaining_ms,
            } => write!(
                f,
                "delay {delay_ms} ms leaves no time before the deadline ({deadline_remaining_ms} ms left)"
            ),
        }
    }
}

fn error_kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Reset => "reset",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Other => "other",
    }
}

/// The `retry-backoff` policy.
#[derive(Debug, Clone, Default)]
pub struct RetryBackoff {
    pub config: RetryConfig,
}

impl RetryBackoff {
    /// A policy from a validated config.
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(RetryBackoff { config })
    }

    /// Parses and validates a JSON config (empty means defaults).
    pub fn from_json(json: &str) -> Result<Self, String> {
        Ok(Self::new(config::parse(json)?)?)
    }

    /// `random` is a uniformly random u64 used for jitter.
    pub fn decide(
        &self,
        facts: RequestFacts,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
        random: u64,
    ) -> RetryDecision {
        match self.plan(facts, outcome, context, random) {
            Ok(plan) => RetryDecision::Retry {
                delay_ms: plan.delay_ms,
                target: plan.target,
            },
            Err(reason) => RetryDecision::GiveUp(reason.to_string()),
        }
    }

    /// [`Self::decide`] with a typed reason, for callers and tests that
    /// need to know which rule fired.
    pub fn plan(
        &self,
        facts: RequestFacts,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
        random: u64,
    ) -> Result<RetryPlan, GiveUpReason> {
        self.check_retryable(outcome)?;
        if !facts.idempotent {
            return Err(GiveUpReason::NotIdempotent);
        }
        self.check_attempts(outcome, context)?;
        if context.budget_remaining == 0 {
            return Err(GiveUpReason::BudgetExhausted);
        }
        let delay_ms = self.delay_ms(outcome, random);
        debug_assert!(delay_ms <= limits::RETRY_DELAY_MS_MAX);
        if delay_ms >= context.deadline_remaining_ms {
            return Err(GiveUpReason::PastDeadline {
                delay_ms,
                deadline_remaining_ms: context.deadline_remaining_ms,
            });
        }
        Ok(RetryPlan {
            delay_ms,
            target: self.target(outcome),
        })
    }

    fn check_retryable(&self, outcome: &AttemptOutcome) -> Result<(), GiveUpReason> {
        match outcome.result {
            AttemptResult::Error(ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Reset) => {
                Ok(())
            }
            AttemptResult::Error(kind) => Err(GiveUpReason::ErrorNotRetryable(kind)),
            AttemptResult::Status(status) if self.config.retry_statuses.contains(&status) => Ok(()),
            AttemptResult::Status(429) if outcome.retry_after_ms.is_some() => Ok(()),
            AttemptResult::Status(429) => Err(GiveUpReason::TooManyRequestsWithoutRetryAfter),
            AttemptResult::Status(status) => Err(GiveUpReason::StatusNotRetryable(status)),
        }
    }

    fn check_attempts(
        &self,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
    ) -> Result<(), GiveUpReason> {
        let max_attempts = self.config.max_attempts.min(context.max_attempts);
        if outcome.attempt >= max_attempts {
            return Err(GiveUpReason::AttemptsExhausted {
                attempt: outcome.attempt,
                max_attempts,
            });
        }
        Ok(())
    }

    /// The upstream's `Retry-After` (capped) when honoured, else full jitter.
    fn delay_ms(&self, outcome: &AttemptOutcome, random: u64) -> u32 {
        let delay_ms = match honoured_retry_after_ms(outcome) {
            Some(retry_after_ms) => retry_after_ms.min(self.config.retry_after_max_ms),
            None => full_jitter_ms(self.backoff_ceiling_ms(outcome.attempt), random),
        };
        delay_ms.min(limits::RETRY_DELAY_MS_MAX)
    }

    /// `min(max_delay_ms, base_delay_ms * 2^(attempt-1))`, without overflow.
    pub fn backoff_ceiling_ms(&self, attempt: u32) -> u32 {
        // 2^31 times any u32 base already exceeds every u32 ceiling.
        let doublings = attempt.saturating_sub(1).min(31);
        let ceiling_ms = u64::from(self.config.base_delay_ms) << doublings;
        let max_delay_ms = self.config.max_delay_ms.min(limits::RETRY_DELAY_MS_MAX);
        ceiling_ms.min(u64::from(max_delay_ms)) as u32
    }

    fn target(&self, outcome: &AttemptOutcome) -> Target {
        match (outcome.result, self.config.target) {
            (AttemptResult::Error(ErrorKind::Connect), _) => Target::Next,
            (_, RetryTarget::Next) => Target::Next,
            (_, RetryTarget::Same) => Target::Same,
        }
    }
}

/// `Retry-After` counts on 429 and 503 only: those are the statuses whose
/// semantics define it (RFC 9110 §10.2.3).
fn honoured_retry_after_ms(outcome: &AttemptOutcome) -> Option<u32> {
    match outcome.result {
        AttemptResult::Status(429 | 503) => outcome.retry_after_ms,
        _ => None,
    }
}

/// A delay uniform in `[0, ceiling_ms]` from one random u64. Multiplying and
/// keeping the high 64 bits maps the u64 range onto `ceiling_ms + 1` buckets
/// with a bias below 2^-32, and uses the generator's high bits.
pub fn full_jitter_ms(ceiling_ms: u32, random: u64) -> u32 {
    let buckets = u128::from(ceiling_ms) + 1;
    let delay_ms = ((u128::from(random) * buckets) >> 64) as u32;
    debug_assert!(delay_ms <= ceiling_ms);
    delay_ms
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
