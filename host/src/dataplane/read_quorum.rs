//! Read quorum: a GET or HEAD to a service with `read_quorum: R` (R > 1)
//! asks R replicas of the key at once and answers with the newest version
//! among their answers, so a read sees every write acknowledged by W
//! replicas when R + W > N, whatever the lag index knows.
//!
//! Which replicas: the read's plan (replicas that still owe the key left
//! out, in the routing policy's order, see [`crate::dataplane::plan`]),
//! then the replicas left out, in ring order, asked only if the others
//! cannot make R. R attempts start together through the shared attempt
//! path (per-try timeout, deadline, health); each one that fails (no
//! answer, 5xx, 429) is replaced by the next replica, if the retry budget
//! allows, so a read makes at most N attempts.
//!
//! Which answer: the newest `x-levee-version` wins, whatever its status
//! (a tombstone's 404 with a newer version beats an older value); an
//! answer without a version ranks below every versioned one, and a 404
//! without a version lowest of all (see [`proxy::freshness_rank`]). Ties go
//! to the replica first in the plan. When the answers disagree, a
//! background repair of the key is requested (the laggards get the newest
//! version). Versions seen advance the write clock.
//!
//! The answer carries `x-levee-read-quorum: k/R` (k: replicas that
//! answered) besides `x-levee-attempts`. Fewer than R answers (every
//! replica tried, the budget or the deadline spent): 503 with each
//! replica's outcome in the reason.
//!
//! # Keys awaiting repair
//!
//! A read of a key in the durable repair set (a hint to some replica was
//! dropped: [`crate::replication::repair`]) is read here too, at
//! R = N − W + 1 even when the service reads one replica: the lag index
//! forgot which replica lacks the write, and N − W + 1 replicas always
//! include one of the W that acknowledged it. Such a read answers with the
//! newest it got even when fewer than R answer (it is never worse than the
//! one-replica read it replaces); the header shows how many did.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::header::{HeaderName, HeaderValue};
use levee_policy::ErrorKind;
use levee_version::Version;
use tokio::task::JoinSet;

use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::dataplane::attempt;
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::{Inbound, X_REQUEST_ID};
use crate::dataplane::plan::request_facts;
use crate::dataplane::proxy::{self, Attempt, X_LEVEE_ATTEMPTS, attempts_header, freshness_rank};
use crate::replication::WritePlane;
use crate::upstream::{self, AttemptError, RESPONSE_BODY_BYTES_MAX, UpstreamClient};

/// The response header saying how many of the R replicas asked answered.
pub static X_LEVEE_READ_QUORUM: HeaderName = HeaderName::from_static("x-levee-read-quorum");

/// How many replicas a read asks at once, and what happens when fewer
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadQuorum {
    /// R: replicas whose answers are compared.
    pub replicas: usize,
    /// `true` (the service's own `read_quorum`): fewer than R answers is a
    /// 503. `false` (raised for a key awaiting repair): the newest of the
    /// answers there are, which is never worse than a one-replica read.
    pub strict: bool,
}

/// The quorum a read of `inbound` needs, if more than one replica: the
/// service's `read_quorum`, raised to N − W + 1 for a key awaiting repair
/// (a dropped hint: some replica may lack an acknowledged write that the
/// lag index no longer tracks, and any N − W + 1 replicas include one of
/// the W that acknowledged it). `None` for writes and one-replica reads.
pub fn quorum_for(inbound: &Inbound, plane: &WritePlane) -> Option<ReadQuorum> {
    if !inbound.is_read() {
        return None;
    }
    let service = inbound.service();
    let configured = service.spec.read_quorum as usize;
    let overlap = (service.replicas() + 1).saturating_sub(service.spec.write_quorum() as usize);
    let raised =
        overlap > configured && plane.repairs.awaits(service.name(), inbound.routing_key());
    match (raised, configured) {
        (true, _) => Some(ReadQuorum {
            replicas: overlap,
            strict: false,
        }),
        (false, 2..) => Some(ReadQuorum {
            replicas: configured,
            strict: true,
        }),
        (false, _) => None,
    }
}

/// Answers the read `inbound` from `quorum.replicas` replicas (see the
/// module doc).
pub async fn read(
    client: &UpstreamClient,
    plane: &WritePlane,
    inbound: Inbound,
    quorum: ReadQuorum,
) -> Result<Response, AppError> {
    let service = inbound.service().clone();
    let now_ms = clock::now_ms();
    service.budget.record_request(now_ms);
    let wanted = quorum.replicas;
    let candidates = candidates(&service, &inbound, plane, now_ms);
    let deadline_ms = inbound.started_ms + service.spec.timeouts.total_ms;
    let gathered = gather(client, &service, &inbound, &candidates, wanted, deadline_ms).await;
    let attempts = attempts_header(gathered.attempts);
    let quorum_header = HeaderValue::from_str(&format!("{}/{wanted}", gathered.answers.len()))
        .expect("digits and a slash");
    let reached =
        gathered.answers.len() >= wanted || (!quorum.strict && !gathered.answers.is_empty());
    let mut response = if reached {
        answer(plane, &service, &inbound, gathered.answers)?
    } else {
        not_reached(&service, &gathered, wanted)
    };
    let headers = response.headers_mut();
    headers.insert(X_LEVEE_ATTEMPTS.clone(), attempts);
    headers.insert(X_LEVEE_READ_QUORUM.clone(), quorum_header);
    headers.insert(X_REQUEST_ID.clone(), inbound.request_id.clone());
    Ok(response)
}

/// The replicas to ask, in order: the read's plan, then the key's replicas
/// the plan left out (they owe it a write), in ring order.
fn candidates(service: &Service, inbound: &Inbound, plane: &WritePlane, now_ms: u64) -> Vec<usize> {
    let plan = proxy::read_plan(service, inbound, request_facts(inbound), now_ms, plane);
    let mut nodes: Vec<usize> = plan.indexes().iter().map(|&n| n as usize).collect();
    for node in service.preference(inbound.routing_key().as_bytes()).iter() {
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    nodes
}

/// A replica's final answer (not 5xx or 429).
struct Answered {
    node: usize,
    status: u16,
    version: Option<Version>,
    response: hyper::Response<hyper::body::Incoming>,
}

/// What the replicas said.
struct Gathered {
    /// Final answers, in the order of `candidates`.
    answers: Vec<Answered>,
    /// `(node, what went wrong)` for every replica that did not answer.
    failures: Vec<(usize, String)>,
    attempts: u32,
}

/// Asks `quorum` replicas of `candidates` at once, replacing each that
/// fails with the next, until `quorum` answered or none is left.
async fn gather(
    client: &UpstreamClient,
    service: &Arc<Service>,
    inbound: &Inbound,
    candidates: &[usize],
    quorum: usize,
    deadline_ms: u64,
) -> Gathered {
    let mut running = JoinSet::new();
    let mut gathered = Gathered {
        answers: Vec::with_capacity(quorum),
        failures: Vec::new(),
        attempts: 0,
    };
    let mut next = 0;
    // Bounded: each pass starts at most the attempts missing, each
    // candidate once, and waits for one of them to end.
    loop {
        while running.len() + gathered.answers.len() < quorum && next < candidates.len() {
            let node = candidates[next];
            next += 1;
            let replacing = gathered.attempts as usize >= quorum;
            match start(client, service, inbound, node, deadline_ms, replacing) {
                Ok(attempt) => {
                    running.spawn(attempt);
                    gathered.attempts += 1;
                }
                Err(reason) => gathered.failures.push((node, reason)),
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok(attempt) => gathered.record(attempt),
            Err(error) => tracing::warn!(%error, "a read quorum attempt task failed"),
        }
        if gathered.answers.len() >= quorum {
            break;
        }
    }
    let order = |node: usize| candidates.iter().position(|&n| n == node);
    gathered.answers.sort_by_key(|answer| order(answer.node));
    gathered
}

impl Gathered {
    /// Keeps a final answer, or notes why there was none.
    fn record(&mut self, attempt: Attempt) {
        let answer = attempt.answer();
        match (answer, attempt.result) {
            (Some((status, version)), Ok(response)) => self.answers.push(Answered {
                node: attempt.node,
                status,
                version,
                response,
            }),
            (_, result) => self.failures.push((attempt.node, describe(&result))),
        }
    }
}

/// One attempt on `node` as a task of its own, or why it is not sent: the
/// node is ejected, the deadline has passed, or (for a replacement) the
/// retry budget is empty.
fn start(
    client: &UpstreamClient,
    service: &Arc<Service>,
    inbound: &Inbound,
    node: usize,
    deadline_ms: u64,
    replacing: bool,
) -> Result<impl Future<Output = Attempt> + Send + 'static, String> {
    let now_ms = clock::now_ms();
    if now_ms >= deadline_ms {
        return Err("not asked: the deadline passed".into());
    }
    if replacing && !attempt::spend_budget(service, now_ms) {
        return Err("not asked: the retry budget is empty".into());
    }
    if !service.nodes[node].health.try_acquire(now_ms) {
        return Err("not asked: ejected by outlier detection".into());
    }
    let target = &service.nodes[node];
    let request = inbound
        .upstream_request(&target.scheme, &target.authority, &target.host)
        .map_err(|error| format!("not asked: {error}"))?;
    let (client, service) = (client.clone(), service.clone());
    Ok(async move {
        attempt::attempt(
            &service,
            node,
            deadline_ms,
            |timeout| async move { client.send(request, timeout).await },
            |result: &Result<hyper::Response<hyper::body::Incoming>, AttemptError>| match result {
                Ok(response) => attempt::verdict_of_status(response.status().as_u16()),
                Err(_) => Verdict::Failure,
            },
        )
        .await
    })
}

fn describe(result: &Result<hyper::Response<hyper::body::Incoming>, AttemptError>) -> String {
    match result {
        Ok(response) => format!("answered {}", response.status().as_u16()),
        Err(error) => match error.kind {
            ErrorKind::Connect => "connection failed".into(),
            ErrorKind::Timeout => "timed out".into(),
            ErrorKind::Reset => "connection reset".into(),
            ErrorKind::Protocol => "malformed HTTP response".into(),
            ErrorKind::Other => "request failed".into(),
        },
    }
}

/// The index in `answers` (`(status, version)` each) of the newest, the
/// first of equals; and whether they all agree.
pub(super) fn newest(answers: &[(u16, Option<Version>)]) -> (usize, bool) {
    let mut best = 0;
    for (index, &(status, version)) in answers.iter().enumerate() {
        let (best_status, best_version) = answers[best];
        if freshness_rank(status, version) > freshness_rank(best_status, best_version) {
            best = index;
        }
    }
    let (status, version) = answers[best];
    let agree = answers
        .iter()
        .all(|&(s, v)| freshness_rank(s, v) == freshness_rank(status, version));
    (best, agree)
}

/// The client's answer from the newest of `answers`; a repair of the key
/// if they disagree.
fn answer(
    plane: &WritePlane,
    service: &Service,
    inbound: &Inbound,
    mut answers: Vec<Answered>,
) -> Result<Response, AppError> {
    let seen: Vec<(u16, Option<Version>)> = answers
        .iter()
        .map(|answer| (answer.status, answer.version))
        .collect();
    for version in seen.iter().filter_map(|&(_, version)| version) {
        crate::replication::clock::observe(&plane.hlc, version);
    }
    let (best, agree) = newest(&seen);
    if !agree {
        plane.repairs.request(
            service.name(),
            inbound.routing_key(),
            inbound.path_and_query.path(),
        );
    }
    let winner = answers.swap_remove(best).response;
    let response =
        upstream::relay_response(winner, RESPONSE_BODY_BYTES_MAX).map_err(AppError::BadGateway)?;
    Ok(response.map(Body::new))
}

/// The 503 when fewer than `quorum` replicas answered.
fn not_reached(service: &Service, gathered: &Gathered, quorum: usize) -> Response {
    let outcomes: Vec<String> = gathered
        .failures
        .iter()
        .map(|(node, what)| format!("{}: {what}", service.nodes[*node].spec.id))
        .collect();
    let reason = format!(
        "read quorum not reached: {} of {quorum} replicas of {} answered ({})",
        gathered.answers.len(),
        service.name(),
        if outcomes.is_empty() {
            "no replica to ask".to_owned()
        } else {
            outcomes.join("; ")
        }
    );
    AppError::Unavailable(reason).into_response()
}

#[cfg(test)]
#[path = "read_quorum_tests.rs"]
mod tests;
