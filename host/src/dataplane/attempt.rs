//! One attempt path and one retry gate, shared by reads and writes.
//!
//! The read proxy sends a request to one replica at a time; the write
//! fan-out sends a record to each of the key's replicas. Both go through
//! [`attempt`] for every send and through [`RetryGate::decide`] after every
//! failure, so the two paths cannot drift: the same per-try timeout, the
//! same health verdicts and ejection metrics, the same retry budget, the
//! same limits before the retry policy is asked, the same metrics after.
//!
//! Hooks report, the host decides: the retry policy (plugin or native)
//! only ever sees a failure the host's own limits would already retry, and
//! its answer is clamped to them.

use std::future::Future;
use std::time::Duration;

use levee_policy::{
    AttemptOutcome, AttemptResult, ErrorKind, NodeIndex, RequestFacts, RequestView, RetryContext,
    RetryDecision, Target,
};

use crate::base::{clock, metrics};
use crate::cluster::health::Verdict;
use crate::cluster::service::{Service, policy_index};
use crate::policy::header::PolicyVersions;

/// A finished attempt on node `node` (an index into `Service::nodes`).
#[derive(Debug)]
pub struct Attempted<T> {
    pub node: usize,
    pub result: T,
    pub elapsed_ms: u64,
}

/// The health verdict of an upstream answer: a 5xx says the replica is in
/// trouble; any other status says it is alive (a 4xx or 429 is the
/// request's or the load's problem, not the node's). Transport failures are
/// failures.
pub fn verdict_of_status(status: u16) -> Verdict {
    if (500..600).contains(&status) {
        Verdict::Failure
    } else {
        Verdict::Success
    }
}

/// The per-try timeout of an attempt started at `now_ms`: the service's
/// `per_try_ms`, cut to what is left before `deadline_ms` (0 when nothing
/// is left).
pub fn per_try_timeout_ms(service: &Service, deadline_ms: u64, now_ms: u64) -> u64 {
    let remaining_ms = deadline_ms.saturating_sub(now_ms);
    service.spec.timeouts.per_try_ms.min(remaining_ms)
}

/// Sends one attempt to `node` with `send(per_try_timeout)`: counts it,
/// bounds it by the per-try timeout and the deadline (at least 1 ms), and
/// records `verdict(&result)` in the node's health.
pub async fn attempt<T, Fut>(
    service: &Service,
    node: usize,
    deadline_ms: u64,
    send: impl FnOnce(Duration) -> Fut,
    verdict: impl FnOnce(&T) -> Verdict,
) -> Attempted<T>
where
    Fut: Future<Output = T>,
{
    let started_ms = clock::now_ms();
    // Counted while the attempt runs, whether it finishes or is dropped
    // (a lost hedge): the node's load for the read balance factor.
    let _in_flight = service.nodes[node].health.start_attempt();
    metrics::attempt_sent(service.name(), &service.nodes[node].spec.id);
    let timeout_ms = per_try_timeout_ms(service, deadline_ms, started_ms).max(1);
    let result = send(Duration::from_millis(timeout_ms)).await;
    let finished_ms = clock::now_ms();
    let elapsed_ms = finished_ms.saturating_sub(started_ms);
    record(service, node, verdict(&result), elapsed_ms, finished_ms);
    Attempted {
        node,
        result,
        elapsed_ms,
    }
}

/// Records an attempt's verdict in the node's health, and an ejection it
/// caused in the metrics (`levee_node_ejections_total`).
pub fn record(service: &Service, node: usize, verdict: Verdict, elapsed_ms: u64, now_ms: u64) {
    let health = &service.nodes[node].health;
    let ejections_before = health.ejections_total();
    health.record(verdict, elapsed_ms, now_ms);
    if health.ejections_total() > ejections_before {
        metrics::node_ejected(service.name(), &service.nodes[node].spec.id);
    }
}

/// Withdraws one extra attempt (a retry or a hedge) from the service's
/// retry budget; counts a refusal in `levee_retry_budget_exhausted_total`.
pub fn spend_budget(service: &Service, now_ms: u64) -> bool {
    let spent = service.budget.try_withdraw(now_ms);
    if !spent {
        metrics::budget_exhausted(service.name());
    }
    spent
}

/// A failed attempt as the retry gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub node: usize,
    pub result: AttemptResult,
    pub elapsed_ms: u64,
    /// The replica's `Retry-After`, in milliseconds, if it sent one.
    pub retry_after_ms: Option<u32>,
}

impl Failed {
    /// The only failure known not to have reached the replica.
    fn never_connected(&self) -> bool {
        self.result == AttemptResult::Error(ErrorKind::Connect)
    }
}

/// The host's limits on one request's retries.
#[derive(Debug)]
pub struct RetryGate<'a> {
    pub service: &'a Service,
    pub deadline_ms: u64,
    /// `max_attempts`, already capped by `config::ATTEMPTS_MAX`.
    pub max_attempts: u32,
    /// What the policy learns about the request; `facts.idempotent` is
    /// also the host's own idempotency rule.
    pub facts: RequestFacts,
}

impl RetryGate<'_> {
    /// Decides whether to retry after `failed` (the `attempts`-th attempt
    /// started): the host's limits first (attempts, deadline, idempotency,
    /// retry budget), then the retry policy, whose delay must fit the
    /// deadline; the budget is spent last. `Some((delay_ms, target))` to
    /// retry. `candidates` are the nodes a retry may go to, in plan order
    /// (indexes into the service's node table); `request` is lent to the
    /// policy for this call (a plugin reads only what it asks for).
    pub fn decide(
        &self,
        failed: &Failed,
        attempts: u32,
        candidates: &[NodeIndex],
        request: &dyn RequestView,
        versions: Option<&PolicyVersions>,
    ) -> Option<(u64, Target)> {
        let now_ms = clock::now_ms();
        let deadline_remaining_ms = self.deadline_ms.saturating_sub(now_ms);
        if attempts >= self.max_attempts || deadline_remaining_ms == 0 {
            return None;
        }
        // Never send a non-idempotent request twice to a replica it may
        // have reached.
        if !self.facts.idempotent && !failed.never_connected() {
            return None;
        }
        let budget_remaining = self.service.budget.remaining(now_ms);
        if budget_remaining == 0 {
            metrics::budget_exhausted(self.service.name());
            return None;
        }
        let outcome = AttemptOutcome {
            node: policy_index(failed.node),
            attempt: attempts,
            result: failed.result,
            elapsed_ms: u32::try_from(failed.elapsed_ms).unwrap_or(u32::MAX),
            retry_after_ms: failed.retry_after_ms,
        };
        let context = RetryContext {
            budget_remaining,
            deadline_remaining_ms: u32::try_from(deadline_remaining_ms).unwrap_or(u32::MAX),
            max_attempts: self.max_attempts,
            candidates,
        };
        let decided = self.service.policies.decide_retry(
            request,
            self.facts,
            &self.service.node_table,
            &outcome,
            &context,
        );
        if let Some(versions) = versions {
            versions.note(&decided.source);
        }
        let (delay_ms, target) = match decided.value {
            RetryDecision::Retry { delay_ms, target } => (delay_ms, target),
            RetryDecision::GiveUp(reason) => {
                tracing::debug!(service = self.service.name(), source = decided.source.label(), %reason, "retry policy gave up");
                return None;
            }
        };
        self.admit(u64::from(delay_ms), target, deadline_remaining_ms, now_ms)
    }

    /// The policy said retry: the delay and at least a millisecond of
    /// attempt must fit, and the budget must pay for it.
    fn admit(
        &self,
        delay_ms: u64,
        target: Target,
        deadline_remaining_ms: u64,
        now_ms: u64,
    ) -> Option<(u64, Target)> {
        if delay_ms >= deadline_remaining_ms {
            return None;
        }
        if !spend_budget(self.service, now_ms) {
            return None;
        }
        metrics::retry_sent(self.service.name());
        let target = if !self.facts.idempotent && target == Target::Same {
            Target::Next
        } else {
            target
        };
        Some((delay_ms, target))
    }
}
