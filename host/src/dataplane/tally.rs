//! Counting a write's replica outcomes: when the client can be answered
//! (W acks, or W out of reach), and what it is told (the first ack, the
//! first definitive rejection, or 503 with every replica's outcome as JSON),
//! with `x-levee-acks` and `x-levee-lsn`.
//!
//! Texts (each replica's outcome, the failure's reason) are written only
//! when a write fails: a successful write allocates none.

use std::fmt;
use std::io::Write as _;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};
use serde::Serialize;

use crate::dataplane::error::{OUTCOME_UNKNOWN, X_LEVEE_OUTCOME};
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
    acks: usize,
    /// Each slot's outcome, once it reported.
    outcomes: Vec<Option<Outcome>>,
}

/// One replica's outcome, kept as data and described only for a failure.
#[derive(Debug, Clone)]
enum Outcome {
    Acked(StatusCode),
    Rejected(StatusCode),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Acked(status) => write!(f, "acknowledged ({})", status.as_u16()),
            Outcome::Rejected(status) => write!(f, "rejected with {}", status.as_u16()),
            Outcome::Failed(reason) => f.write_str(reason),
        }
    }
}

/// What the client is told.
pub(super) enum Decision {
    Answer {
        answer: Answer,
        acks: usize,
        replicas: usize,
    },
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
            acks: 0,
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
            ReplicaOutcome::Rejected(answer) => {
                let kept = Outcome::Rejected(answer.status);
                self.first_rejection.get_or_insert(answer);
                kept
            }
            ReplicaOutcome::Failed(reason) => Outcome::Failed(reason),
        };
        self.outcomes[slot] = Some(kept);
    }

    fn pending(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.is_none())
            .count()
    }

    /// The answer, once it is decided: W acks, or W out of reach.
    pub(super) fn verdict(&mut self) -> Option<Decision> {
        if self.acks >= self.quorum {
            let answer = self.first_ack.take()?;
            return Some(Decision::Answer {
                answer,
                acks: self.acks,
                replicas: self.replicas,
            });
        }
        if self.acks + self.pending() < self.quorum {
            return Some(self.give_up());
        }
        None
    }

    /// The answer when W acks cannot be had.
    pub(super) fn give_up(&mut self) -> Decision {
        if let Some(answer) = self.first_rejection.take() {
            return Decision::Answer {
                answer,
                acks: self.acks,
                replicas: self.replicas,
            };
        }
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
             The write is logged and not confirmed; replicas that missed it will get it by hinted handoff.",
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
        Decision::QuorumFailed(QuorumFailure {
            error: "write_quorum_failed",
            reason,
            acks: self.acks,
            required: self.quorum,
            replicas: self.replicas,
            outcomes,
        })
    }
}

impl Decision {
    pub(super) fn into_response(self, lsn: Lsn) -> Response {
        let (mut response, acks, replicas) = match self {
            Decision::Answer {
                answer,
                acks,
                replicas,
            } => {
                let mut response = Response::new(Body::from(answer.body));
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers;
                (response, acks, replicas)
            }
            Decision::QuorumFailed(failure) => {
                let (acks, replicas) = (failure.acks, failure.replicas);
                let body = serde_json::to_string(&failure).unwrap_or_default();
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                // Logged, and handed off to the replicas that missed it.
                response.headers_mut().insert(
                    X_LEVEE_OUTCOME.clone(),
                    HeaderValue::from_static(OUTCOME_UNKNOWN),
                );
                (response, acks, replicas)
            }
        };
        let headers = response.headers_mut();
        if let Some(value) = acks_header(acks, replicas) {
            headers.insert(X_LEVEE_ACKS.clone(), value);
        }
        headers.insert(X_LEVEE_LSN.clone(), HeaderValue::from(lsn));
        response
    }
}

/// `k/N`, written on the stack: the header value is the only allocation.
fn acks_header(acks: usize, replicas: usize) -> Option<HeaderValue> {
    let mut buffer = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{acks}/{replicas}").ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Bytes::from_static(b"ok"),
        }
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
    fn fails_as_soon_as_w_is_out_of_reach_naming_the_failures() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(
            0,
            ReplicaOutcome::Failed("connection refused or unreachable".into()),
        );
        assert!(tally.verdict().is_none());
        tally.record(2, ReplicaOutcome::Failed("timed out".into()));
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
        tally.record(1, ReplicaOutcome::Failed("timed out".into()));
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

    #[test]
    fn a_definitive_rejection_is_relayed_when_quorum_fails() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(0, ReplicaOutcome::Rejected(answer(400)));
        tally.record(1, ReplicaOutcome::Rejected(answer(400)));
        match tally.verdict() {
            Some(Decision::Answer { answer, acks, .. }) => {
                assert_eq!(answer.status.as_u16(), 400);
                assert_eq!(acks, 0);
            }
            _ => panic!("expected the rejection"),
        }
    }

    #[tokio::test]
    async fn responses_carry_acks_and_lsn() {
        let verdict = Decision::Answer {
            answer: answer(200),
            acks: 2,
            replicas: 3,
        };
        let response = verdict.into_response(42);
        assert_eq!(response.headers()[&X_LEVEE_ACKS], "2/3");
        assert_eq!(response.headers()[&X_LEVEE_LSN], "42");
        assert!(response.headers().get(&X_LEVEE_OUTCOME).is_none());
    }

    /// A failed quorum is logged and handed off: it may still appear.
    #[tokio::test]
    async fn a_failed_quorum_says_its_outcome_is_unknown() {
        let mut tally = Tally::new(vec!["a", "b", "c"], 2);
        tally.record(0, ReplicaOutcome::Failed("timed out".into()));
        tally.record(1, ReplicaOutcome::Failed("timed out".into()));
        let response = tally.verdict().expect("decided").into_response(7);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[&X_LEVEE_OUTCOME], OUTCOME_UNKNOWN);
    }
}
