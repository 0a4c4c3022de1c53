//! The proxy (read) path: ring → routing policy → attempts → retry policy →
//! hedging, under limits no policy can exceed.
//!
//! One request, step by step:
//! 1. The ring gives the key's N replicas in preference order; for a read,
//!    those that still owe a write to the key (the hint ledger's lag index)
//!    are left out unless all do; the routing policy orders the rest (the
//!    native `route-affinity` keeps ring order and skips unhealthy nodes)
//!    and may ask for a hedge. The plan is built in
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
//!    turn (each at most once) and the client gets the first answer that is
//!    not stale (else the newest seen), and a background repair of the key
//!    is requested. Versions seen on answers advance the write clock.
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
use crate::dataplane::plan::{Plan, native_plan, plugin_plan, request_facts};
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

/// The plan of `inbound`: by the bound routing plugin, else natively.
pub(super) fn read_plan(
    service: &Service,
    inbound: &Inbound,
    facts: RequestFacts,
    now_ms: u64,
    plane: &WritePlane,
) -> Plan {
    if service.policies.routing.plugin().is_some() {
        plugin_plan(service, inbound, facts, now_ms, &plane.ledger)
    } else {
        native_plan(service, inbound, now_ms, &plane.ledger)
    }
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

    /// After a stale `first`: the rest of the plan, each node once.
    async fn ask_the_others(&self, first: Attempt, known: Known) -> Attempt {
        let start = self.plan.position_of(first.node).unwrap_or(0);
        let mut best = first;
        // Bounded by the plan's length (at most REPLICAS_MAX).
        for step in 1..self.plan.len {
            if clock::now_ms() >= self.deadline_ms {
                break;
            }
            let node = self.plan.get((start + step) % self.plan.len);
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
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;
    use crate::config::ServiceSpec;
    use levee_kv_replica::{Faults, Replica};

    /// A real kv replica served in-process on a loopback port.
    struct LiveReplica {
        address: SocketAddr,
        replica: Arc<Replica>,
        _dir: tempfile::TempDir,
    }

    async fn live_replica() -> LiveReplica {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = levee_kv_replica::router(Arc::clone(&replica));
        tokio::spawn(async move { axum::serve(listener, app).await });
        LiveReplica {
            address,
            replica,
            _dir: dir,
        }
    }

    fn service(replicas: &[&LiveReplica], extra: serde_json::Value) -> Arc<Service> {
        let mut spec = json!({
            "name": "kv",
            "nodes": replicas.iter().enumerate()
                .map(|(i, r)| json!({"id": format!("r{i}"), "url": format!("http://{}", r.address)}))
                .collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        });
        for (field, value) in extra.as_object().cloned().unwrap_or_default() {
            spec[field] = value;
        }
        let spec: ServiceSpec = serde_json::from_value(spec).unwrap();
        spec.validate().unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        Arc::new(Service::build(spec, &runtime).unwrap())
    }

    /// A write plane over a fresh log in `dir`, for `service`.
    fn plane(dir: &std::path::Path, service: &Service) -> WritePlane {
        let config = crate::config::Config::from_json(
            &json!({"data_dir": dir, "services": [service.spec]}).to_string(),
        )
        .unwrap();
        let options = levee_log::LogOptions::default();
        let (log, _) = levee_log::Log::open(&dir.join("log"), options).unwrap();
        WritePlane::open(log, &config, Default::default()).unwrap()
    }

    /// [`send_with`] with a write plane of its own (nothing lags, no
    /// version is known).
    async fn send(
        service: &Arc<Service>,
        method: &str,
        key: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, u32, String) {
        let dir = tempfile::tempdir().unwrap();
        let plane = plane(dir.path(), service);
        send_with(&plane, service, method, key, headers).await
    }

    async fn send_with(
        plane: &WritePlane,
        service: &Arc<Service>,
        method: &str,
        key: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, u32, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/kv/kv/{key}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from("payload")).unwrap();
        let inbound = Inbound::read(service, request, &format!("/kv/{key}"), clock::now_ms())
            .await
            .unwrap();
        let response = forward(&UpstreamClient::new(), plane, inbound)
            .await
            .unwrap();
        let status = response.status();
        let attempts = response.headers()[&X_LEVEE_ATTEMPTS]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            attempts,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn fail_once(status: u16) -> Faults {
        Faults {
            fail_status: Some(status),
            fail_count: Some(1),
            ..Faults::default()
        }
    }

    /// The replicas of `key` in preference order.
    fn order(service: &Service, key: &str) -> Vec<usize> {
        service.preference(key.as_bytes()).iter().collect()
    }

    #[tokio::test]
    async fn a_post_without_idempotency_key_is_not_retried() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(&live, json!({}));
        let order = order(&service, "k");
        live[order[0]].replica.set_faults(fail_once(503));
        let (status, attempts, _) = send(&service, "POST", "k", &[]).await;
        assert_eq!((status, attempts), (StatusCode::SERVICE_UNAVAILABLE, 1));
        assert_eq!(
            live[order[1]].replica.kv_requests(),
            0,
            "no second replica saw it"
        );
    }

    #[tokio::test]
    async fn a_post_with_idempotency_key_is_retried_on_the_next_replica() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(&live, json!({}));
        let order = order(&service, "k");
        live[order[0]].replica.set_faults(fail_once(503));
        let (status, attempts, body) =
            send(&service, "POST", "k", &[("idempotency-key", "abc")]).await;
        assert_eq!(
            (status, attempts, body.as_str()),
            (StatusCode::OK, 2, "ok\n")
        );
        assert_eq!(live[order[0]].replica.kv_requests(), 1);
        assert_eq!(live[order[1]].replica.kv_requests(), 1);
    }

    #[tokio::test]
    async fn attempts_never_exceed_max_attempts() {
        let (a, b, c) = (
            live_replica().await,
            live_replica().await,
            live_replica().await,
        );
        let live = [&a, &b, &c];
        let service = service(&live, json!({"max_attempts": 2}));
        for replica in live {
            replica.replica.set_faults(Faults {
                fail_status: Some(503),
                ..Faults::default()
            });
        }
        let (status, attempts, _) = send(&service, "GET", "k", &[]).await;
        assert_eq!((status, attempts), (StatusCode::SERVICE_UNAVAILABLE, 2));
        let total: u64 = live.iter().map(|r| r.replica.kv_requests()).sum();
        assert_eq!(total, 2);
    }

    #[tokio::test]
    async fn a_dead_cluster_answers_502_with_the_reason() {
        // Ports that refuse connections: bound, then released.
        let dead: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let spec: ServiceSpec = serde_json::from_value(json!({
            "name": "kv",
            "nodes": dead.iter().enumerate().map(|(i, port)| json!({"id": format!("d{i}"), "url": format!("http://127.0.0.1:{port}")})).collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        }))
        .unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        let service = Arc::new(Service::build(spec, &runtime).unwrap());
        let (status, attempts, body) = send(&service, "GET", "k", &[]).await;
        // max_attempts (3) wraps around the two candidates.
        assert_eq!((status, attempts), (StatusCode::BAD_GATEWAY, 3));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "bad_gateway");
        assert!(
            body["reason"].as_str().unwrap().starts_with(
                "no replica of kv answered after 3 attempt(s); last: connection failed"
            )
        );
    }

    #[tokio::test]
    async fn a_per_try_timeout_moves_on_to_the_next_replica() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(
            &live,
            json!({"timeouts": {"per_try_ms": 100, "total_ms": 60000}}),
        );
        let order = order(&service, "k");
        live[order[0]].replica.set_faults(Faults {
            delay_ms: 30_000,
            ..Faults::default()
        });
        live[order[1]].replica.set_faults(Faults::default());
        let (status, attempts, _) = send(&service, "GET", "k", &[]).await;
        assert_eq!(
            (status, attempts),
            (StatusCode::NOT_FOUND, 2),
            "the timed-out primary was abandoned"
        );
    }

    fn node_ref(service: &Service, node: usize) -> crate::replication::hints::NodeRef {
        crate::replication::hints::NodeRef::new("kv", &service.nodes[node].spec.id)
    }

    fn version(physical_ms: u64) -> Version {
        Version {
            physical_ms,
            logical: 0,
            instance: levee_version::InstanceId(9),
        }
    }

    /// Writes `value` with `version` straight into one replica.
    async fn put_versioned(replica: &LiveReplica, key: &str, value: &str, version: Version) {
        let request = Request::put(format!("http://{}/kv/{key}", replica.address))
            .header(VERSION_HEADER, version.to_string())
            .body(http_body_util::Full::new(bytes::Bytes::from(
                value.to_owned(),
            )))
            .unwrap();
        let response = UpstreamClient::new()
            .send(request, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_replica_that_owes_the_key_is_skipped_by_reads() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(&live, json!({"replicas": 2, "write_quorum": 1}));
        let dir = tempfile::tempdir().unwrap();
        let plane = plane(dir.path(), &service);
        let order = order(&service, "k");
        let targets = [node_ref(&service, order[0]), node_ref(&service, order[1])];
        plane.ledger.begin_append().register_write(1, "k", &targets);
        plane.ledger.acked(&targets[1], 1);
        // The first replica in the preference list still owes the write.
        let (status, attempts, _) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
        assert_eq!(live[order[0]].replica.kv_requests(), 0);
        assert_eq!(live[order[1]].replica.kv_requests(), 1);
        // Another key is read as usual.
        let other = order_of_other_key(&service, order[0]);
        send_with(&plane, &service, "GET", &other, &[]).await;
        assert_eq!(live[order[0]].replica.kv_requests(), 1);
        // Once it has the write, it is read again.
        plane.ledger.acked(&targets[0], 1);
        send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!(live[order[0]].replica.kv_requests(), 2);
        assert_eq!(plane.ledger.reads_all_lagging(), 0);
    }

    /// A key whose first replica is `first`.
    fn order_of_other_key(service: &Service, first: usize) -> String {
        (0..1000)
            .map(|i| format!("other{i}"))
            .find(|key| order(service, key)[0] == first)
            .expect("some key starts on each node")
    }

    #[tokio::test]
    async fn when_every_replica_owes_the_key_the_read_goes_as_usual_and_is_counted() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(&live, json!({"replicas": 2, "write_quorum": 1}));
        let dir = tempfile::tempdir().unwrap();
        let plane = plane(dir.path(), &service);
        let order = order(&service, "k");
        let targets = [node_ref(&service, order[0]), node_ref(&service, order[1])];
        plane.ledger.begin_append().register_write(1, "k", &targets);
        let (status, attempts, _) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
        assert_eq!(live[order[0]].replica.kv_requests(), 1);
        assert_eq!(plane.ledger.reads_all_lagging(), 1);
    }

    #[tokio::test]
    async fn a_stale_answer_is_replaced_by_the_next_replica_and_repaired() {
        let (a, b, c) = (
            live_replica().await,
            live_replica().await,
            live_replica().await,
        );
        let live = [&a, &b, &c];
        let service = service(&live, json!({}));
        let dir = tempfile::tempdir().unwrap();
        let plane = plane(dir.path(), &service);
        let order = order(&service, "k");
        put_versioned(live[order[0]], "k", "old", version(1)).await;
        put_versioned(live[order[1]], "k", "older", version(0)).await;
        put_versioned(live[order[2]], "k", "new", version(2)).await;
        // Unknown key: the first answer stands, whatever its version.
        let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!(
            (status, attempts, body.as_str()),
            (StatusCode::OK, 1, "old")
        );
        assert_eq!(plane.repairs.pending(), 0);
        // Known at version 2: both older answers are passed over.
        plane.recent.note("kv", "k", version(2), false);
        let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!(
            (status, attempts, body.as_str()),
            (StatusCode::OK, 3, "new")
        );
        assert_eq!(plane.repairs.pending(), 1, "a repair of k was requested");
        // Known newer than any replica holds: the newest answer seen.
        plane.recent.note("kv", "k", version(3), false);
        let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!(
            (status, attempts, body.as_str()),
            (StatusCode::OK, 3, "new")
        );
    }

    #[tokio::test]
    async fn a_404_without_a_version_is_stale_for_a_key_known_to_hold_a_value() {
        let (a, b) = (live_replica().await, live_replica().await);
        let live = [&a, &b];
        let service = service(&live, json!({}));
        let dir = tempfile::tempdir().unwrap();
        let plane = plane(dir.path(), &service);
        let order = order(&service, "k");
        put_versioned(live[order[1]], "k", "value", version(5)).await;
        plane.recent.note("kv", "k", version(5), false);
        let (status, attempts, body) = send_with(&plane, &service, "GET", "k", &[]).await;
        assert_eq!(
            (status, attempts, body.as_str()),
            (StatusCode::OK, 2, "value")
        );
        // A key known as deleted: a 404 without a version is the answer.
        plane.recent.note("kv", "gone", version(6), true);
        let (status, attempts, _) = send_with(&plane, &service, "GET", "gone", &[]).await;
        assert_eq!((status, attempts), (StatusCode::NOT_FOUND, 1));
    }
}
