//! Sending one logged write to one replica, and judging its answer.
//!
//! The fan-out (first try, right after the append) and the handoff (every
//! later try, read back from the log) send exactly the same request, built
//! here from the log record alone, so a replica cannot tell a hint from a
//! direct write except by time:
//!
//! - `x-levee-version: <version>`: the version the write was given before
//!   its append (stored in its record, so every redelivery sends the same
//!   one). A replica that keeps it per key (the bundled `kv-replica` does)
//!   applies a write only if it is newer than what it holds, which makes
//!   every redelivery idempotent and order-independent: a hint delivered
//!   after a newer direct write cannot resurrect old data.
//! - `x-levee-lsn: <lsn>`: the write's position in this levee's log, for
//!   tracing only (LSNs restart with a new log: they order nothing).
//! - `Idempotency-Key`: the client's, or for POST/PATCH without one a key
//!   derived from the write (`levee-<request id>-<lsn>`), so a replica can
//!   recognise a redelivered non-idempotent write.
//! - `x-request-id`: the client request's, for tracing a hint back to it.
//!
//! An answer is one of four things: an **ack** (2xx); **superseded** (a
//! 409 with a parsable `x-levee-held-version`: the replica holds a newer
//! version of the key, so there is nothing to deliver, ever, but the write
//! is not on the replica either); a definitive **rejection** (any other 4xx
//! except 408 and 429, including a 409 without a parsable held version:
//! sending again cannot help); or a **failure** (no answer, 5xx, 408, 429:
//! worth another try later). The caller observes a superseded write's held
//! version on its clock (`super::clock::observe`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use levee_policy::{AttemptResult, ErrorKind};
use levee_version::{HELD_VERSION_HEADER, VERSION_HEADER, Version};

use super::hints::Lsn;
use super::record::WriteHeader;
use crate::cluster::service::ServiceNode;
use crate::upstream::{UpstreamClient, strip_hop_by_hop};

/// The header carrying a write's LSN to replicas.
pub const LSN_HEADER: &str = "x-levee-lsn";
/// Bytes of a replica's answer to a write that levee buffers (to relay it
/// to the client); a larger answer counts as an ack with its body cut.
pub const ANSWER_BODY_BYTES_MAX: usize = 64 * 1024;

/// A replica's answer with its body, buffered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What one send produced.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// 2xx: the replica has the write.
    Acked(Answer),
    /// 409 with `x-levee-held-version`: the replica holds this newer
    /// version of the key; the write will never apply there (settled, not
    /// an ack).
    Superseded(Version),
    /// A definitive 4xx: the replica refuses this write for good.
    Rejected(Answer),
    /// No answer, or one worth retrying later.
    Failed(AttemptResult),
}

/// A failure as a human reads it.
pub fn describe_failure(result: AttemptResult) -> String {
    match result {
        AttemptResult::Status(status) => format!("answered {status}"),
        AttemptResult::Error(ErrorKind::Connect) => "connection refused or unreachable".into(),
        AttemptResult::Error(ErrorKind::Timeout) => "timed out".into(),
        AttemptResult::Error(ErrorKind::Reset) => "connection reset".into(),
        AttemptResult::Error(ErrorKind::Protocol) => "malformed HTTP answer".into(),
        AttemptResult::Error(ErrorKind::Other) => "failed".into(),
    }
}

/// Sends write `lsn` to `node` and waits at most `timeout` for the answer
/// (head and the buffered body).
pub async fn send_write(
    client: &UpstreamClient,
    node: &ServiceNode,
    lsn: Lsn,
    header: &WriteHeader,
    body: &Bytes,
    timeout: Duration,
) -> SendOutcome {
    let request = match build_request(node, lsn, header, body) {
        Ok(request) => request,
        // The record passed validation when it was written, so this is a
        // record from a levee with other rules: nothing can be sent.
        Err(reason) => {
            tracing::error!(lsn, node = %node.spec.id, %reason, "cannot build the request for a logged write");
            return SendOutcome::Failed(AttemptResult::Error(ErrorKind::Other));
        }
    };
    let started = tokio::time::Instant::now();
    let response = match client.send(request, timeout).await {
        Ok(response) => response,
        Err(error) => return SendOutcome::Failed(AttemptResult::Error(error.kind)),
    };
    let (mut parts, incoming) = response.into_parts();
    let remaining = timeout.saturating_sub(started.elapsed());
    let body = match tokio::time::timeout(
        remaining,
        Limited::new(incoming, ANSWER_BODY_BYTES_MAX).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        // An oversized answer body is not a reason to doubt the status.
        Ok(Err(_)) if parts.status.is_success() => Bytes::new(),
        Ok(Err(_)) => return SendOutcome::Failed(AttemptResult::Error(ErrorKind::Reset)),
        Err(_) => return SendOutcome::Failed(AttemptResult::Error(ErrorKind::Timeout)),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let answer = Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    judge(answer)
}

/// Sorts an answer into ack, superseded, rejection or failure by its
/// status (and, for a 409, its held version).
pub fn judge(answer: Answer) -> SendOutcome {
    let status = answer.status;
    if status.is_success() {
        SendOutcome::Acked(answer)
    } else if let Some(held) = held_version(&answer) {
        SendOutcome::Superseded(held)
    } else if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        SendOutcome::Rejected(answer)
    } else {
        SendOutcome::Failed(AttemptResult::Status(status.as_u16()))
    }
}

/// The newer version a 409 says the replica holds; `None` for any other
/// answer, or a held version that does not parse (a plain rejection then).
fn held_version(answer: &Answer) -> Option<Version> {
    if answer.status != StatusCode::CONFLICT {
        return None;
    }
    let text = answer.headers.get(HELD_VERSION_HEADER)?.to_str().ok()?;
    Version::parse(text).ok()
}

/// The placement epoch of the sending levee's service (see
/// `cluster::placement`): instances that disagree on it place keys
/// differently; `x-levee-ring-epoch` lets a replica's logs show it.
pub const RING_EPOCH_HEADER: &str = "x-levee-ring-epoch";

/// The request for one send, built from the log record alone.
fn build_request(
    node: &ServiceNode,
    lsn: Lsn,
    header: &WriteHeader,
    body: &Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(header.method.as_bytes()).map_err(|e| e.to_string())?;
    let uri = Uri::builder()
        .scheme(node.scheme.clone())
        .authority(node.authority.clone())
        .path_and_query(header.path.as_str())
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = Request::builder().method(method).uri(uri);
    let headers = request.headers_mut().expect("builder is valid so far");
    for (name, value) in &header.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        headers.insert(name, value);
    }
    let version = HeaderValue::from_str(&header.version.to_string()).map_err(|e| e.to_string())?;
    headers.insert(VERSION_HEADER, version);
    headers.insert(LSN_HEADER, HeaderValue::from(lsn));
    headers.insert(RING_EPOCH_HEADER, node.ring_epoch.clone());
    if !header.request_id.is_empty()
        && let Ok(value) = HeaderValue::from_str(&header.request_id)
    {
        headers.insert("x-request-id", value);
    }
    if header.idempotency_key().is_none() && !header.is_idempotent() {
        let derived = format!("levee-{}-{lsn}", header.request_id);
        let value = HeaderValue::from_str(&derived).map_err(|e| e.to_string())?;
        headers.insert("idempotency-key", value);
    }
    request
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    fn conflict(held: Option<&str>) -> Answer {
        let mut answer = answer(409);
        if let Some(held) = held {
            answer
                .headers
                .insert(HELD_VERSION_HEADER, HeaderValue::from_str(held).unwrap());
        }
        answer
    }

    #[test]
    fn a_409_with_a_held_version_is_superseded_otherwise_a_rejection() {
        let held = "1764590400123.4.9f3a0c1d2e4b5a6c";
        match judge(conflict(Some(held))) {
            SendOutcome::Superseded(version) => assert_eq!(version.to_string(), held),
            other => panic!("{other:?}"),
        }
        assert!(matches!(judge(conflict(None)), SendOutcome::Rejected(_)));
        assert!(matches!(
            judge(conflict(Some("newer"))),
            SendOutcome::Rejected(_)
        ));
        let mut bad_request = answer(400);
        bad_request
            .headers
            .insert(HELD_VERSION_HEADER, HeaderValue::from_static(held));
        assert!(
            matches!(judge(bad_request), SendOutcome::Rejected(_)),
            "only a 409 supersedes"
        );
    }

    #[test]
    fn every_send_carries_the_records_version() {
        let spec: crate::config::ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "kv",
            "nodes": [{"id": "a", "url": "http://127.0.0.1:1"}],
            "key": {"path_segment": 1},
        }))
        .unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        let service = crate::cluster::service::Service::build(spec, &runtime).unwrap();
        let node = &service.nodes[0];
        let header = WriteHeader {
            service: "kv".into(),
            method: "POST".into(),
            path: "/kv/k".into(),
            key: "k".into(),
            targets: vec!["a".into()],
            headers: vec![],
            request_id: "r1".into(),
            accepted_unix_ms: 1,
            version: Version::parse("1764590400123.0.9f3a0c1d2e4b5a6c").unwrap(),
        };
        let request = build_request(node, 9, &header, &Bytes::new()).unwrap();
        let headers = request.headers();
        assert_eq!(headers[VERSION_HEADER], "1764590400123.0.9f3a0c1d2e4b5a6c");
        assert_eq!(headers[LSN_HEADER], "9");
        assert_eq!(headers["idempotency-key"], "levee-r1-9");
    }

    #[test]
    fn statuses_sort_into_ack_rejection_and_failure() {
        assert!(matches!(judge(answer(200)), SendOutcome::Acked(_)));
        assert!(matches!(judge(answer(204)), SendOutcome::Acked(_)));
        assert!(matches!(judge(answer(400)), SendOutcome::Rejected(_)));
        assert!(matches!(judge(answer(413)), SendOutcome::Rejected(_)));
        assert!(matches!(
            judge(answer(408)),
            SendOutcome::Failed(AttemptResult::Status(408))
        ));
        assert!(matches!(
            judge(answer(429)),
            SendOutcome::Failed(AttemptResult::Status(429))
        ));
        assert!(matches!(
            judge(answer(503)),
            SendOutcome::Failed(AttemptResult::Status(503))
        ));
    }
}
