//! Counting a write's replica outcomes: when the client can be answered
//! (W acks, or W out of reach), and what it is told, with `x-levee-acks`,
//! `x-levee-lsn` and `x-levee-version` on every answer.
//!
//! The answers (`x-levee-outcome` on the failures), in order:
//! 1. **W acks** → the first acknowledging replica's answer (2xx).
//! 2. W out of reach, **no ack, no rejection, at least one superseded**
//!    (a replica holds a newer version of the key) → 409 `superseded`
//!    with `x-levee-held-version` (the newest held version seen). The write
//!    can never win on any replica: the newer version is already stored, and
//!    last writer wins by version wherever the two meet. The clock has
//!    observed the held version, so the client's retry is newer.
//! 3. W out of reach and **every** replica rejected the write for good (a
//!    definitive 4xx; no ack, no superseded, nothing failed or pending) →
//!    the first rejection, relayed, `x-levee-outcome: rejected`. While a
//!    send is still pending and nothing but rejections came back, the
//!    answer waits for it (bounded by the deadline), so a malformed write
//!    is answered with the replicas' 4xx rather than a 503.
//! 4. Anything else (some replica acked, or failed, or did not answer in
//!    time) → 503 (504 once the deadline passed) with every replica's
//!    outcome as JSON and `x-levee-outcome: unknown`: acked replicas keep
//!    the write and the others get it by hinted handoff, so it may still
//!    appear. A 4xx is never relayed when any replica acknowledged.
//!
//! Texts (each replica's outcome, the failure's reason) are written only
//! when a write fails: a successful write allocates none.

use std::fmt;
use std::io::Write as _;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};
use levee_version::{VERSION_HEADER, Version};
use serde::Serialize;

use crate::dataplane::error::{AppError, OUTCOME_REJECTED, OUTCOME_UNKNOWN, X_LEVEE_OUTCOME};
use crate::dataplane::replica_send::ReplicaOutcome;
use crate::replication::deliver::Answer;
use crate::replication::hints::Lsn;

/// The response header with acknowledgements at answer time: `k/N`.
pub static X_LEVEE_ACKS: HeaderName = HeaderName::from_static("x-levee-acks");
/// The response header with the write's LSN.
pub static X_LEVEE_LSN: HeaderName = HeaderName::from_static("x-levee-lsn");

/// Counts outcomes and decides when the client can be answered.
pub(super) struct Tally<'a> {
    /// Node ids, by slot (ring order).
    nodes: Vec<&'a str>,
    replicas: usize,
    quorum: usize,
    first_ack: Option<Answer>,
    first_rejection: Option<Answer>,
    /// The newest version a superseding replica said it holds.
    newest_held: Option<Version>,
    acks: usize,
    superseded: usize,
    rejections: usize,
    failures: usize,
    /// Each slot's outcome, once it reported.
    outcomes: Vec<Option<Outcome>>,
}

/// One replica's outcome, kept as data and described only for a failure.
#[derive(Debug, Clone)]
enum Outcome {
    Acked(StatusCode),
    Superseded(Version),
    Rejected(StatusCode),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Acked(status) => write!(f, "acknowledged ({})", status.as_u16()),
            Outcome::Superseded(held) => write!(f, "superseded by version {held}"),
            Outcome::Rejected(status) => write!(f, "rejected with {}", status.as_u16()),
            Outcome::Failed(reason) => f.write_str(reason),
        }
    }
}

/// What the client is told.
pub(super) enum Decision {
    /// W acks: the first ack, relayed.
    Answer {
        answer: Answer,
        acks: usize,
        replicas: usize,
    },
    /// Every replica rejected the write for good: the first rejection.
    Rejected { answer: Answer, replicas: usize },
    /// A newer version of the key won (409).
    Superseded {
        held: Version,
        superseded: usize,
        replicas: usize,
    },
    /// Not confirmed, outcome unknown (503, or 504 past the deadline).
    QuorumFailed(QuorumFailure),
}

/// The JSON body of a failed write.
#[derive(Debug, Serialize)]
pub(super) struct QuorumFailure {
    error: &'static str,
    reason: String,
    acks: usize,
    required: usize,
    replicas: usize,
    /// Every replica's outcome, in ring order (`pending` if it had not
    /// answered by the deadline).
    outcomes: Vec<ReplicaReport>,
    /// Answered with 504: the request's deadline passed.
    #[serde(skip)]
    deadline_passed: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct ReplicaReport {
    node: String,
    outcome: String,
}

impl<'a> Tally<'a> {
    pub(super) fn new(nodes: Vec<&'a str>, quorum: usize) -> Tally<'a> {
        let replicas = nodes.len();
        debug_assert!(quorum >= 1 && quorum <= replicas);
        let outcomes = vec![None; replicas];
        Tally {
            nodes,
            replicas,
            quorum,
            first_ack: None,
            first_rejection: None,
            newest_held: None,
            acks: 0,
            superseded: 0,
            rejections: 0,
            failures: 0,
            outcomes,
        }
    }

    pub(super) fn record(&mut self, slot: usize, outcome: ReplicaOutcome) {
        debug_assert!(self.outcomes[slot].is_none(), "slot {slot} reported twice");
        let kept = match outcome {
            ReplicaOutcome::Acked(answer) => {
                self.acks += 1;
                let kept = Outcome::Acked(answer.status);
                self.first_ack.get_or_insert(answer);
                kept
            }
            ReplicaOutcome::Superseded(held) => {
                self.superseded += 1;
                self.newest_held = self.newest_held.max(Some(held));
                Outcome::Superseded(held)
            }
            ReplicaOutcome::Rejected(answer) => {
                self.rejections += 1;
                let kept = Outcome::Rejected(answer.status);
                self.first_rejection.get_or_insert(answer);
                kept
            }
            ReplicaOutcome::Failed(_, reason) => {
                self.failures += 1;
                Outcome::Failed(reason)
            }
        };
        self.outcomes[slot] = Some(kept);
    }

    fn pending(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.is_none())
            .count()
    }

    /// The answer, once it is decided: W acks, or W out of reach (see the
    /// module doc for what waits for the pending sends).
    pub(super) fn verdict(&mut self) -> Option<Decision> {
        if self.acks >= self.quorum {
            let answer = self.first_ack.take()?;
            return Some(Decision::Answer {
                answer,
                acks: self.acks,
                replicas: self.replicas,
            });
        }
        if self.acks + self.pending() >= self.quorum {
            return None;
        }
        let only_rejections_so_far = self.acks == 0 && self.superseded == 0 && self.failures == 0;
        if only_rejections_so_far && self.pending() > 0 {
            // Every answer so far is a rejection: the rest may be too.
            return None;
        }
        Some(self.give_up(false))
    }

    /// A write policy's `acknowledge`: the first ack, relayed (`None` if
    /// nothing acked, which the policy's floor of one ack rules out).
    pub(super) fn acknowledge(&mut self) -> Option<Decision> {
        let answer = self.first_ack.take()?;
        Some(Decision::Answer {
            answer,
            acks: self.acks,
            replicas: self.replicas,
        })
    }

    /// A write policy's `fail`: answered like W out of reach, the
    /// policy's `reason` leading the 503 body.
    pub(super) fn fail(&mut self, reason: &str) -> Decision {
        let mut decision = self.give_up(false);
        if let Decision::QuorumFailed(failure) = &mut decision {
            failure.reason = format!(
                "{reason}. {} of {} replicas acknowledged; the write is logged and its outcome is \
                 unknown: replicas that acknowledged it keep it, and the others get it by hinted \
                 handoff, so it may still appear.",
                self.acks, self.replicas
            );
        }
        decision
    }

    /// The answer when W acks cannot be had; `deadline_passed`: the sends
    /// ended because the request's deadline expired (504 instead of 503).
    pub(super) fn give_up(&mut self, deadline_passed: bool) -> Decision {
        if self.acks == 0
            && self.rejections == 0
            && let Some(held) = self.newest_held
        {
            return Decision::Superseded {
                held,
                superseded: self.superseded,
                replicas: self.replicas,
            };
        }
        let all_rejected = self.rejections == self.replicas;
        if all_rejected && let Some(answer) = self.first_rejection.take() {
            return Decision::Rejected {
                answer,
                replicas: self.replicas,
            };
        }
        Decision::QuorumFailed(self.failure(deadline_passed))
    }

    /// The 503/504 body: every replica's outcome.
    fn failure(&self, deadline_passed: bool) -> QuorumFailure {
        let failed: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.outcomes)
            .filter_map(|(node, outcome)| Some((node, outcome.as_ref()?)))
            .filter(|(_, outcome)| !matches!(outcome, Outcome::Acked(_)))
            .map(|(node, outcome)| format!("{node}: {outcome}"))
            .collect();
        let reason = format!(
            "write quorum not reached: {} of {} required acknowledgements from {} replicas; failed: {}. \
             The write is logged and its outcome is unknown: replicas that acknowledged it keep it, \
             and the others get it by hinted handoff, so it may still appear.",
            self.acks,
            self.quorum,
            self.replicas,
            if failed.is_empty() {
                "none answered in time".to_owned()
            } else {
                failed.join("; ")
            },
        );
        let outcomes = self
            .nodes
            .iter()
            .zip(&self.outcomes)
            .map(|(node, outcome)| ReplicaReport {
                node: (*node).to_owned(),
                outcome: outcome
                    .as_ref()
                    .map_or_else(|| "pending".into(), Outcome::to_string),
            })
            .collect();
        QuorumFailure {
            error: "write_quorum_failed",
            reason,
            acks: self.acks,
            required: self.quorum,
            replicas: self.replicas,
            outcomes,
            deadline_passed,
        }
    }
}

impl Decision {
    /// The client's response for write `lsn` with `version`.
    pub(super) fn into_response(self, lsn: Lsn, version: Version) -> Response {
        let (mut response, acks, replicas) = match self {
            Decision::Answer {
                answer,
                acks,
                replicas,
            } => (relay(answer), acks, replicas),
            Decision::Rejected { answer, replicas } => {
                let mut response = relay(answer);
                response.headers_mut().insert(
                    X_LEVEE_OUTCOME.clone(),
                    HeaderValue::from_static(OUTCOME_REJECTED),
                );
                (response, 0, replicas)
            }
            Decision::Superseded {
                held,
                superseded,
                replicas,
            } => {
                let reason = format!(
                    "superseded: {superseded} of {replicas} replicas already hold a newer version of \
                     this key ({held}) than this write's ({version}), so it will not be applied; \
                     retrying writes it again with a newer version"
                );
                (
                    AppError::Superseded { reason, held }.into_response(),
                    0,
                    replicas,
                )
            }
            Decision::QuorumFailed(failure) => {
                let (acks, replicas) = (failure.acks, failure.replicas);
                (unknown_outcome(&failure), acks, replicas)
            }
        };
        let headers = response.headers_mut();
        if let Some(value) = acks_header(acks, replicas) {
            headers.insert(X_LEVEE_ACKS.clone(), value);
        }
        headers.insert(X_LEVEE_LSN.clone(), HeaderValue::from(lsn));
        if let Some(value) = version_header(version) {
            headers.insert(VERSION_HEADER, value);
        }
        response
    }
}

/// A replica's answer as the client's response.
fn relay(answer: Answer) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    response
}

/// 503 (504 past the deadline) with the outcomes as JSON.
fn unknown_outcome(failure: &QuorumFailure) -> Response {
    let status = if failure.deadline_passed {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(failure).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Logged, and handed off to the replicas that missed it.
    response.headers_mut().insert(
        X_LEVEE_OUTCOME.clone(),
        HeaderValue::from_static(OUTCOME_UNKNOWN),
    );
    response
}

/// `k/N`, written on the stack: the header value is the only allocation.
fn acks_header(acks: usize, replicas: usize) -> Option<HeaderValue> {
    let mut buffer = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{acks}/{replicas}").ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

/// The version's wire form, written on the stack like [`acks_header`].
fn version_header(version: Version) -> Option<HeaderValue> {
    let mut buffer = [0u8; levee_version::version::WIRE_BYTES_MAX];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{version}").ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::dataplane::error::OUTCOME_SUPERSEDED;

    const VERSION: &str = "1764590400123.0.00000000000000aa";

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn answer(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Bytes::from_static(b"ok"),
        }
    }

    fn ack() -> ReplicaOutcome {
        ReplicaOutcome::Acked(answer(200))
    }

    fn rejected(status: u16) -> ReplicaOutcome {
        ReplicaOutcome::Rejected(answer(status))
    }

    fn failed() -> ReplicaOutcome {
        ReplicaOutcome::Failed(crate::dataplane::replica_send::NOT_SENT, "timed out".into())
    }

    fn superseded(held: &str) -> ReplicaOutcome {
        ReplicaOutcome::Superseded(version(held))
    }

    /// Records `outcomes` by slot, then the verdict as the client sees it
    /// (or the give-up answer once every slot reported without a verdict).
    fn respond(quorum: usize, outcomes: Vec<(usize, ReplicaOutcome)>) -> Option<Response> {
        let mut tally = Tally::new(vec!["a", "b", "c"], quorum);
        let reported = outcomes.len();
        for (slot, outcome) in outcomes {
            tally.record(slot, outcome);
        }
        let decision = match tally.verdict() {
            Some(decision) => decision,
            None if reported == 3 => tally.give_up(false),
            None => return None,
        };
        Some(decision.into_response(7, version(VERSION)))
    }

    fn outcome_header(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(&X_LEVEE_OUTCOME)
            .map(|v| v.to_str().unwrap())
    }

    async fn json(response: Response) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn answers_at_w_acks_with_the_first_ack() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(1, ReplicaOutcome::Acked(answer(201)));
        assert!(tally.verdict().is_none());
        tally.record(0, ReplicaOutcome::Acked(answer(200)));
        match tally.verdict() {
            Some(Decision::Answer {
                answer,
                acks,
                replicas,
            }) => {
                assert_eq!(answer.status.as_u16(), 201);
                assert_eq!((acks, replicas), (2, 3));
            }
            _ => panic!("expected an answer"),
        }
    }

    #[test]
    fn w_acks_win_even_beside_a_superseded_replica() {
        let response = respond(2, vec![(0, superseded(VERSION)), (1, ack()), (2, ack())]).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(outcome_header(&response), None);
    }

    #[test]
    fn fails_as_soon_as_w_is_out_of_reach_naming_the_failures() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(
            0,
            ReplicaOutcome::Failed(
                crate::dataplane::replica_send::NOT_SENT,
                "connection refused or unreachable".into(),
            ),
        );
        assert!(tally.verdict().is_none());
        tally.record(2, failed());
        match tally.verdict() {
            Some(Decision::QuorumFailed(failure)) => {
                assert_eq!(failure.acks, 0);
                assert!(
                    failure.reason.contains("a: connection refused"),
                    "{}",
                    failure.reason
                );
                assert!(
                    failure.reason.contains("c: timed out"),
                    "{}",
                    failure.reason
                );
                assert!(failure.reason.contains("may still appear"));
                assert_eq!(failure.outcomes[1].node, "b");
                assert_eq!(failure.outcomes[1].outcome, "pending");
            }
            _ => panic!("expected a quorum failure"),
        }
    }

    #[test]
    fn a_failure_report_describes_every_outcome() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 3);
        tally.record(0, ReplicaOutcome::Acked(answer(201)));
        tally.record(1, failed());
        match tally.verdict() {
            Some(Decision::QuorumFailed(failure)) => {
                let outcomes: Vec<(&str, &str)> = failure
                    .outcomes
                    .iter()
                    .map(|r| (r.node.as_str(), r.outcome.as_str()))
                    .collect();
                assert_eq!(
                    outcomes,
                    [
                        ("a", "acknowledged (201)"),
                        ("b", "timed out"),
                        ("c", "pending")
                    ]
                );
                assert!(failure.reason.contains("failed: b: timed out."));
            }
            _ => panic!("expected a quorum failure"),
        }
    }

    #[tokio::test]
    async fn a_rejection_by_every_replica_is_relayed_as_rejected() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(0, rejected(422));
        tally.record(1, rejected(400));
        assert!(
            tally.verdict().is_none(),
            "the third may reject too: wait for it"
        );
        tally.record(2, rejected(400));
        let response = tally
            .verdict()
            .expect("decided")
            .into_response(7, version(VERSION));
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(outcome_header(&response), Some(OUTCOME_REJECTED));
        assert_eq!(response.headers()[&X_LEVEE_ACKS], "0/3");
    }

    #[tokio::test]
    async fn a_rejection_beside_an_ack_is_never_relayed() {
        let response =
            respond(2, vec![(0, ack()), (1, rejected(422)), (2, rejected(422))]).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
        assert_eq!(response.headers()[&X_LEVEE_ACKS], "1/3");
        let body = json(response).await;
        assert_eq!(body["outcomes"][1]["outcome"], "rejected with 422");
    }

    #[tokio::test]
    async fn a_rejection_beside_a_failure_is_unknown() {
        let response = respond(
            2,
            vec![(0, failed()), (1, rejected(422)), (2, rejected(422))],
        )
        .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
    }

    #[tokio::test]
    async fn a_rejection_beside_a_superseded_replica_is_unknown() {
        let response = respond(
            2,
            vec![
                (0, superseded(VERSION)),
                (1, rejected(422)),
                (2, rejected(422)),
            ],
        )
        .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
    }

    #[tokio::test]
    async fn superseded_without_acks_is_409_naming_the_newest_held_version() {
        let older = "1764590400200.0.00000000000000bb";
        let newer = "1764590400300.1.00000000000000cc";
        // W=2 is out of reach after two superseded answers: no need to wait.
        let response = respond(2, vec![(2, superseded(older)), (0, superseded(newer))]).unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let headers = response.headers();
        assert_eq!(outcome_header(&response), Some(OUTCOME_SUPERSEDED));
        assert_eq!(headers[levee_version::HELD_VERSION_HEADER], newer);
        assert_eq!(headers[VERSION_HEADER], VERSION);
        assert_eq!(headers[&X_LEVEE_ACKS], "0/3");
        let body = json(response).await;
        assert_eq!(body["error"], "superseded");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            reason.contains(newer) && reason.contains(VERSION),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn superseded_beside_failures_is_still_409() {
        let response = respond(
            2,
            vec![(0, failed()), (1, superseded(VERSION)), (2, failed())],
        )
        .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn superseded_beside_an_ack_is_unknown_not_409() {
        let response = respond(3, vec![(0, ack()), (1, superseded(VERSION))]).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
        let body = json(response).await;
        let expected = format!("superseded by version {VERSION}");
        assert_eq!(body["outcomes"][1]["outcome"], expected.as_str());
    }

    #[tokio::test]
    async fn past_the_deadline_the_unknown_outcome_is_504() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(0, ack());
        tally.record(1, failed());
        let response = tally.give_up(true).into_response(7, version(VERSION));
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
    }

    #[tokio::test]
    async fn responses_carry_acks_lsn_and_version() {
        let verdict = Decision::Answer {
            answer: answer(200),
            acks: 2,
            replicas: 3,
        };
        let response = verdict.into_response(42, version(VERSION));
        assert_eq!(response.headers()[&X_LEVEE_ACKS], "2/3");
        assert_eq!(response.headers()[&X_LEVEE_LSN], "42");
        assert_eq!(response.headers()[VERSION_HEADER], VERSION);
        assert!(response.headers().get(&X_LEVEE_OUTCOME).is_none());
    }

    /// A failed quorum is logged and handed off: it may still appear.
    #[tokio::test]
    async fn a_failed_quorum_says_its_outcome_is_unknown() {
        let response = respond(2, vec![(0, failed()), (1, failed())]).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome_header(&response), Some(OUTCOME_UNKNOWN));
    }
}
