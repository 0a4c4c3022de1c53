//! The proxy (read) path: ring → routing policy → attempts → retry policy →
//! hedging, under limits no policy can exceed.
//!
//! One request, step by step:
//! 1. The ring gives the key's N replicas in preference order; for a read,
//!    those that still owe a write to the key (the hint ledger's lag index)
//!    are left out unless all do; the routing policy orders the rest (the
//!    native `route-affinity` keeps ring order and skips unhealthy nodes)
//!    and may ask for a hedge; with a read balance factor, replicas over
//!    their bound of in-flight attempts go last. The plan is built in
//!    [`crate::dataplane::plan`].
//! 2. Attempt the first node. A response that is not 5xx or 429 is final
//!    and streamed back. For GET/HEAD with a hedge delay, if the first
//!    attempt has not answered after the delay, a second attempt goes to the
//!    next node; the first final answer wins and the loser is cancelled
//!    (its future dropped, closing its connection).
//! 3. On a failure the host first checks its own limits: attempts left
//!    (`max_attempts`, host cap 10), time left before the total deadline,
//!    the retry budget, and idempotency. Only if all allow a retry is the
//!    retry policy asked; its delay is clamped to the deadline and its
//!    target resolved against the plan (`same` is turned into `next` for a
//!    non-idempotent request, which may never hit the same replica twice).
//! 4. When retries end, the client gets the last replica response if there
//!    was one (e.g. the replica's own 503), else 502 (504 if the last
//!    failure was a timeout) with the reason.
//! 5. A read's final answer is checked against the newest version this
//!    levee acknowledged for the key ([`crate::replication::recent`]): an
//!    older `x-levee-version`, or a 404 without one for a key that holds a
//!    value, is stale. Then the other replicas of the plan are asked in
//!    turn, then those the plan left out (ejected or lagging), each at most
//!    once, and the client gets the first answer that is not stale (else
//!    the newest seen), and a background repair of the key is requested. Versions seen on answers advance the write clock.
//!
//! Every attempt updates the node's passive health; an ejected node is
//! skipped when choosing where to send an attempt unless nothing else is
//! left. Every response carries `x-levee-attempts` (attempts started,
//! hedges included) and `x-request-id`.

use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use levee_policy::{AttemptResult, ErrorKind, RequestFacts, Target};
use levee_version::{VERSION_HEADER, Version};

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::config::ATTEMPTS_MAX;
use crate::dataplane::attempt::{self, Attempted, Failed, RetryGate};
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::{Inbound, X_REQUEST_ID};
use crate::dataplane::plan::{Plan, bound_loads, native_plan, plugin_plan, request_facts};
use crate::replication::WritePlane;
use crate::replication::recent::{Freshness, Known};
use crate::upstream::{self, AttemptError, RESPONSE_BODY_BYTES_MAX, UpstreamBody, UpstreamClient};

/// The response header counting attempts.
pub static X_LEVEE_ATTEMPTS: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-levee-attempts");

/// One finished attempt (the shared attempt path's record of it).
pub(super) type Attempt = Attempted<Result<hyper::Response<Incoming>, AttemptError>>;

impl Attempted<Result<hyper::Response<Incoming>, AttemptError>> {
    /// Final: an HTTP answer that is neither 5xx nor 429.
    fn is_final(&self) -> bool {
        match &self.result {
            Ok(response) => !is_retryable_status(response.status()),
            Err(_) => false,
        }
    }

    /// The status of the answer and the version it carries (a malformed
    /// version counts as none), for a final answer; `None` otherwise.
    pub(super) fn answer(&self) -> Option<(u16, Option<Version>)> {
        let response = self.result.as_ref().ok().filter(|_| self.is_final())?;
        let version = response
            .headers()
            .get(VERSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| Version::parse(text).ok());
        Some((response.status().as_u16(), version))
    }

    fn wit_result(&self) -> AttemptResult {
        match &self.result {
            Ok(response) => AttemptResult::Status(response.status().as_u16()),
            Err(error) => AttemptResult::Error(error.kind),
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// What one round (an attempt plus maybe its hedge) produced.
enum Round {
    Final(Attempt),
    /// Every attempt of the round failed; this is the last one to finish.
    Failed(Attempt),
}

/// Forwards `inbound` to the service's replicas with retries and hedging;
/// `plane` tells which replicas lag and which versions are known.
pub async fn forward(
    client: &UpstreamClient,
    plane: &WritePlane,
    inbound: Inbound,
) -> Result<Response, AppError> {
    let service = inbound.service().clone();
    let now_ms = clock::now_ms();
    service.budget.record_request(now_ms);
    // What the policies learn about the request: scalars, plus the
    // inbound request itself as a zero-copy `RequestView`.
    let facts = request_facts(&inbound);
    let plan = read_plan(&service, &inbound, facts, now_ms, plane);
    let run = Run {
        client,
        plane,
        service: &service,
        inbound: &inbound,
        facts,
        plan,
        attempts: AtomicU32::new(0),
        deadline_ms: inbound.started_ms + service.spec.timeouts.total_ms,
        max_attempts: service.spec.max_attempts.min(ATTEMPTS_MAX),
        policy_versions: Default::default(),
    };
    let last = run.execute().await;
    let last = run.freshest(last).await;
    run.respond(last)
}

/// The plan of `inbound`: by the bound routing plugin, else natively;
/// then, for a read, replicas over the read balance factor's bound moved
/// last ([`bound_loads`]).
pub(super) fn read_plan(
    service: &Service,
    inbound: &Inbound,
    facts: RequestFacts,
    now_ms: u64,
    plane: &WritePlane,
) -> Plan {
    let mut plan = if service.policies.routing.plugin().is_some() {
        plugin_plan(service, inbound, facts, now_ms, &plane.ledger)
    } else {
        native_plan(service, inbound, now_ms, &plane.ledger)
    };
    bound_loads(service, inbound, &mut plan);
    plan
}

/// How an answer ranks for freshness: by its version, a versioned answer
/// above any without; among those without, a value above a 404.
pub(super) fn freshness_rank(status: u16, version: Option<Version>) -> (Option<Version>, bool) {
    (version, status != 404)
}

/// The state of one request's attempts.
struct Run<'a> {
    client: &'a UpstreamClient,
    plane: &'a WritePlane,
    service: &'a Service,
    inbound: &'a Inbound,
    /// The request's facts for the policies (see [`forward`]).
    facts: RequestFacts,
    plan: Plan,
    /// Attempts started (interior mutability because in-flight attempt
    /// futures borrow the run while a hedge is being counted).
    attempts: AtomicU32,
    deadline_ms: u64,
    max_attempts: u32,
    /// Who made the retry decisions (`x-levee-policy-version`).
    policy_versions: crate::policy::header::PolicyVersions,
}

impl Run<'_> {
    /// Attempts until a final answer or until a limit or the policy stops.
    async fn execute(&self) -> Attempt {
        let mut position = 0usize;
        let mut node = self.available_from(position);
        // Bounded: each iteration starts at least one attempt, and attempts
        // are capped by max_attempts (<= ATTEMPTS_MAX).
        loop {
            let failed = match self.round(node, position).await {
                Round::Final(attempt) => return attempt,
                Round::Failed(attempt) => attempt,
            };
            let Some((delay_ms, target)) = self.retry_decision(&failed) else {
                return failed;
            };
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            position = self.resolve_target(target, failed.node, position);
            node = self.available_from(position);
            position = self.plan.position_of(node).unwrap_or(position);
            drop(failed);
        }
    }

    /// For a read: `first` if it is not stale against the recent versions,
    /// else the first answer of the plan's other replicas (each asked once,
    /// in plan order after `first`'s node) that is not, else the newest
    /// answer seen; a stale answer requests a repair of the key. Any other
    /// request, and a read without a final answer, keeps `first`.
    async fn freshest(&self, first: Attempt) -> Attempt {
        if !self.inbound.is_read() {
            return first;
        }
        let Some((status, version)) = first.answer() else {
            return first;
        };
        self.observe(version);
        let key = self.inbound.routing_key();
        let Some(known) = self.plane.recent.known(self.service.name(), key) else {
            return first;
        };
        if known.judge(status, version) == Freshness::Fresh {
            return first;
        }
        self.request_repair();
        self.ask_the_others(first, known).await
    }

    /// After a stale `first`: the rest of the plan, then the key's
    /// replicas the plan left out (ejected, or owing a write: one of them
    /// may be the only other holder of the newest version), each node
    /// once, until an answer is not stale or the deadline passes.
    async fn ask_the_others(&self, first: Attempt, known: Known) -> Attempt {
        let first_node = first.node;
        let start = self.plan.position_of(first_node).unwrap_or(0);
        let in_plan = (1..self.plan.len).map(|step| self.plan.get((start + step) % self.plan.len));
        let preference = self
            .service
            .preference(self.inbound.routing_key().as_bytes());
        let left_out = preference
            .iter()
            .filter(|&node| node != first_node && self.plan.position_of(node).is_none());
        let mut best = first;
        // Bounded by the key's replicas (at most REPLICAS_MAX), each once.
        for node in in_plan.chain(left_out) {
            if clock::now_ms() >= self.deadline_ms {
                break;
            }
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let attempt = self.attempt(node).await;
            let Some((status, version)) = attempt.answer() else {
                continue;
            };
            self.observe(version);
            if known.judge(status, version) == Freshness::Fresh {
                return attempt;
            }
            let newer = best.answer().is_none_or(|(best_status, best_version)| {
                freshness_rank(status, version) > freshness_rank(best_status, best_version)
            });
            if newer {
                best = attempt;
            }
        }
        best
    }

    fn observe(&self, version: Option<Version>) {
        if let Some(version) = version {
            crate::replication::clock::observe(&self.plane.hlc, version);
        }
    }

    fn request_repair(&self) {
        self.plane.repairs.request(
            self.service.name(),
            self.inbound.routing_key(),
            self.inbound.path_and_query.path(),
        );
    }

    /// The first node at or after `position` (wrapping) that health lets
    /// through; the one at `position` when none does.
    fn available_from(&self, position: usize) -> usize {
        let now_ms = clock::now_ms();
        for step in 0..self.plan.len {
            let node = self.plan.get((position + step) % self.plan.len);
            if self.service.nodes[node].health.try_acquire(now_ms) {
                return node;
            }
        }
        self.plan.get(position % self.plan.len)
    }

    /// One attempt on `node`, hedged to the next node for reads when the
    /// plan asks for it and limits allow.
    async fn round(&self, node: usize, position: usize) -> Round {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let hedge = self.hedge_target(node, position);
        let Some((hedge_node, delay)) = hedge else {
            let attempt = self.attempt(node).await;
            return if attempt.is_final() {
                Round::Final(attempt)
            } else {
                Round::Failed(attempt)
            };
        };
        let mut first = pin!(self.attempt(node));
        tokio::select! {
            attempt = &mut first => {
                return if attempt.is_final() { Round::Final(attempt) } else { Round::Failed(attempt) };
            }
            () = tokio::time::sleep(delay) => {}
        }
        if !attempt::spend_budget(self.service, clock::now_ms()) {
            let attempt = first.await;
            return if attempt.is_final() {
                Round::Final(attempt)
            } else {
                Round::Failed(attempt)
            };
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        crate::base::metrics::hedge_sent(self.service.name());
        let mut second = pin!(self.attempt(hedge_node));
        tokio::select! {
            attempt = &mut first => {
                if attempt.is_final() { return Round::Final(attempt); }
                let other = second.await;
                if other.is_final() { Round::Final(other) } else { Round::Failed(other) }
            }
            attempt = &mut second => {
                if attempt.is_final() { return Round::Final(attempt); }
                let other = first.await;
                if other.is_final() { Round::Final(other) } else { Round::Failed(other) }
            }
        }
    }

    /// Where and when to hedge, if at all: reads only, a delay from the plan
    /// or the service, another node to go to, an attempt left, and time to
    /// wait for the hedge before the deadline.
    fn hedge_target(&self, node: usize, position: usize) -> Option<(usize, Duration)> {
        let delay_ms = self.plan.hedge_delay_ms?;
        if !self.inbound.is_read()
            || self.plan.len < 2
            || self.attempts.load(Ordering::Relaxed) >= self.max_attempts
        {
            return None;
        }
        if clock::now_ms() + delay_ms >= self.deadline_ms {
            return None;
        }
        let from = self.plan.position_of(node).unwrap_or(position);
        let hedge_node = self.plan.get((from + 1) % self.plan.len);
        (hedge_node != node).then_some((hedge_node, Duration::from_millis(delay_ms)))
    }

    /// Sends the request to one node through the shared attempt path
    /// (per-try timeout, health verdict, ejection metrics).
    async fn attempt(&self, node: usize) -> Attempt {
        attempt::attempt(
            self.service,
            node,
            self.deadline_ms,
            |timeout| async move {
                match self.build_request(node) {
                    Ok(request) => self.client.send(request, timeout).await,
                    Err(()) => Err(AttemptError {
                        kind: ErrorKind::Other,
                    }),
                }
            },
            |result| match result {
                Ok(response) => attempt::verdict_of_status(response.status().as_u16()),
                Err(_) => Verdict::Failure,
            },
        )
        .await
    }

    fn build_request(&self, node: usize) -> Result<Request<UpstreamBody>, ()> {
        let target = &self.service.nodes[node];
        self.inbound
            .upstream_request(&target.scheme, &target.authority, &target.host)
            .map_err(|_| ())
    }

    /// The shared retry gate: the host's limits, then the retry policy.
    /// `Some((delay_ms, target))` to retry, `None` to give up.
    fn retry_decision(&self, failed: &Attempt) -> Option<(u64, Target)> {
        let gate = RetryGate {
            service: self.service,
            deadline_ms: self.deadline_ms,
            max_attempts: self.max_attempts,
            facts: self.facts,
        };
        let failure = Failed {
            node: failed.node,
            result: failed.wit_result(),
            elapsed_ms: failed.elapsed_ms,
            retry_after_ms: failed
                .result
                .as_ref()
                .ok()
                .and_then(|r| upstream::retry_after_ms(r.headers())),
        };
        gate.decide(
            &failure,
            self.attempts.load(Ordering::Relaxed),
            self.plan.indexes(),
            self.inbound,
            Some(&self.policy_versions),
        )
    }

    /// The plan position the next attempt should start from.
    fn resolve_target(&self, target: Target, failed_node: usize, position: usize) -> usize {
        let current = self.plan.position_of(failed_node).unwrap_or(position);
        let next = (current + 1) % self.plan.len;
        match target {
            Target::Same => current,
            Target::Next => next,
            Target::Node(index) => self.plan.position_of(index as usize).unwrap_or(next),
        }
    }

    /// The client's answer from the last attempt.
    fn respond(&self, last: Attempt) -> Result<Response, AppError> {
        let attempts = attempts_header(self.attempts.load(Ordering::Relaxed));
        match last.result {
            Ok(response) => {
                let body_bytes_max = RESPONSE_BODY_BYTES_MAX;
                let mut response = upstream::relay_response(response, body_bytes_max)
                    .map_err(AppError::BadGateway)?;
                let headers = response.headers_mut();
                headers.insert(X_LEVEE_ATTEMPTS.clone(), attempts);
                headers.insert(X_REQUEST_ID.clone(), self.inbound.request_id.clone());
                self.policy_versions.write(headers);
                Ok(response.map(Body::new))
            }
            Err(error) => {
                let node = &self.service.nodes[last.node].spec.id;
                let reason = format!(
                    "no replica of {} answered after {} attempt(s); last: {} on node {node}",
                    self.service.name(),
                    self.attempts.load(Ordering::Relaxed),
                    describe(error.kind)
                );
                let error = if error.kind == ErrorKind::Timeout {
                    AppError::GatewayTimeout(reason)
                } else {
                    AppError::BadGateway(reason)
                };
                let mut response = axum::response::IntoResponse::into_response(error);
                response
                    .headers_mut()
                    .insert(X_LEVEE_ATTEMPTS.clone(), attempts);
                response
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), self.inbound.request_id.clone());
                self.policy_versions.write(response.headers_mut());
                Ok(response)
            }
        }
    }
}

/// `x-levee-attempts` values without an allocation for the common counts.
pub(super) fn attempts_header(attempts: u32) -> HeaderValue {
    const STATIC: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    match STATIC.get(attempts as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(attempts),
    }
}

fn describe(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connection failed",
        ErrorKind::Timeout => "timed out",
        ErrorKind::Reset => "connection reset",
        ErrorKind::Protocol => "malformed HTTP response",
        ErrorKind::Other => "request failed",
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
